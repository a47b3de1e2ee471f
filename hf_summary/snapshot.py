"""Consistent reads of a journal that another host may be writing (the logdir on a shared filesystem), with no
lock of the shared file: locks may not reach across hosts.

- `read_journal` runs a short read in place, and keeps its result when no transaction was under way
  before it nor ran during it (no side file, the same size, mtime and change counter after as before); else it
  reads a copy (or, on a local disk, opens the journal as usual). `status` reads a thousand runs this way.
- `journal_snapshot` gives a private copy to keep for a long while (`recover` pushes from it), taken when
  neither the file nor its side files changed while they were copied (see `_copy_if_quiet`).

Either way what is read is the journal as it was at one instant. Imports only the journal (`status` uses it and
must start fast).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from hf_summary.journal import Journal, JournalCorruptError, JournalError, JournalVersionError, journal_path

T = TypeVar("T")

SNAPSHOT_TIMEOUT_S = 30.0
_CHANGE_COUNTER = slice(24, 28)  # the database header's file change counter: bumped by every transaction
_FORMAT_VERSIONS = slice(18, 20)  # the header's write and read versions: 2, 2 in WAL mode, 1, 1 otherwise
_WAL_FORMAT = b"\x02\x02"
_SIDE_FILES = ("-journal", "-wal")


class SnapshotError(Exception):
    """No consistent copy of a journal could be taken in time: its writer kept changing it."""


def _side_state(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _fingerprint(path: Path) -> tuple:
    """What changes when a transaction writes: the file's size, mtime and change counter, and the size and mtime
    of its side files (a rollback `-journal`, or a `-wal` for a WAL journal made on a local disk or with
    HF_SUMMARY_SHARED_FS=0)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        stat = os.fstat(fd)
        header = os.pread(fd, 100, 0)
    finally:
        os.close(fd)
    wal = header[_FORMAT_VERSIONS] == _WAL_FORMAT  # a rollback journal's file never has a -wal that counts
    sides = (_side_state(f"{path}-journal"), _side_state(f"{path}-wal") if wal else None)
    return stat.st_size, stat.st_mtime_ns, header[_CHANGE_COUNTER], sides


def _copy_if_quiet(source: Path, dest: Path) -> bool:
    """Copy `source` and its side files to `dest`; whether nothing changed meanwhile. The copy is then the
    journal as it was at one instant, as a crash would have left it: opening it rolls back a transaction that was
    under way (a hot `-journal`, which a writer killed mid-transaction leaves for good) or ignores a torn end
    of a `-wal` (its frames are checksummed)."""
    before = _fingerprint(source)
    shutil.copyfile(source, dest)
    for suffix, state in zip(_SIDE_FILES, before[3], strict=True):
        if state is None:
            continue
        try:
            shutil.copyfile(f"{source}{suffix}", f"{dest}{suffix}")
        except FileNotFoundError:  # the transaction ended (or the WAL was checkpointed) meanwhile
            return False
    return _fingerprint(source) == before and _fingerprint(dest)[2] == before[2]


@contextmanager
def journal_snapshot(logdir: Path, timeout: float = SNAPSHOT_TIMEOUT_S) -> Iterator[Journal]:
    """A `Journal` open on a private, consistent copy of `logdir`'s journal (deleted on exit). Its
    `logdir` is the copy's: read segment files with `row.local_path(logdir)` of the real one.

    Raises `FileNotFoundError` (no journal), `SnapshotError` (it kept changing for `timeout`) and
    `JournalCorruptError` (copies taken while it did not change were unusable).
    """
    source = journal_path(logdir)
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryDirectory(prefix="hf-summary-snapshot-") as tmp:
        copy = journal_path(tmp)
        copy.parent.mkdir()
        corrupt: JournalCorruptError | None = None
        while True:
            if _copy_if_quiet(source, copy):
                try:
                    journal = Journal(tmp, create=False)
                    break
                except JournalCorruptError as exc:  # torn in a way the checks missed (a lagging cache), or damaged
                    corrupt = exc
            if time.monotonic() >= deadline:
                if corrupt is not None:
                    raise corrupt
                raise SnapshotError(f"{source} kept changing: no consistent copy of it within {timeout:.0f} s")
            time.sleep(0.05)
        with journal:
            yield journal


def read_journal(logdir: Path, read: Callable[[Journal], T], *, shared: bool = True,
                 timeout: float = SNAPSHOT_TIMEOUT_S) -> T:
    """`read(journal)` on `logdir`'s journal as it was at one instant; `read` must only read, and be short.

    In place (no copy, no lock, no file created) when the journal has no side file (no transaction under way, no
    WAL) and is the same after `read` as before it; a read torn by a transaction meanwhile is thrown away and made
    again. Else (a transaction under way, a hot rollback journal its killed writer left for good, a live WAL, an
    older schema version): on a filesystem other hosts see (`shared`), from a `journal_snapshot`; on a local
    disk, through an ordinary connection, whose locks work there. Raises as `journal_snapshot`.
    """
    source = journal_path(logdir)
    deadline = time.monotonic() + timeout
    while True:
        before = _fingerprint(source)
        if any(before[3]):
            break
        try:
            with Journal(logdir, create=False, immutable=True) as journal:
                result = read(journal)
        except JournalVersionError:
            break
        except (sqlite3.DatabaseError, JournalError):
            if _fingerprint(source) == before:
                raise
        else:
            if _fingerprint(source) == before:
                return result
        if time.monotonic() >= deadline:
            raise SnapshotError(f"{source} kept changing: no consistent read of it within {timeout:.0f} s")
        time.sleep(0.05)
    if not shared:
        with Journal(logdir, create=False) as journal:
            return read(journal)
    with journal_snapshot(logdir, max(0.0, deadline - time.monotonic())) as journal:
        return read(journal)
