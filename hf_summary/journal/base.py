"""An open journal's connection and what every state change builds on: opening (and creating or migrating) the file,
one transaction per change, flags, history and the drainer's lease. `hf_summary.journal.Journal` adds the
segments and compactions on top."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import hf_summary.journal.queries as queries
from hf_summary.journal.connection import (
    connect,
    connect_immutable,
    create_private_file,
    journal_path,
    set_durability,
    set_journal_mode,
    suit_filesystem,
)
from hf_summary.journal.errors import (
    JournalCorruptError,
    JournalError,
    JournalVersionError,
    as_os_error,
    is_corruption,
    redact,
)
from hf_summary.journal.rows import LeaseOwner
from hf_summary.journal.schema import (
    APPLICATION_ID,
    HISTORY_KEEP,
    SCHEMA_VERSION,
    TABLES,
    create_schema,
    is_blank,
    migrate_one_version,
    migrates_from,
    read_header,
)

if TYPE_CHECKING:
    import sqlite_utils

_HISTORY_RESERVED = frozenset({"id", "at", "kind", "message"})
_Self = TypeVar("_Self", bound="JournalBase")


class JournalBase:
    """An open journal connection. Thread-safe (a lock serialises the threads); close it (or use `with`) when done."""

    def __init__(self, logdir: str | os.PathLike[str], *, create: bool = True, immutable: bool = False) -> None:
        """Open the journal of `logdir`, creating it when `create` and it is absent.

        `immutable`: open it read-only, without locks or a look for a hot rollback journal, as a file no one
        changes while it is open; the caller checks that (see `hf_summary.snapshot.read_journal`). A journal
        of an older schema version then raises `JournalVersionError` (migrating it needs a writable open).

        Raises `FileNotFoundError` (`create=False` and no journal), `JournalCorruptError`,
        `JournalVersionError`. Only quick checks run here (application_id, user_version, tables);
        see `integrity_check` for the full one.
        """
        self.logdir = Path(logdir)
        self.path = journal_path(logdir)
        self._lock = threading.RLock()
        self._tables: sqlite_utils.Database | None = None
        self._immutable = immutable
        if not self.path.exists():
            if not create or immutable:
                raise FileNotFoundError(errno.ENOENT, "no hf-summary journal", str(self.path))
            create_private_file(self.path)
        conn = connect_immutable(self.path) if immutable else connect(self.path)
        try:
            self.db = conn
            self._open(create and not immutable)
        except sqlite3.DatabaseError as exc:
            conn.close()
            if is_corruption(exc):
                raise JournalCorruptError(f"{self.path}: {exc}") from exc
            raise
        except BaseException:
            conn.close()
            raise

    def _open(self, create: bool) -> None:
        header = read_header(self.db)
        if is_blank(header):
            if not create:
                raise FileNotFoundError(errno.ENOENT, "hf-summary journal was never initialised", str(self.path))
            set_journal_mode(self.db, self.path)
            with self._transaction():
                if is_blank(read_header(self.db)):  # another process may have won the race
                    create_schema(self.db)
            header = read_header(self.db)
        app_id, version, tables = header
        if app_id != APPLICATION_ID:
            raise JournalCorruptError(f"{self.path} is an SQLite database but not an hf-summary journal")
        if migrates_from(version):
            if self._immutable:
                raise JournalVersionError(f"{self.path} has the older journal schema version {version}: open it "
                                          "writable to migrate it")
            self._migrate()
            app_id, version, tables = read_header(self.db)
        if version != SCHEMA_VERSION:
            raise JournalVersionError(
                f"{self.path} has journal schema version {version}; "
                f"this hf-summary reads version {SCHEMA_VERSION}"
            )
        if missing := TABLES - tables:
            raise JournalCorruptError(f"{self.path} lacks tables {sorted(missing)}")
        if self._immutable:
            return
        suit_filesystem(self.db, self.path)
        set_durability(self.db)

    def _migrate(self) -> None:
        """Bring an older journal to the current schema version, one version per transaction (another process may
        be migrating it too)."""
        migrated = True
        while migrated:
            with self._transaction():
                migrated = migrate_one_version(self.db)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self.db.close()

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Journal({str(self.logdir)!r})"

    @contextmanager
    def _transaction(self, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
        """`BEGIN <mode>` ... `COMMIT` under the thread lock; roll back on any exception."""
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
                if is_corruption(exc):
                    raise JournalCorruptError(f"{self.path}: {exc}") from exc
                if (os_error := as_os_error(exc, self.path)) is not None:
                    raise os_error from exc
                raise

    def _insert(self, table: str, row: dict[str, Any], *, replace: bool = False) -> int:
        """Inside a transaction: write one row through sqlite-utils (`replace`: over the row with the same key);
        returns its rowid. sqlite-utils >= 4.0 nests its writes in the open transaction as a savepoint (3.x
        committed it)."""
        if self._tables is None:  # imported on the first write: `import hf_summary` and `status` never load it
            import sqlite_utils

            self._tables = sqlite_utils.Database(self.db, recursive_triggers=False, execute_plugins=False)
        return self._tables.table(table).insert(row, replace=replace).last_rowid

    def _set_flag(self, key: str, value: Any, now: float) -> None:
        """Inside a transaction: store `value` (JSON) under `key`."""
        self._insert("flags", {"key": key, "value": json.dumps(value), "updated_at": now}, replace=True)

    def integrity_check(self) -> str:
        """`PRAGMA integrity_check`: `"ok"` or SQLite's list of problems (slow on big files)."""
        with self._lock:
            try:
                rows = self.db.execute("PRAGMA integrity_check").fetchall()
            except sqlite3.DatabaseError as exc:
                if is_corruption(exc):
                    raise JournalCorruptError(f"{self.path}: {exc}") from exc
                raise
        return "\n".join(row[0] for row in rows)

    # -- flags --------------------------------------------------------------------------------------

    def get_value(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under `key`, or `default`."""
        with self._lock:
            return queries.flag(self.db, key, default)

    def set_value(self, key: str, value: Any) -> None:
        """Store a small JSON-serialisable value under `key`."""
        with self._transaction():
            self._set_flag(key, value, time.time())

    def values(self, prefix: str) -> dict[str, Any]:
        """Every JSON value stored under a key starting with `prefix`, by key."""
        if not prefix:
            sql, params = "SELECT key, value FROM flags ORDER BY key", []
        else:  # a range of the primary key (UTF-8 sorts by code point): an index search, not a scan
            sql, params = "SELECT key, value FROM flags WHERE key >= ? AND key < ? ORDER BY key", [
                prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)
            ]
        with self._lock:
            rows = self.db.execute(sql, params).fetchall()
        return {key: json.loads(value) for key, value in rows}

    # -- history ------------------------------------------------------------------------------------

    def record_event(self, kind: str, message: str, **fields: Any) -> None:
        """Append a history entry; `fields` must be JSON-serialisable and not named id/at/kind/message."""
        with self._transaction():
            self._add_history(kind, message, fields)

    def _add_history(self, kind: str, message: str, fields: dict[str, Any], at: float | None = None) -> None:
        if clash := _HISTORY_RESERVED & fields.keys():
            raise ValueError(f"history fields may not be named {sorted(clash)}")
        self._insert(
            "history",
            {"at": time.time() if at is None else at, "kind": kind, "message": redact(message),
             "fields": redact(json.dumps(fields))},
        )
        self.db.execute(
            "DELETE FROM history WHERE id <= (SELECT max(id) FROM history) - ? "
            "AND id NOT IN (SELECT max(id) FROM history GROUP BY kind)",
            [HISTORY_KEEP],
        )

    def history(self, kind: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Newest-first history entries as `{"id", "at", "kind", "message", **fields}`."""
        with self._lock:
            return queries.history(self.db, kind, limit)

    def latest_history(self, kinds: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The newest history entry of each of `kinds` that has one, by kind."""
        with self._lock:
            return queries.latest_history(self.db, kinds)

    # -- lease --------------------------------------------------------------------------------------

    def acquire_lease(self, owner: LeaseOwner, owner_is_alive: Callable[[LeaseOwner], bool]) -> bool:
        """Take the lease if it is free, already ours, or held by an owner `owner_is_alive` says is dead.

        One `BEGIN IMMEDIATE` transaction; `owner_is_alive` runs inside it, so keep it quick.
        Returns whether `owner` now holds the lease.
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
            self._insert(
                "lease",
                {"id": 1, "pid": owner.pid, "create_time": owner.create_time, "host": owner.host,
                 "acquired_at": acquired_at, "heartbeat_at": now},
                replace=True,
            )
            return True

    def heartbeat(self, owner: LeaseOwner) -> None:
        """Refresh the lease's heartbeat; raises `JournalError` if `owner` no longer holds it."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE lease SET heartbeat_at = ? WHERE id = 1 AND pid = ? AND create_time = ? AND host = ?",
                [time.time(), owner.pid, owner.create_time, owner.host],
            )
            if cursor.rowcount != 1:
                raise JournalError(f"lease lost: {owner} no longer holds the lease of {self.path}")

    def release_lease(self, owner: LeaseOwner) -> None:
        """Give the lease up if `owner` holds it (otherwise do nothing)."""
        with self._transaction() as db:
            db.execute(
                "DELETE FROM lease WHERE id = 1 AND pid = ? AND create_time = ? AND host = ?",
                [owner.pid, owner.create_time, owner.host],
            )

    def lease_owner(self) -> tuple[LeaseOwner, float] | None:
        """The lease holder and its last heartbeat time, or `None` when the lease is free."""
        with self._lock:
            return queries.lease_owner(self.db)
