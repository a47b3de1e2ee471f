"""Find the runs under directories: a run is a directory holding an hf-summary journal (`.hf_summary/journal.db`).

Used by `hf-summary sync` and by `hf-summary status` on a parent directory. On a network filesystem every lookup
is a round trip to the server, so there the walk looks into the directories of one depth `READERS` at a time
(`read_all`, which times the first reads to tell); elsewhere, where the work is the CPU's, one at a time.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from hf_summary.journal import JOURNAL_DIR, journal_path

logger = logging.getLogger("hf_summary")

READERS_ENV = "HF_SUMMARY_READERS"
READERS = 8  # directories (or journals, for `status`) read at once on a network filesystem: round trips overlap
PROBE = 16  # reads timed one at a time before `read_all` chooses
WAIT_RATIO = 3.0  # waiting that many times longer than computing: round trips dominate

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
    while level:
        seen.update(level)
        below: list[Path] = []
        for directory, (run, children) in zip(level, read_all(_look_into, level), strict=True):
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


def read_all(read: Callable[[T], R], items: list[T]) -> list[R]:
    """`[read(item) for item in items]`, several at a time where that pays.

    The first `PROBE` items are read one at a time and timed. When they waited (wall time beyond this thread's CPU
    time) more than `WAIT_RATIO` times what they computed, round trips to a server dominate (a network
    filesystem): the rest are read `readers()` at once, their waits overlapping. Else the work is the CPU's (a
    local disk, or a filesystem that answers at once) and threads would only contend for it: one at a time.
    """
    started, cpu = time.perf_counter(), time.thread_time()
    results = [read(item) for item in items[:PROBE]]
    computed = time.thread_time() - cpu
    waited = time.perf_counter() - started - computed
    rest, at_once = items[PROBE:], readers()
    if not rest or at_once == 1 or waited <= WAIT_RATIO * computed:
        return results + [read(item) for item in rest]
    with ThreadPoolExecutor(max_workers=at_once) as pool:
        return results + list(pool.map(read, rest))


def readers() -> int:
    """How many reads `read_all` makes at once when they wait on a server: `HF_SUMMARY_READERS` (1: one at a
    time, to spare a busy metadata server), else `READERS`."""
    raw = os.environ.get(READERS_ENV, "").strip()
    if not raw:
        return READERS
    if raw.isdigit() and int(raw) >= 1:
        return int(raw)
    logger.warning("%s=%r is not a positive whole number: reading %d at once", READERS_ENV, raw, READERS)
    return READERS
