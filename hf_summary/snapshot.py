"""A private, consistent copy of a journal that another host may be writing (the logdir on a shared
filesystem): taken when the file did not change while it was copied and no transaction was under way (no hot
``-journal``), so no lock of the shared file is needed and no half-written page is ever read.

Imports only the journal (``status`` uses it and must start fast).
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
_HOT_JOURNAL = "-journal"


class SnapshotError(Exception):
    """No consistent copy of a journal could be taken in time: its writer kept changing it."""


def _fingerprint(path: Path) -> tuple:
    """What changes when a transaction commits: the file's size, mtime and change counter, and the ``-wal``'s
    size and mtime (a WAL journal, made on a local disk or with HF_SUMMARY_SHARED_FS=0, commits there)."""
    stat = os.stat(path)
    with open(path, "rb") as f:
        header = f.read(100)
    try:
        wal = os.stat(f"{path}-wal")
        wal_state = (wal.st_size, wal.st_mtime_ns)
    except FileNotFoundError:
        wal_state = None
    return stat.st_size, stat.st_mtime_ns, header[_CHANGE_COUNTER], wal_state


def _copy_if_quiet(source: Path, dest: Path) -> bool:
    """Copy ``source`` (and its ``-wal``, if any: its frames are checksummed, so a torn end is ignored) to
    ``dest``; whether nothing changed meanwhile and no transaction was under way."""
    hot = Path(f"{source}{_HOT_JOURNAL}")
    if hot.exists():
        return False
    before = _fingerprint(source)
    shutil.copyfile(source, dest)
    if before[3] is not None:
        try:
            shutil.copyfile(f"{source}-wal", f"{dest}-wal")
        except FileNotFoundError:  # checkpointed and removed meanwhile
            return False
    return not hot.exists() and _fingerprint(source) == before and _fingerprint(dest)[2] == before[2]


@contextmanager
def journal_snapshot(logdir: Path, timeout: float = SNAPSHOT_TIMEOUT_S) -> Iterator[Journal]:
    """A :class:`Journal` open on a private, consistent copy of ``logdir``'s journal (deleted on exit). Its
    ``logdir`` is the copy's: read segment files with ``row.local_path(logdir)`` of the real one.

    Raises ``FileNotFoundError`` (no journal), :class:`SnapshotError` (it kept changing for ``timeout``) and
    :class:`~hf_summary.journal.JournalCorruptError` (copies taken while it did not change were unusable).
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
