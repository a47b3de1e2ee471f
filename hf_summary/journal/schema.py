"""The journal's schema, its version, and the migrations that bring an older journal to it in place.

Schema (`PRAGMA application_id` = `APPLICATION_ID`, `PRAGMA user_version` = `SCHEMA_VERSION`):

`settings`  one row (id 1): how to push this logdir, so that `recover` needs only the logdir.
    repo_id, repo_type, revision, path_in_repo, allow_patterns / ignore_patterns (JSON list or NULL),
    squash_history, commit_every_s, private (NULL = unspecified), endpoint, updated_at
    (see `hf_summary.journal.settings.RunSettings`).
`flags`     small JSON key/value flags (`key` primary key, `value` JSON text, updated_at):
    `run_id` (the run id in this run's segment names), `conflicts` (ids of segments whose path on
    the Hub holds another run's file, see `Journal.add_conflicts`), `replaced_segments` (how many
    segments rows are `replaced`, kept by each compaction's commit), `assets` (the assets pushed so far:
    logdir-relative path -> `{"size", "mtime_ns", "sha256"}` as pushed, see `hf_summary.assets`),
    `card_tagged` (true once the repo's card carries the hf-summary tag), `watch` (true when
    `hf-summary watch` pushes this logdir, not an HFSummaryWriter), and one
    `writer:<host>:<pid>:<create time>` record per writer process (see `hf_summary.liveness`).
`sequence`  one row (id 1): `next`, the lowest segment sequence number still free (time-based, see
    `Journal.next_sequence`).
`segments`  one row per segment file, `id` AUTOINCREMENT (never reused, so `id` order is
    creation order). run (logdir-relative directory, `/`-separated, `""` = logdir), name,
    path_in_repo (UNIQUE), state, size, sha256, attempts, last_error, created_at, sealed_at,
    committed_at, commit_oid, writer_pid, writer_create_time (the writer process's create time, so that a
    reused pid is not taken for a live writer), level (0 = a segment the writer wrote; L >= 1 = a merged file
    made by compaction), replaced_by (the `compactions` row that merged it away, set when the merge is
    planned). A partial index on `(run, name)` over the rows not `replaced` keeps a run dir's live files one
    short index scan away. `(run, name)` is UNIQUE too.
`compactions` one row per merge of committed files of one run dir into one file of `level`: run, level,
    name, path_in_repo, size, sha256, state (`planned` -> `committed` -> `applied`), segment_id (the
    merged file's `segments` row, once committed), created_at, committed_at, commit_oid. The files it
    replaces are the `segments` rows whose replaced_by is its id.
`lease`     at most one row (id 1): the live drainer's pid, create_time, host, acquired_at,
    heartbeat_at.
`history`   recent events for `status`: at, kind (`commit`, `error`, `requeue`, `lease`, `compaction`,
    `preemption` (field `signal`), `final_push` (`segments`, `bytes`, `commits`: what the
    pushes of the final drain after a preemption carried; `parked` in the overflow bucket, `pending` after
    it, `last_commit`), `budget` (`gap_s`, `retry_after`: the Hub refused a commit for the repo's commit
    budget and commits are spaced by `gap_s`; 0 once they are not), `overflow` (`bucket`, `record`,
    `segments`, `bytes`: a push parked in the overflow bucket), `settled` (`bucket`, `records`,
    `commit`: parked pushes moved into the repo), ...), message,
    fields (JSON object). Trimmed to the last `HISTORY_KEEP` rows, always keeping the newest row of each kind.

Schema versions: 1 (no compaction); 2 adds `segments.level`, `segments.replaced_by`, the `replaced` state
and `compactions`. A version-1 journal is migrated in place when opened.

The schema and its migrations are written in SQL, not with sqlite-utils' `Table.create`/`create_index`/
`transform` (which the rows are written with): its table API has no CHECK constraint, no AUTOINCREMENT and no partial
index, which the journal relies on (a state outside the machine is refused; an id is never handed out twice; live
files are one short index scan away), and `transform` keeps a table's CHECK constraints but cannot change one, which
is what the migration to version 2 does.
"""

from __future__ import annotations

import json
import sqlite3

SCHEMA_VERSION = 2
APPLICATION_ID = 0x48465355  # "HFSU"
HISTORY_KEEP = 200
SEGMENT_STATES = ("open", "sealed", "committed", "replaced")
COMPACTION_STATES = ("planned", "committed", "applied")

_SEGMENTS_TABLE = """CREATE TABLE segments (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run TEXT NOT NULL,
        name TEXT NOT NULL,
        path_in_repo TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL CHECK (state IN ('open', 'sealed', 'committed', 'replaced')),
        size INTEGER,
        sha256 TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        created_at REAL NOT NULL,
        sealed_at REAL,
        committed_at REAL,
        commit_oid TEXT,
        writer_pid INTEGER,
        writer_create_time REAL,
        level INTEGER NOT NULL DEFAULT 0,
        replaced_by INTEGER,
        UNIQUE (run, name)
    )"""
