"""Where the journal lives and how it is opened: its file, its connection settings, moving a broken one aside.

Every connection to a journal is made here, so the journal mode, the durability (`synchronous`) and the
lock wait are chosen in one place.

Journal mode: WAL on a local disk. On a filesystem other hosts may see (network or FUSE, see
`hf_summary.filesystems`; `HF_SUMMARY_SHARED_FS=1/0` overrides), a rollback journal (`DELETE`) and no
mmap: WAL's index is shared memory, an mmap of `-shm` that two hosts never share, so a second host would read a
stale index and could corrupt the file. The design there does not rely on locks reaching across hosts either:
only the writer's host opens the journal while the writer lives; other hosts read consistent copies of it
(`hf_summary.snapshot`) and take it over once the writer has closed or is known to be gone.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from hf_summary.filesystems import filesystem_of

JOURNAL_DIR = ".hf_summary"  # under the logdir: the journal, locks, staging; never uploaded
JOURNAL_FILE = "journal.db"
JOURNAL_MODE = "WAL"  # persistent: set when the file is created (and left on a shared filesystem, see above)
SHARED_FS_JOURNAL_MODE = "DELETE"
SYNCHRONOUS = "FULL"
BUSY_TIMEOUT_S = 30.0
_SIDE_FILES = ("-wal", "-shm")  # moved before the main file, so a stale WAL never meets a new database


def journal_path(logdir: str | os.PathLike[str]) -> Path:
    """`LOGDIR/.hf_summary/journal.db`."""
    return Path(os.path.join(logdir, JOURNAL_DIR, JOURNAL_FILE))  # one parse: `status` makes thousands


def create_private_file(path: Path) -> None:
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


def connect(path: Path) -> sqlite3.Connection:
    """A read-write connection in autocommit mode (the journal runs its own `BEGIN`), shareable by threads."""
    return sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection that never creates or changes the file (for salvaging an unusable journal)."""
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def connect_immutable(path: Path) -> sqlite3.Connection:
    """A read-only connection that takes no lock and never looks for a hot rollback journal: SQLite's
    `immutable` mode, for reading a journal another host may write while the caller checks that no transaction
    ran meanwhile (see `hf_summary.snapshot.read_journal`)."""
    return sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro&immutable=1", uri=True, isolation_level=None)


def journal_mode_for(path: Path) -> str:
    """The journal mode of a journal at `path`: see the module docstring."""
    return SHARED_FS_JOURNAL_MODE if filesystem_of(path).shared else JOURNAL_MODE


def set_journal_mode(db: sqlite3.Connection, path: Path) -> None:
    """Give a new journal its journal mode (outside any transaction: SQLite cannot change it inside one)."""
    db.execute(f"PRAGMA journal_mode={journal_mode_for(path)}")


def suit_filesystem(db: sqlite3.Connection, path: Path) -> None:
    """On a shared filesystem: no mmap, and a WAL journal (made on a local disk and moved, or by an older
    hf-summary) left for a rollback journal when this is its only connection (else it stays WAL until then)."""
    if journal_mode_for(path) != SHARED_FS_JOURNAL_MODE:
        return
    db.execute("PRAGMA mmap_size=0")
    if db.execute("PRAGMA journal_mode").fetchone()[0].upper() == JOURNAL_MODE:
        try:
            db.execute(f"PRAGMA journal_mode={SHARED_FS_JOURNAL_MODE}")
        except sqlite3.OperationalError:  # another connection has it open: "database is locked"
            pass


def set_durability(db: sqlite3.Connection) -> None:
    """Make every commit of this connection durable before it returns (a per-connection setting)."""
    db.execute(f"PRAGMA synchronous={SYNCHRONOUS}")


def move_aside(logdir: str | os.PathLike[str]) -> Path | None:
    """Rename `journal.db` (and `-wal`/`-shm`) to `journal.db.broken-<UTC timestamp>`; never deletes.

    Returns the new path of the database file, or `None` when there was no journal. Close every
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
