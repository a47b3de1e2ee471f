"""The SQLite journal between the trainer and the uploader: settings, segments, lease, history.

File ``LOGDIR/.hf_summary/journal.db`` (directory 0700, file 0600; SQLite gives the ``-wal``/``-shm``
files the database file's mode). WAL mode, ``synchronous=FULL``, 30 s busy timeout. Every state change
is one ``BEGIN IMMEDIATE`` transaction, so a crash leaves either all of it or none. One :class:`Journal`
may be shared by several threads (a lock serialises them); several processes may open the same file.
Times are float epoch seconds. No token is ever stored (and token-like strings are redacted from
error messages).

Schema (``PRAGMA application_id`` = :data:`APPLICATION_ID`, ``PRAGMA user_version`` = :data:`SCHEMA_VERSION`):

``settings``  one row (id 1): how to push this logdir, so that ``recover`` needs only the logdir.
    repo_id, repo_type, revision, path_in_repo, allow_patterns / ignore_patterns (JSON list or NULL),
    squash_history, commit_every_s, private (NULL = unspecified), endpoint, updated_at.
``flags``     small JSON key/value flags (``key`` primary key, ``value`` JSON text, updated_at), e.g.
    ``run_id`` (the run id in this run's segment names), ``conflicts`` (ids of segments whose path on
    the Hub holds another run's file, see :meth:`Journal.add_conflicts`), ``replaced_segments`` (how many
    segments rows are ``replaced``, kept by each compaction's commit), and one
    ``writer:<host>:<pid>:<create time>`` record per writer process (see :mod:`hf_summary.liveness`).
``sequence``  one row (id 1): ``next``, the lowest segment sequence number still free (time-based, see
    :meth:`Journal.next_sequence`).
``segments``  one row per segment file, ``id`` AUTOINCREMENT (never reused, so ``id`` order is
    creation order). run (logdir-relative directory, ``/``-separated, ``""`` = logdir), name,
    path_in_repo (UNIQUE), state, size, sha256, attempts, last_error, created_at, sealed_at,
    committed_at, commit_oid, writer_pid, writer_create_time (the writer process's create time, so that a
    reused pid is not taken for a live writer), level (0 = a segment the writer wrote; L >= 1 = a merged file made by compaction), replaced_by (the
    ``compactions`` row that merged it away, set when the merge is planned). A partial index on
    ``(run, name)`` over the rows not ``replaced`` keeps a run dir's live files one short index scan away.
    ``(run, name)`` is UNIQUE too.
``compactions`` one row per merge of committed files of one run dir into one file of ``level``: run, level,
    name, path_in_repo, size, sha256, state (``planned`` -> ``committed`` -> ``applied``), segment_id (the
    merged file's ``segments`` row, once committed), created_at, committed_at, commit_oid. The files it
    replaces are the ``segments`` rows whose replaced_by is its id.
``lease``     at most one row (id 1): the live drainer's pid, create_time, host, acquired_at,
    heartbeat_at.
``history``   recent events for ``status``: at, kind (``commit``, ``error``, ``requeue``, ``lease``, ``compaction``,
    ``preemption`` (field ``signal``), ``final_push`` (``segments``, ``bytes``, ``commits``: what the
    pushes of the final drain after a preemption carried; ``pending`` after it, ``last_commit``), ...), message, fields (JSON object). Trimmed to the last :data:`HISTORY_KEEP` rows, always keeping
    the newest row of each kind.

Segment states::

    open --mark_sealed--> sealed --mark_committed--> committed
                            ^                            |
                            +------requeue_segments------+   (the Hub lacks what was committed)
                                                         |
                                        (compaction) --> replaced  (merged into a file of a higher level)
    drop_segment deletes an open row (its file got no record) or a sealed one (its file vanished).
    add_sealed_segment inserts straight into ``sealed`` (rebuilding from files on disk).

Compaction (hf_summary/compaction.py)::

    plan_compaction:     members committed, replaced_by set; compaction 'planned'
    mark_committed(compactions=...) / confirm_compaction:
                         members -> 'replaced'; the merged file becomes a 'committed' segments row of its level;
                         compaction 'committed' (the Hub's commit replaced them, the logdir not yet)
    mark_applied:        compaction 'applied' (the logdir holds the merged file instead of its members)
    abandon_compaction:  a planned one the Hub never got: deleted, members live again

Schema versions: 1 (no compaction); 2 adds ``segments.level``, ``segments.replaced_by``, the ``replaced`` state
and ``compactions``. A version-1 journal is migrated in place when opened.

A row becomes ``committed`` only with the commit oid the Hub returned (or, for a merged file whose commit a
crash interrupted, once the Hub is seen holding it: its oid then stays unknown). Failures never change the
state: ``record_failure`` counts the attempt and keeps the error, and the segment stays pending.
"""

from __future__ import annotations

