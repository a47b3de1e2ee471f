"""Reconcile a journal with the segments on disk after a crash (no Hub access here).

Used by the writer on start-up, by the uploader when its trainer is gone, and by ``hf-summary recover``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from hf_summary.journal import (
    Journal,
    JournalCorruptError,
    JournalVersionError,
    RunSettings,
    SegmentRow,
    journal_path,
    move_aside,
)
from hf_summary.segments import file_sha256, parse_segment_sequence, seal_tail

logger = logging.getLogger("hf_summary")

JOURNAL_DIR = ".hf_summary"


def open_or_rebuild(logdir: Path, settings: RunSettings | None) -> tuple[Journal, Path | None]:
    """Open the logdir's journal; if it is corrupt or of another schema, move it aside (never delete it) and
    rebuild it from the segments on disk. Returns the journal and where the old file went (or None).

    Rebuilding needs ``settings`` (to know each segment's path in the repo); without them the error is raised.
    """
    try:
        return Journal(logdir), None
    except (JournalCorruptError, JournalVersionError) as exc:
        if settings is None:
            raise
        moved = move_aside(logdir)
        logger.warning("journal %s is unusable (%s); moved it to %s and rebuilt it", journal_path(logdir), exc, moved)
    journal = Journal(logdir)
    journal.save_settings(settings)
    found = register_disk_segments(journal, settings)
    journal.record_event("recover", f"journal rebuilt from {found} segment(s) on disk", moved_to=str(moved))
    return journal, moved


def _iter_logdir_files(logdir: Path) -> Iterator[tuple[str, str]]:
    """``(run, name)`` of every regular file under ``logdir``; symlinks are not followed, the journal's
    directory is skipped."""
    for dirpath, dirnames, filenames in os.walk(logdir, followlinks=False):
        dirnames[:] = [d for d in dirnames if d != JOURNAL_DIR]
        run = Path(dirpath).relative_to(logdir).as_posix()
        for name in filenames:
            if not Path(dirpath, name).is_symlink():
                yield ("" if run == "." else run), name


def iter_disk_segments(logdir: Path) -> list[tuple[str, str]]:
    """``(run, name)`` of every segment file hf-summary wrote under ``logdir``, in sequence order."""
    found = [(parse_segment_sequence(name), run, name) for run, name in _iter_logdir_files(logdir)]
    return [(run, name) for sequence, run, name in sorted(f for f in found if f[0] is not None)]


def changed_assets(logdir: Path, settings: RunSettings, pushed: dict[str, str]) -> dict[str, str]:
    """Files other than segments that match the upload patterns (e.g. ``add_embedding``'s projector files,
    another writer's event files) and changed since they were last pushed: logdir-relative path -> sha256.
    ``pushed`` maps paths to the sha256 last pushed."""
    from hf_summary.hub import path_matches

    changed = {}
    for run, name in _iter_logdir_files(logdir):
        relative = logdir_relative(run, name)
        if parse_segment_sequence(name) is not None:
            continue
        if not path_matches(relative, settings.allow_patterns, settings.ignore_patterns):
            continue
        digest = file_sha256(logdir / relative)
        if pushed.get(relative) != digest:
            changed[relative] = digest
    return changed


def logdir_relative(run: str, name: str) -> str:
    """Path of file ``name`` of run dir ``run``, relative to the logdir (``run`` is ``""`` for the logdir)."""
    return f"{run}/{name}" if run else name


def repo_path(settings: RunSettings, run: str, name: str) -> str:
    """Path in the repo of file ``name`` of run dir ``run``."""
    return "/".join(part for part in (settings.path_in_repo, run, name) if part)


def register_disk_segments(journal: Journal, settings: RunSettings) -> int:
    """Record as sealed every segment on disk that the journal does not know (torn tails cut first).

    Returns how many were added. Re-pushing one the Hub already holds is a no-op, so this is always safe.
    """
    from hf_summary.hub import path_matches

    known = {(row.run, row.name) for row in journal.segments()}
    added = 0
    for run, name in iter_disk_segments(journal.logdir):
        relative = logdir_relative(run, name)
        if (run, name) in known or not path_matches(relative, settings.allow_patterns, settings.ignore_patterns):
            continue
        sealed = seal_tail(journal.logdir / relative)
        journal.ensure_sequence_above(parse_segment_sequence(name))
        if sealed.size:
            journal.add_sealed_segment(run, name, repo_path(settings, run, name), sealed.size, sealed.sha256)
            added += 1
    return added


def seal_abandoned(journal: Journal, writer_alive: Callable[[int], bool]) -> list[SegmentRow]:
    """Seal the open segments whose writer process is gone: cut a torn trailing record, then record the
    size and sha256; a segment whose file never got a record is dropped. Returns the rows sealed."""
    sealed_rows = []
    for row in journal.open_segments():
        if row.writer_pid is not None and writer_alive(row.writer_pid):
            continue
        path = row.local_path(journal.logdir)
        if not path.exists():
            journal.drop_segment(row.id)
            continue
        sealed = seal_tail(path)
        if sealed.size == 0:
            journal.drop_segment(row.id)
            continue
        journal.mark_sealed(row.id, sealed.size, sealed.sha256)
        sealed_rows.append(row)
        logger.info("sealed %s left open by dead writer %s (%d bytes)", path, row.writer_pid, sealed.size)
    return sealed_rows
