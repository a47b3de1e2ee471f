"""Find the runs under directories: a run is a directory holding an hf-summary journal (`.hf_summary/journal.db`).

Used by `hf-summary sync` and by `hf-summary status` on a parent directory. On a network filesystem every lookup
is a round trip to the server, so there the walk looks into the directories of one depth at once, `READERS` at a
time (`read_all`); on a local disk, where the work is the CPU's, one at a time.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from hf_summary.filesystems import filesystem_of
from hf_summary.journal import JOURNAL_DIR, journal_path

READERS = 8  # directories (or journals, for `status`) read at once on a network filesystem: round trips overlap

T = TypeVar("T")
R = TypeVar("R")


class NoRunsError(Exception):
    """No run was found under the given paths."""


def is_run(directory: Path) -> bool:
    """Whether `directory` holds a journal: a regular file in a real directory, no symlink on the way."""
    try:
        return stat.S_ISDIR(os.lstat(journal_path(directory).parent).st_mode) and _holds_journal_file(directory)
    except OSError:
        return False


def _holds_journal_file(directory: Path) -> bool:
    return stat.S_ISREG(os.lstat(journal_path(directory)).st_mode)


def find_runs(paths: Iterable[Path]) -> list[Path]:
    """Every run at or under `paths` (absolute, sorted, each once), nested runs included.

    The walk never follows a symlink (a given path may itself be one), never enters a journal's directory and
    skips directories it cannot read. Raises `NotADirectoryError` for a path that is not a directory and
    `NoRunsError` when nothing is found.
    """
    paths = list(paths)
    level: list[Path] = []
    for path in paths:
        root = Path(path).resolve()
        if not root.is_dir():
            raise NotADirectoryError(f"{path} is not a directory")
        level.append(root)
    found: set[Path] = set()
    seen: set[Path] = set()
    shared = any(filesystem_of(root).shared for root in level)
    while level:
        seen.update(level)
        below: list[Path] = []
        for directory, (run, children) in zip(level, read_all(_look_into, level, shared=shared), strict=True):
            if run:
                found.add(directory)
            below += [child for child in children if child not in seen]
        level = below
    if not found:
        raise NoRunsError(
            f"no hf-summary journal at or under {', '.join(str(p) for p in paths)}: no run to look at "
            f"(a run is a directory with {JOURNAL_DIR}/journal.db)"
        )
    return sorted(found)


def _look_into(directory: Path) -> tuple[bool, list[Path]]:
    """Whether `directory` is a run, and the directories in it to look into next (no symlink, no journal's)."""
    children, journal_dir = [], False
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if not entry.is_dir(follow_symlinks=False):
                    continue
                if entry.name == JOURNAL_DIR:
                    journal_dir = True
                else:
                    children.append(Path(entry.path))
        return journal_dir and _holds_journal_file(directory), children
    except OSError:
        return False, children


def read_all(read: Callable[[T], R], items: list[T], *, shared: bool) -> list[R]:
    """`[read(item) for item in items]`, `READERS` at a time when the items are on a filesystem other hosts see (a
    network's, where each read waits on round trips to a server), one at a time else (threads would only contend
    for the CPU)."""
    if not shared or len(items) < 2:
        return [read(item) for item in items]
    with ThreadPoolExecutor(max_workers=READERS) as pool:
        return list(pool.map(read, items))
