"""A private, consistent copy of a journal that another host may be writing (the logdir on a shared
filesystem): taken when neither the file nor its side files changed while they were copied, so no lock of the
shared file is needed and what is read is the journal as it was at one instant (see `_copy_if_quiet`).

Imports only the journal (`status` uses it and must start fast).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hf_summary.journal import Journal, JournalCorruptError, journal_path

SNAPSHOT_TIMEOUT_S = 30.0
_CHANGE_COUNTER = slice(24, 28)  # the database header's file change counter: bumped by every transaction
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
    stat = os.stat(path)
    with open(path, "rb") as f:
        header = f.read(100)
    sides = tuple(_side_state(f"{path}{suffix}") for suffix in _SIDE_FILES)
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
