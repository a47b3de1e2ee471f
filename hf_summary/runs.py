"""Find the runs under directories: a run is a directory holding an hf-summary journal (`.hf_summary/journal.db`).

Used by `hf-summary sync` and by `hf-summary status` on a parent directory.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from hf_summary.journal import JOURNAL_DIR, journal_path


class NoRunsError(Exception):
    """No run was found under the given paths."""


def is_run(directory: Path) -> bool:
    """Whether `directory` holds a journal: a regular file in a real directory, no symlink on the way."""
    journal = journal_path(directory)
    try:
        return stat.S_ISDIR(os.lstat(journal.parent).st_mode) and stat.S_ISREG(os.lstat(journal).st_mode)
    except OSError:
        return False


def find_runs(paths: Iterable[Path]) -> list[Path]:
    """Every run at or under `paths` (absolute, sorted, each once), nested runs included.

    The walk never follows a symlink (a given path may itself be one) and never enters a journal's directory.
    Raises `NotADirectoryError` for a path that is not a directory and `NoRunsError` when nothing
    is found.
    """
    paths = list(paths)
    found: set[Path] = set()
    for path in paths:
        root = Path(path).resolve()
        if not root.is_dir():
            raise NotADirectoryError(f"{path} is not a directory")
        for dirpath, dirnames, _ in os.walk(root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if d != JOURNAL_DIR)
            if is_run(Path(dirpath)):
                found.add(Path(dirpath))
    if not found:
        raise NoRunsError(
            f"no hf-summary journal at or under {', '.join(str(p) for p in paths)}: no run to look at "
            f"(a run is a directory with {JOURNAL_DIR}/journal.db)"
        )
    return sorted(found)