import errno
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = [
    "APPLICATION_ID",
    "CompactionRow",
    "HISTORY_KEEP",
    "JOURNAL_DIR",
    "SCHEMA_VERSION",
    "Journal",
    "JournalCorruptError",
    "JournalError",
    "JournalVersionError",
    "LeaseOwner",
    "RunSettings",
    "SegmentRow",
    "journal_path",
    "move_aside",
]

SCHEMA_VERSION = 2
APPLICATION_ID = 0x48465355  # "HFSU"
HISTORY_KEEP = 200
BUSY_TIMEOUT_S = 30.0
SEGMENT_STATES = ("open", "sealed", "committed", "replaced")
COMPACTION_STATES = ("planned", "committed", "applied")

JOURNAL_DIR = ".hf_summary"  # under the logdir: the journal, locks, staging; never uploaded
_JOURNAL_FILE = "journal.db"
_SIDE_FILES = ("-wal", "-shm")  # moved before the main file, so a stale WAL never meets a new database
_CONFLICTS_KEY = "conflicts"
_REPLACED_KEY = "replaced_segments"
_HISTORY_RESERVED = frozenset({"id", "at", "kind", "message"})
_SECRET = re.compile(r"hf_[A-Za-z0-9]{16,}|(?<=[Bb]earer )[A-Za-z0-9._~+/=-]+")

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
_TABLES = frozenset({"settings", "flags", "sequence", "segments", "compactions", "lease", "history"})


class JournalError(Exception):
    """Base class of journal errors; also raised for refused state changes."""


class JournalCorruptError(JournalError):
    """The file is not an SQLite database, fails an integrity check, or is not an hf-summary journal."""


class JournalVersionError(JournalError):
    """The journal was written by another schema version."""


def journal_path(logdir: str | os.PathLike[str]) -> Path:
    """``LOGDIR/.hf_summary/journal.db``."""
    return Path(logdir) / JOURNAL_DIR / _JOURNAL_FILE


@dataclass
class RunSettings:
    """How a logdir is pushed; ``path_in_repo`` already includes the logdir name."""

    repo_id: str
    repo_type: str
    revision: str
    path_in_repo: str
    allow_patterns: list[str] | None
    ignore_patterns: list[str] | None
    squash_history: bool
    commit_every_s: float
    private: bool | None
    endpoint: str | None

    @property
    def destination(self) -> tuple[str, str, str, str]:
        """Where the segments go: (repo_id, repo_type, revision, path_in_repo)."""
        return (self.repo_id, self.repo_type, self.revision, self.path_in_repo)


@dataclass
class SegmentRow:
    """One row of the ``segments`` table."""

    id: int
    run: str
    name: str
    path_in_repo: str
    state: str
    size: int | None
    sha256: str | None
    attempts: int
    last_error: str | None
    created_at: float
    sealed_at: float | None
    committed_at: float | None
    commit_oid: str | None
    writer_pid: int | None
    writer_create_time: float | None = None
    level: int = 0
    replaced_by: int | None = None

    def local_path(self, logdir: str | os.PathLike[str]) -> Path:
        """``logdir / run / name`` (run ``""`` is the logdir itself)."""
        return Path(logdir, *filter(None, self.run.split("/")), self.name)


@dataclass
class CompactionRow:
    """One row of the ``compactions`` table."""

    id: int
    run: str
    level: int
    name: str
    path_in_repo: str
    size: int
    sha256: str
    state: str
    segment_id: int | None
    created_at: float
    committed_at: float | None
    commit_oid: str | None


@dataclass(frozen=True)
class LeaseOwner:
    """A process that may hold the lease: pid plus its create time (pids are reused) and host."""

    pid: int
    create_time: float
    host: str


def _insert(db: sqlite3.Connection, table: str, row: dict[str, Any], *, replace: bool = False) -> int:
    """``INSERT`` (``OR REPLACE``) one row given as a dict (``table`` and the keys are ours, never user input);
    returns its rowid."""
    columns = ", ".join(row)
    marks = ", ".join("?" * len(row))
    verb = "INSERT OR REPLACE" if replace else "INSERT"
    return db.execute(f"{verb} INTO {table} ({columns}) VALUES ({marks})", list(row.values())).lastrowid


def _query(db: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """The rows of ``sql`` as dicts keyed by column name."""
    cursor = db.execute(sql, params)
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]


def _redact(text: str) -> str:
    return _SECRET.sub("***", text)