_V2_ADDITIONS = (
    "CREATE INDEX segments_live ON segments (run, name) WHERE state != 'replaced'",
    "CREATE INDEX segments_by_compaction ON segments (replaced_by) WHERE replaced_by IS NOT NULL",
    """CREATE TABLE compactions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run TEXT NOT NULL,
        level INTEGER NOT NULL,
        name TEXT NOT NULL,
        path_in_repo TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('planned', 'committed', 'applied')),
        segment_id INTEGER,
        created_at REAL NOT NULL,
        committed_at REAL,
        commit_oid TEXT
    )""",
    "CREATE INDEX compactions_by_state ON compactions (state, id)",
)
_V1_SEGMENT_COLUMNS = (
    "id, run, name, path_in_repo, state, size, sha256, attempts, last_error, created_at, sealed_at, "
    "committed_at, commit_oid, writer_pid, writer_create_time"
)
# Version-1 segments get the new CHECK (a 'replaced' state) by a table rebuild, keeping ids and AUTOINCREMENT.
_MIGRATE_1_TO_2 = (
    "ALTER TABLE segments RENAME TO segments_v1",
    _SEGMENTS_TABLE,
    f"INSERT INTO segments ({_V1_SEGMENT_COLUMNS}) SELECT {_V1_SEGMENT_COLUMNS} FROM segments_v1",
    "INSERT INTO sqlite_sequence (name, seq) SELECT 'segments', 0 "
    "WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'segments')",
    "UPDATE sqlite_sequence SET seq = max(seq, coalesce((SELECT seq FROM sqlite_sequence WHERE name = "
    "'segments_v1'), 0)) WHERE name = 'segments'",
    "DELETE FROM sqlite_sequence WHERE name = 'segments_v1'",
    "DROP TABLE segments_v1",
    "CREATE INDEX segments_by_state ON segments (state, id)",
    *_V2_ADDITIONS,
)
_MIGRATIONS = {1: _MIGRATE_1_TO_2}  # from version -> statements that make it version + 1

_SCHEMA = (
    """CREATE TABLE settings (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        repo_id TEXT NOT NULL,
        repo_type TEXT NOT NULL,
        revision TEXT NOT NULL,
        path_in_repo TEXT NOT NULL,
        allow_patterns TEXT,
        ignore_patterns TEXT,
        squash_history INTEGER NOT NULL,
        commit_every_s REAL NOT NULL,
        private INTEGER,
        endpoint TEXT,
        updated_at REAL NOT NULL
    )""",
    """CREATE TABLE flags (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at REAL NOT NULL
    )""",
    """CREATE TABLE sequence (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        next INTEGER NOT NULL
    )""",
    "INSERT INTO sequence (id, next) VALUES (1, 1)",
    _SEGMENTS_TABLE,
    "CREATE INDEX segments_by_state ON segments (state, id)",
    *_V2_ADDITIONS,
    """CREATE TABLE lease (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        pid INTEGER NOT NULL,
        create_time REAL NOT NULL,
        host TEXT NOT NULL,
        acquired_at REAL NOT NULL,
        heartbeat_at REAL NOT NULL
    )""",
    """CREATE TABLE history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        message TEXT NOT NULL,
        fields TEXT NOT NULL
    )""",
    "CREATE INDEX history_by_kind ON history (kind, id)",
)
TABLES = frozenset({"settings", "flags", "sequence", "segments", "compactions", "lease", "history"})


def read_header(db: sqlite3.Connection) -> tuple[int, int, set[str]]:
    """`(application_id, user_version, table names)` of the database."""
    app_id, version, names = db.execute(
        "SELECT (SELECT application_id FROM pragma_application_id), (SELECT user_version FROM pragma_user_version), "
        "(SELECT json_group_array(name) FROM sqlite_master WHERE type = 'table')"
    ).fetchone()
    return app_id, version, set(json.loads(names)) - {"sqlite_sequence"}


def is_blank(header: tuple[int, int, set[str]]) -> bool:
    """Whether the header is that of an empty database (a journal never initialised)."""
    return header == (0, 0, set())


def create_schema(db: sqlite3.Connection) -> None:
    """Inside a transaction: create every table of an empty database and stamp it with the current version."""
    for statement in _SCHEMA:
        db.execute(statement)
    db.execute(f"PRAGMA application_id={APPLICATION_ID}")
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def migrates_from(version: int) -> bool:
    """Whether a journal of `version` can be migrated to a newer version."""
    return version in _MIGRATIONS


def migrate_one_version(db: sqlite3.Connection) -> bool:
    """Inside a transaction: bring the journal one version up; False when no migration applies (another process
    may have migrated it meanwhile, so the version is read here, inside the caller's transaction)."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version not in _MIGRATIONS:
        return False
    for statement in _MIGRATIONS[version]:
        db.execute(statement)
    db.execute(f"PRAGMA user_version={version + 1}")
    return True
