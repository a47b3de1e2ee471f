"""The SQLite journal between the trainer and the uploader: settings, segments, lease, history.

File `LOGDIR/.hf_summary/journal.db` (directory 0700, file 0600; SQLite gives the `-wal`/`-shm`
files the database file's mode). WAL mode (a rollback journal on a shared filesystem: see
`connection`), `synchronous=FULL`, 30 s busy timeout. Every state change
is one `BEGIN IMMEDIATE` transaction, so a crash leaves either all of it or none. One `Journal`
may be shared by several threads (a lock serialises them); several processes may open the same file.
Times are float epoch seconds. No token is ever stored (and token-like strings are redacted from
error messages).

The modules, each with one job:

- `connection`: where the file lives and how every connection to it is opened (journal
  mode, durability, lock wait), and moving a broken file aside.
- `schema`: the tables (described there), the schema version and the migrations.
- `base`: opening, one transaction per change, flags, history, the lease.
- `core`: `Journal`, the state changes of settings, segments and compactions.
- `queries`: the read-only queries (`status` among them), in plain SQL.
- `settings` (`RunSettings`, the one conversion of the settings row),
  `rows` (the row types), `errors`.
"""

from hf_summary.journal.connection import JOURNAL_DIR, journal_path, move_aside
from hf_summary.journal.core import Journal
from hf_summary.journal.errors import JournalCorruptError, JournalError, JournalVersionError
from hf_summary.journal.rows import CompactionRow, LeaseOwner, SegmentRow
from hf_summary.journal.schema import APPLICATION_ID, HISTORY_KEEP, SCHEMA_VERSION
from hf_summary.journal.settings import RunSettings

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