def _as_os_error(exc: sqlite3.DatabaseError, path: Path) -> OSError | None:
    """SQLITE_FULL / SQLITE_IOERR as the OSError a plain file write raises (ENOSPC / EIO), so that callers (``add_*``
    in the trainer) see what tensorboardX raises on a full disk; None for other errors."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11
    primary = code & 0xFF if code is not None else None
    text = str(exc)
    if primary == 13 or (primary is None and "database or disk is full" in text):  # SQLITE_FULL
        return OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (journal: {text})", str(path))
    if primary == 10 or (primary is None and "disk I/O error" in text):  # SQLITE_IOERR
        return OSError(errno.EIO, f"{os.strerror(errno.EIO)} (journal: {text})", str(path))
    return None


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    # SQLITE_CORRUPT / SQLITE_NOTADB surface as the base class; busy, constraint, misuse... as subclasses.
    return type(exc) is sqlite3.DatabaseError


class Journal:
    """An open journal. Thread-safe; close it (or use ``with``) when done."""

    def __init__(self, logdir: str | os.PathLike[str], *, create: bool = True) -> None:
        """Open the journal of ``logdir``, creating it when ``create`` and it is absent.

        Raises ``FileNotFoundError`` (``create=False`` and no journal), :class:`JournalCorruptError`,
        :class:`JournalVersionError`. Only quick checks run here (application_id, user_version, tables);
        see :meth:`integrity_check` for the full one.
        """
        self.logdir = Path(logdir)
        self.path = journal_path(logdir)
        self._lock = threading.RLock()
        if not self.path.exists():
            if not create:
                raise FileNotFoundError(errno.ENOENT, "no hf-summary journal", str(self.path))
            _create_private_file(self.path)
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            self.db = conn
            self._open(create)
        except sqlite3.DatabaseError as exc:
            conn.close()
            if _is_corruption(exc):
                raise JournalCorruptError(f"{self.path}: {exc}") from exc
            raise
        except BaseException:
            conn.close()
            raise

    def _open(self, create: bool) -> None:
        app_id, version, tables = self._header()
        if app_id == 0 and version == 0 and not tables:
            if not create:
                raise FileNotFoundError(
                    errno.ENOENT, "hf-summary journal was never initialised", str(self.path)
                )
            self.db.execute("PRAGMA journal_mode=WAL")  # persistent; cannot change inside a transaction
            with self._transaction():
                if self._header() == (0, 0, set()):  # another process may have won the race
                    for statement in _SCHEMA:
                        self.db.execute(statement)
                    self.db.execute(f"PRAGMA application_id={APPLICATION_ID}")
                    self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            app_id, version, tables = self._header()
        if app_id != APPLICATION_ID:
            raise JournalCorruptError(f"{self.path} is an SQLite database but not an hf-summary journal")
        if version in _MIGRATIONS:
            self._migrate()
            app_id, version, tables = self._header()
        if version != SCHEMA_VERSION:
            raise JournalVersionError(
                f"{self.path} has journal schema version {version}; "
                f"this hf-summary reads version {SCHEMA_VERSION}"
            )
        if missing := _TABLES - tables:
            raise JournalCorruptError(f"{self.path} lacks tables {sorted(missing)}")
        self.db.execute("PRAGMA synchronous=FULL")

    def _migrate(self) -> None:
        """Bring an older journal to :data:`SCHEMA_VERSION`, one version per transaction (another process may be
        migrating it too: the version is read again inside each transaction)."""
        while True:
            with self._transaction():
                version = self.db.execute("PRAGMA user_version").fetchone()[0]
                if version not in _MIGRATIONS:
                    return
                for statement in _MIGRATIONS[version]:
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version={version + 1}")

    def _header(self) -> tuple[int, int, set[str]]:
        app_id = self.db.execute("PRAGMA application_id").fetchone()[0]
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return app_id, version, tables - {"sqlite_sequence"}

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self.db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Journal({str(self.logdir)!r})"

    @contextmanager
    def _transaction(self, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
        """``BEGIN <mode>`` ... ``COMMIT`` under the thread lock; roll back on any exception."""
        with self._lock:
            try:
                self.db.execute(f"BEGIN {mode}")
                try:
                    yield self.db
                except BaseException:
                    self.db.rollback()
                    raise
                try:
                    self.db.execute("COMMIT")
                except BaseException:
                    self.db.rollback()
                    raise
            except sqlite3.DatabaseError as exc:
                if _is_corruption(exc):
                    raise JournalCorruptError(f"{self.path}: {exc}") from exc
                if (os_error := _as_os_error(exc, self.path)) is not None:
                    raise os_error from exc
                raise

    # -- settings and flags -------------------------------------------------------------------------

    def save_settings(self, settings: RunSettings) -> None:
        """Store (replace) the run's settings."""
        row = asdict(settings)
        for key in ("allow_patterns", "ignore_patterns"):
            row[key] = None if row[key] is None else json.dumps(list(row[key]))
        with self._transaction() as db:
            _insert(db, "settings", {"id": 1, **row, "updated_at": time.time()}, replace=True)

    def load_settings(self) -> RunSettings | None:
        """The stored settings, or ``None`` when none were saved."""
        with self._lock:
            rows = _query(self.db, "SELECT * FROM settings WHERE id = 1")
        if not rows:
            return None
        row = rows[0]
        return RunSettings(
            repo_id=row["repo_id"],
            repo_type=row["repo_type"],
            revision=row["revision"],
            path_in_repo=row["path_in_repo"],
            allow_patterns=None if row["allow_patterns"] is None else json.loads(row["allow_patterns"]),
            ignore_patterns=None if row["ignore_patterns"] is None else json.loads(row["ignore_patterns"]),
            squash_history=bool(row["squash_history"]),
            commit_every_s=row["commit_every_s"],
            private=None if row["private"] is None else bool(row["private"]),
            endpoint=row["endpoint"],
        )

    def get_value(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under ``key``, or ``default``."""
        with self._lock:
            row = self.db.execute("SELECT value FROM flags WHERE key = ?", [key]).fetchone()
        return default if row is None else json.loads(row[0])

    def set_value(self, key: str, value: Any) -> None:
        """Store a small JSON-serialisable value under ``key``."""
        text = json.dumps(value)
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO flags (key, value, updated_at) VALUES (?, ?, ?)",
                [key, text, time.time()],
            )

    def values(self, prefix: str) -> dict[str, Any]:
        """Every JSON value stored under a key starting with ``prefix``, by key."""
        if not prefix:
            sql, params = "SELECT key, value FROM flags ORDER BY key", []
        else:  # a range of the primary key (UTF-8 sorts by code point): an index search, not a scan
            sql, params = "SELECT key, value FROM flags WHERE key >= ? AND key < ? ORDER BY key", [
                prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)
            ]
        with self._lock:
            rows = self.db.execute(sql, params).fetchall()
        return {key: json.loads(value) for key, value in rows}

    # -- sequence numbers ---------------------------------------------------------------------------

    def next_sequence(self) -> int:
        """Allocate the next segment sequence number: strictly increasing across restarts and processes, and
        never below the current time in milliseconds, so that a run continued from a fresh logdir (a requeued
        job on another node) names its segments after those of the run it continues."""
        now_ms = int(time.time() * 1000)
        with self._transaction() as db:
            (stored,) = db.execute("SELECT next FROM sequence WHERE id = 1").fetchone()
            sequence = max(stored, now_ms)
            db.execute("UPDATE sequence SET next = ? WHERE id = 1", [sequence + 1])
        return sequence

    def run_id(self) -> str:
        """This journal's run id (made on first use), which every segment name of the run carries."""
        from hf_summary.segments import new_run_id  # not at the top: `hf-summary status` has no use for it

        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO flags (key, value, updated_at) VALUES ('run_id', ?, ?)",
                [json.dumps(new_run_id()), time.time()],
            )
            (value,) = db.execute("SELECT value FROM flags WHERE key = 'run_id'").fetchone()
        return json.loads(value)

    def ensure_sequence_above(self, sequence: int) -> None:
        """Make every later :meth:`next_sequence` return more than ``sequence``."""
        with self._transaction() as db:
            db.execute("UPDATE sequence SET next = max(next, ?) WHERE id = 1", [sequence + 1])

    # -- segments -----------------------------------------------------------------------------------

    def add_open_segment(
        self, run: str, name: str, path_in_repo: str, writer_pid: int, writer_create_time: float | None = None
    ) -> int:
        """Record a segment the trainer is about to write; returns its id.

        Raises :class:`JournalError` when ``path_in_repo`` (or ``run``/``name``) is already recorded.
        """
        return self._insert_segment(
            {
                "run": run,
                "name": name,
                "path_in_repo": path_in_repo,
                "state": "open",
                "writer_pid": writer_pid,
                "writer_create_time": writer_create_time,
            }
        )

    def add_sealed_segment(self, run: str, name: str, path_in_repo: str, size: int, sha256: str) -> int:
        """Record an already sealed segment (rebuilding from files on disk); returns its id."""
        now = time.time()
        return self._insert_segment(
            {
                "run": run,
                "name": name,
                "path_in_repo": path_in_repo,
                "state": "sealed",
                "size": size,
                "sha256": sha256,
                "sealed_at": now,
            },
            now,
        )

    def _insert_segment(self, row: dict[str, Any], now: float | None = None) -> int:
        row = {**row, "attempts": 0, "created_at": time.time() if now is None else now}
        try:
            with self._transaction() as db:
                return _insert(db, "segments", row)
        except sqlite3.IntegrityError as exc:
            raise JournalError(
                f"segment {row['path_in_repo']!r} ({row['run']!r}/{row['name']!r}) is already in the journal"
            ) from exc

    def mark_sealed(self, segment_id: int, size: int, sha256: str) -> None:
        """``open -> sealed``; raises :class:`JournalError` if the segment is unknown or not open."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE segments SET state = 'sealed', size = ?, sha256 = ?, sealed_at = ? "
                "WHERE id = ? AND state = 'open'",
                [size, sha256, time.time(), segment_id],
            )
            if cursor.rowcount != 1:
                raise JournalError(f"segment {segment_id} is not open: {self._describe(segment_id)}")

    def drop_segment(self, segment_id: int) -> None:
        """Forget a segment that will never be pushed: an open one whose file got no record, or a sealed
        one whose file vanished. Refuses committed segments (and unknown ids)."""
        with self._transaction() as db:
            cursor = db.execute(
                "DELETE FROM segments WHERE id = ? AND state IN ('open', 'sealed')", [segment_id]
            )
            if cursor.rowcount != 1:
                raise JournalError(f"cannot drop segment {segment_id}: {self._describe(segment_id)}")

    def _describe(self, segment_id: int) -> str:
        row = self.db.execute("SELECT state FROM segments WHERE id = ?", [segment_id]).fetchone()
        return "no such segment" if row is None else f"state {row[0]}"

    def segments(self, state: str | None = None) -> list[SegmentRow]:
        """Segments, optionally only those in ``state``, ordered by id (creation order)."""
        if state is None:
            sql, params = "SELECT * FROM segments ORDER BY id", []
        elif state in SEGMENT_STATES:
            sql, params = "SELECT * FROM segments WHERE state = ? ORDER BY id", [state]
        else:
            raise ValueError(f"unknown segment state {state!r}; expected one of {SEGMENT_STATES}")
        with self._lock:
            return [SegmentRow(**row) for row in _query(self.db, sql, params)]

    def known_files(self, files: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """The ``(run, name)`` pairs among ``files`` that have a row in any state (replaced ones too): one lookup
        of the ``(run, name)`` index each, so that matching the files on disk against the journal does not read
        a long run's whole compaction history."""
        pairs = json.dumps([[run, name] for run, name in files])
        with self._lock:
            rows = self.db.execute(
                "SELECT segments.run, segments.name FROM json_each(?) AS file JOIN segments "
                "ON segments.run = json_extract(file.value, '$[0]') AND segments.name = json_extract(file.value, '$[1]')",
                [pairs],
            ).fetchall()
        return {(run, name) for run, name in rows}

    def pending_segments(self) -> list[SegmentRow]:
        """Sealed segments not yet committed, ordered by id."""
        return self.segments("sealed")

    def open_segments(self) -> list[SegmentRow]:
        """Segments still being written (or left open by a dead writer), ordered by id."""
        return self.segments("open")

    def mark_committed(
        self, segment_ids: list[int], commit_oid: str, commit_url: str | None, compactions: list[int] = ()
    ) -> None:
        """``sealed -> committed`` for ``segment_ids`` and ``planned -> committed`` for ``compactions`` (which
        rode in the same commit) in one transaction, plus a ``commit`` history entry.

        Segments already committed keep their first commit (pushing twice is a no-op); an unknown or open
        segment, or a compaction that is not planned, raises :class:`JournalError` and nothing changes.
        """
        ids = json.dumps([int(i) for i in segment_ids])
        with self._transaction() as db:
            rows = self._closed_segments(segment_ids, ids, "committed")
            sealed = [row for row in rows if row[1] == "sealed"]
            now = time.time()
            db.execute(
                "UPDATE segments SET state = 'committed', committed_at = ?, commit_oid = ? "
                "WHERE state = 'sealed' AND id IN (SELECT value FROM json_each(?))",
                [now, commit_oid, ids],
            )
            for compaction_id in compactions:
                self._commit_compaction(compaction_id, commit_oid, now)
            self._add_history(
                "commit",
                f"committed {len(sealed)} segment(s) and {len(compactions)} merge(s) as {commit_oid}",
                {
                    "oid": commit_oid,
                    "url": commit_url,
                    "segments": len(sealed),
                    "bytes": sum(r[2] or 0 for r in sealed),
                    "compactions": len(compactions),
                },
                now,
            )

    # -- compaction ---------------------------------------------------------------------------------

    def live_files(self, run: str) -> list[SegmentRow]:
        """The files of run dir ``run`` that are not replaced (any state), in name order (= creation order)."""
        with self._lock:
            return [
                SegmentRow(**row)
                for row in _query(
                    self.db,
                    "SELECT * FROM segments WHERE run = ? AND state != 'replaced' ORDER BY name", [run]
                )
            ]

    def plan_compaction(
        self, run: str, level: int, name: str, path_in_repo: str, size: int, sha256: str, member_ids: list[int]
    ) -> int:
        """Record a planned merge of the committed, live files ``member_ids`` of ``run``; returns its id.

        Raises :class:`JournalError` (and changes nothing) if any member is not such a file."""
        ids = json.dumps([int(i) for i in member_ids])
        with self._transaction() as db:
            now = time.time()
            compaction_id = _insert(
                db,
                "compactions",
                {"run": run, "level": level, "name": name, "path_in_repo": path_in_repo, "size": size,
                 "sha256": sha256, "state": "planned", "created_at": now},
            )
            cursor = db.execute(
                "UPDATE segments SET replaced_by = ? WHERE run = ? AND state = 'committed' AND replaced_by IS NULL "
                "AND id IN (SELECT value FROM json_each(?))",
                [compaction_id, run, ids],
            )
            if cursor.rowcount != len(set(member_ids)):
                raise JournalError(f"cannot merge segments {sorted(member_ids)} of {run!r}: not all committed and live")
        return compaction_id

    def compactions(self, state: str) -> list[CompactionRow]:
        """Compactions in ``state``, oldest first."""
        if state not in COMPACTION_STATES:
            raise ValueError(f"unknown compaction state {state!r}; expected one of {COMPACTION_STATES}")
        with self._lock:
            return [
                CompactionRow(**row)
                for row in _query(self.db, "SELECT * FROM compactions WHERE state = ? ORDER BY id", [state])
            ]

    def compaction_members(self, compaction_id: int) -> list[SegmentRow]:
        """The files a compaction replaces (or will), in name order."""
        with self._lock:
            return [
                SegmentRow(**row)
                for row in _query(
                    self.db,
                    "SELECT * FROM segments WHERE replaced_by = ? ORDER BY name", [compaction_id]
                )
            ]

    def confirm_compaction(self, compaction_id: int, commit_oid: str | None) -> None:
        """``planned -> committed`` for a merge found on the Hub after a crash (``commit_oid`` may be unknown)."""
        with self._transaction():
            self._commit_compaction(compaction_id, commit_oid, time.time())
            self._add_history("compaction", f"compaction {compaction_id} found on the Hub", {"compaction": compaction_id})

    def _commit_compaction(self, compaction_id: int, commit_oid: str | None, now: float) -> None:
        """Inside a transaction: members -> 'replaced', the merged file -> a committed row of its level."""
        row = self.db.execute(
            "SELECT run, level, name, path_in_repo, size, sha256 FROM compactions WHERE id = ? AND state = 'planned'",
            [compaction_id],
        ).fetchone()
        if row is None:
            raise JournalError(f"compaction {compaction_id} is not planned")
        run, level, name, path_in_repo, size, sha256 = row
        segment_id = _insert(
            self.db,
            "segments",
            {"run": run, "name": name, "path_in_repo": path_in_repo, "state": "committed", "size": size,
             "sha256": sha256, "attempts": 0, "created_at": now, "sealed_at": now, "committed_at": now,
             "commit_oid": commit_oid, "level": level},
        )
        replaced = self.db.execute(
            "UPDATE segments SET state = 'replaced' WHERE replaced_by = ? AND state = 'committed'", [compaction_id]
        ).rowcount
        self._count_replaced(replaced, now)
        self.db.execute(
            "UPDATE compactions SET state = 'committed', segment_id = ?, committed_at = ?, commit_oid = ? "
            "WHERE id = ?",
            [segment_id, now, commit_oid, compaction_id],
        )

    def _count_replaced(self, added: int, now: float) -> None:
        """Inside a transaction: keep the count of ``replaced`` rows (for ``status``, which then reads one row instead
        of counting a long run's compaction history); a journal from before the count is counted once."""
        stored = self._stored_replaced_count()
        count = self._counted_replaced_rows() if stored is None else stored + added  # counted: includes them
        self.db.execute(
            "INSERT OR REPLACE INTO flags (key, value, updated_at) VALUES (?, ?, ?)", [_REPLACED_KEY, json.dumps(count), now]
        )

    def _replaced_count(self) -> int:
        """Inside a transaction: how many rows are ``replaced`` (see :meth:`_count_replaced`)."""
        stored = self._stored_replaced_count()
        return self._counted_replaced_rows() if stored is None else stored

    def _stored_replaced_count(self) -> int | None:
        row = self.db.execute("SELECT value FROM flags WHERE key = ?", [_REPLACED_KEY]).fetchone()
        return None if row is None else json.loads(row[0])

    def _counted_replaced_rows(self) -> int:
        return self.db.execute("SELECT count(*) FROM segments WHERE state = 'replaced'").fetchone()[0]

    def abandon_compaction(self, compaction_id: int) -> None:
        """Forget a planned merge the Hub never got; its members are live again."""
        with self._transaction() as db:
            cursor = db.execute("DELETE FROM compactions WHERE id = ? AND state = 'planned'", [compaction_id])
            if cursor.rowcount != 1:
                raise JournalError(f"compaction {compaction_id} is not planned")
            db.execute("UPDATE segments SET replaced_by = NULL WHERE replaced_by = ?", [compaction_id])

    def mark_applied(self, compaction_id: int) -> None:
        """``committed -> applied``: the logdir holds the merged file instead of the files it replaces."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE compactions SET state = 'applied' WHERE id = ? AND state = 'committed'", [compaction_id]
            )
            if cursor.rowcount != 1:
                raise JournalError(f"compaction {compaction_id} is not committed")

    def requeue_segments(self, segment_ids: list[int], reason: str) -> None:
        """``committed -> sealed`` again (the Hub turned out not to hold them), keeping ``reason`` as their
        last error, plus a ``requeue`` history entry. Sealed ones stay as they are; an unknown or open
        segment raises :class:`JournalError` and nothing changes."""
        reason = _redact(reason)
        ids = json.dumps([int(i) for i in segment_ids])
        with self._transaction() as db:
            rows = self._closed_segments(segment_ids, ids, "requeued")
            db.execute(
                "UPDATE segments SET state = 'sealed', committed_at = NULL, commit_oid = NULL, "
                "last_error = ? WHERE state = 'committed' AND id IN (SELECT value FROM json_each(?))",
                [reason, ids],
            )
            requeued = sum(1 for row in rows if row[1] == "committed")
            self._add_history("requeue", f"requeued {requeued} segment(s): {reason}", {"segments": requeued})

    def _closed_segments(
        self, segment_ids: list[int], ids: str, verb: str
    ) -> list[tuple[int, str, int | None]]:
        """``(id, state, size)`` of ``segment_ids``; :class:`JournalError` if any is unknown or open."""
        rows = self.db.execute(
            "SELECT id, state, size FROM segments WHERE id IN (SELECT value FROM json_each(?))", [ids]
        ).fetchall()
        states = {row[0]: row[1] for row in rows}
        bad = sorted(i for i in set(segment_ids) if states.get(i, "open") == "open")
        if bad:
            raise JournalError(f"cannot mark segments {bad} {verb}: unknown or still open")
        return rows

    def record_failure(self, segment_ids: list[int], error: str, *, permanent: bool) -> None:
        """Count a failed push of ``segment_ids`` (state unchanged) and add an ``error`` history entry."""
        error = _redact(error)
        ids = json.dumps([int(i) for i in segment_ids])
        with self._transaction() as db:
            db.execute(
                "UPDATE segments SET attempts = attempts + 1, last_error = ? "
                "WHERE id IN (SELECT value FROM json_each(?))",
                [error, ids],
            )
            self._add_history("error", error, {"segments": len(segment_ids), "permanent": permanent})

    # -- history ------------------------------------------------------------------------------------

    def record_event(self, kind: str, message: str, **fields: Any) -> None:
        """Append a history entry; ``fields`` must be JSON-serialisable and not named id/at/kind/message."""
        with self._transaction():
            self._add_history(kind, message, fields)

    def _add_history(self, kind: str, message: str, fields: dict[str, Any], at: float | None = None) -> None:
        if clash := _HISTORY_RESERVED & fields.keys():
            raise ValueError(f"history fields may not be named {sorted(clash)}")
        self.db.execute(
            "INSERT INTO history (at, kind, message, fields) VALUES (?, ?, ?, ?)",
            [time.time() if at is None else at, kind, _redact(message), _redact(json.dumps(fields))],
        )
        self.db.execute(
            "DELETE FROM history WHERE id <= (SELECT max(id) FROM history) - ? "
            "AND id NOT IN (SELECT max(id) FROM history GROUP BY kind)",
            [HISTORY_KEEP],
        )

    def history(self, kind: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Newest-first history entries as ``{"id", "at", "kind", "message", **fields}``."""
        where, params = ("WHERE kind = ?", [kind]) if kind is not None else ("", [])
        with self._lock:
            rows = self.db.execute(
                f"SELECT id, at, kind, message, fields FROM history {where} ORDER BY id DESC LIMIT ?",
                [*params, limit],
            ).fetchall()
        return [
            {**json.loads(fields), "id": id_, "at": at, "kind": k, "message": m}
            for id_, at, k, m, fields in rows
        ]

    # -- lease --------------------------------------------------------------------------------------

    def acquire_lease(self, owner: LeaseOwner, owner_is_alive: Callable[[LeaseOwner], bool]) -> bool:
        """Take the lease if it is free, already ours, or held by an owner ``owner_is_alive`` says is dead.

        One ``BEGIN IMMEDIATE`` transaction; ``owner_is_alive`` runs inside it, so keep it quick.
        Returns whether ``owner`` now holds the lease.
        """
        with self._transaction() as db:
            row = db.execute("SELECT pid, create_time, host, acquired_at FROM lease WHERE id = 1").fetchone()
            now = time.time()
            acquired_at = now
            if row is not None:
                holder = LeaseOwner(row[0], row[1], row[2])
                if holder == owner:
                    acquired_at = row[3]
                elif owner_is_alive(holder):
                    return False
                else:
                    self._add_history(
                        "lease",
                        f"took over the lease of dead drainer pid {holder.pid} on {holder.host}",
                        {"pid": owner.pid, "previous_pid": holder.pid, "previous_host": holder.host},
                        now,
                    )
            db.execute(
                "INSERT OR REPLACE INTO lease (id, pid, create_time, host, acquired_at, heartbeat_at) "
                "VALUES (1, ?, ?, ?, ?, ?)",
                [owner.pid, owner.create_time, owner.host, acquired_at, now],
            )
            return True

    def heartbeat(self, owner: LeaseOwner) -> None:
        """Refresh the lease's heartbeat; raises :class:`JournalError` if ``owner`` no longer holds it."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE lease SET heartbeat_at = ? WHERE id = 1 AND pid = ? AND create_time = ? AND host = ?",
                [time.time(), owner.pid, owner.create_time, owner.host],
            )
            if cursor.rowcount != 1:
                raise JournalError(f"lease lost: {owner} no longer holds the lease of {self.path}")

    def release_lease(self, owner: LeaseOwner) -> None:
        """Give the lease up if ``owner`` holds it (otherwise do nothing)."""
        with self._transaction() as db:
            db.execute(
                "DELETE FROM lease WHERE id = 1 AND pid = ? AND create_time = ? AND host = ?",
                [owner.pid, owner.create_time, owner.host],
            )

    def lease_owner(self) -> tuple[LeaseOwner, float] | None:
        """The lease holder and its last heartbeat time, or ``None`` when the lease is free."""
        with self._lock:
            row = self.db.execute(
                "SELECT pid, create_time, host, heartbeat_at FROM lease WHERE id = 1"
            ).fetchone()
        return None if row is None else (LeaseOwner(row[0], row[1], row[2]), row[3])

    # -- status -------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Counts and the latest commit/error, from one consistent snapshot (see module docstring)."""
        with self._transaction("DEFERRED") as db:  # one consistent snapshot
            by_state = {
                state: (count, size, oldest)
                for state, count, size, oldest in db.execute(
                    "SELECT state, count(*), coalesce(sum(size), 0), min(sealed_at) "
                    "FROM segments WHERE state IN ('open', 'sealed', 'committed') GROUP BY state"
                )
            }
            replaced = self._replaced_count()
            unfinished = db.execute(
                "SELECT count(*) FROM compactions WHERE state IN ('planned', 'committed')"
            ).fetchone()[0]
            last_commit = self.history("commit", limit=1)
            last_error = self.history("error", limit=1)
            preemption = self.history("preemption", limit=1)
            final_push = self.history("final_push", limit=1)
            conflicts = self.conflicts()
        pending, pending_bytes, oldest = by_state.get("sealed", (0, 0, None))
        return {
            "pending_segments": pending,
            "pending_bytes": pending_bytes,
            "oldest_pending_age_s": None if oldest is None else max(0.0, time.time() - oldest),
            "open_segments": by_state.get("open", (0,))[0],
            "conflicting_segments": len(conflicts),
            "committed_segments": by_state.get("committed", (0,))[0],
            "committed_bytes": by_state.get("committed", (0, 0))[1],
            "replaced_segments": replaced,
            "unfinished_compactions": unfinished,
            "last_commit": (
                {"oid": last_commit[0]["oid"], "at": last_commit[0]["at"], "url": last_commit[0]["url"]}
                if last_commit
                else None
            ),
            "preemption": _preemption_summary(preemption, final_push),
            "last_error": (
                {
                    "message": last_error[0]["message"],
                    "at": last_error[0]["at"],
                    "permanent": last_error[0].get("permanent", False),
                }
                if last_error
                else None
            ),
        }

    def add_conflicts(self, segment_ids: list[int]) -> None:
        """Record segments whose path on the Hub holds another run's file: they are never pushed (kept on
        disk and in their state) and uploads leave them out; ``status`` counts them."""
        self.set_value(_CONFLICTS_KEY, sorted(self.conflicts() | {int(i) for i in segment_ids}))

    def conflicts(self) -> set[int]:
        """Ids recorded by :meth:`add_conflicts`."""
        return set(self.get_value(_CONFLICTS_KEY, []))

    def integrity_check(self) -> str:
        """``PRAGMA integrity_check``: ``"ok"`` or SQLite's list of problems (slow on big files)."""
        with self._lock:
            try:
                rows = self.db.execute("PRAGMA integrity_check").fetchall()
            except sqlite3.DatabaseError as exc:
                if _is_corruption(exc):
                    raise JournalCorruptError(f"{self.path}: {exc}") from exc
                raise
        return "\n".join(row[0] for row in rows)


def _preemption_summary(preemption: list[dict[str, Any]], final_push: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last preemption (when, which signal) and, if it ended in order, what its final push carried."""
    if not preemption:
        return None
    final = final_push[0] if final_push and final_push[0]["id"] > preemption[0]["id"] else None
    return {
        "at": preemption[0]["at"],
        "signal": preemption[0].get("signal"),
        "final_push": None if final is None else {
            key: final.get(key) for key in ("at", "segments", "bytes", "commits", "pending", "last_commit")
        },
    }


def _create_private_file(path: Path) -> None:
    """Create the journal directory (0700) and an empty database file (0600) if absent."""
    path.parent.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.parent.mkdir(mode=0o700)
        os.chmod(path.parent, 0o700)  # mkdir's mode is subject to the umask
    except FileExistsError:
        pass
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except FileExistsError:
        pass


def move_aside(logdir: str | os.PathLike[str]) -> Path | None:
    """Rename ``journal.db`` (and ``-wal``/``-shm``) to ``journal.db.broken-<UTC timestamp>``; never deletes.

    Returns the new path of the database file, or ``None`` when there was no journal. Close every
    connection to the journal first. The WAL files keep their suffix, so SQLite can still open the
    moved copy with its WAL.
    """
    source = journal_path(logdir)
    if not source.exists():
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = source.with_name(f"{source.name}.broken-{stamp}")
    n = 1
    while any(Path(f"{target}{suffix}").exists() for suffix in ("", *_SIDE_FILES)):
        target = source.with_name(f"{source.name}.broken-{stamp}.{n}")
        n += 1
    for suffix in (*_SIDE_FILES, ""):
        try:
            os.rename(f"{source}{suffix}", f"{target}{suffix}")
        except FileNotFoundError:
            pass
    return target
