"""Reconcile a journal with the segments on disk after a crash (no Hub access here).

Used by the writer on start-up, by the uploader when its trainer is gone, and by `hf-summary recover`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from hf_summary.journal import (
    JOURNAL_DIR,
    Journal,
    JournalCorruptError,
    JournalVersionError,
    RunSettings,
    SegmentRow,
    journal_path,
    move_aside,
)
from hf_summary.journal.connection import connect_read_only
from hf_summary.journal.queries import run_settings
from hf_summary.liveness import host_aware
from hf_summary.patterns import path_matches
from hf_summary.segments import (
    merge_level,
    parse_segment_run_id,
    parse_segment_sequence,
    seal_tail,
    segment_span,
)

logger = logging.getLogger("hf_summary")


def open_or_rebuild(
    logdir: Path, settings: RunSettings | None, *, check_integrity: bool = False
) -> tuple[Journal, Path | None]:
    """Open the logdir's journal; if it is corrupt or of another schema, move it aside (never delete it) and
    rebuild it from the segments on disk. Returns the journal and where the old file went (or None).

    Rebuilding needs the run's settings (to know each segment's path in the repo): `settings` when given,
    else those still readable from the unusable file; without either the error is raised and the file stays
    where it is. A journal that was never used (no settings yet: new, or lost) adopts the segments already
    on disk as well, so their names are never handed out again and they get pushed. `check_integrity`
    also runs the full `PRAGMA integrity_check` (slower; `recover` does).
    """
    try:
        journal = Journal(logdir)
        try:
            if check_integrity and (problems := journal.integrity_check()) != "ok":
                raise JournalCorruptError(f"{journal.path} fails its integrity check: {problems.splitlines()[0]}")
            if journal.load_settings() is None and settings is not None:
                journal.save_settings(settings)
                if found := register_disk_segments(journal, settings):
                    journal.record_event("recover", f"adopted {found} segment(s) found on disk", found=found)
            else:
                _keep_sequence_above_disk(journal)
        except BaseException:
            journal.close()
            raise
        return journal, None
    except (JournalCorruptError, JournalVersionError) as exc:
        if settings is None:
            settings = salvage_settings(journal_path(logdir))
            if settings is None:
                raise
        moved = move_aside(logdir)
        logger.warning("journal %s is unusable (%s); moved it to %s and rebuilt it", journal_path(logdir), exc, moved)
    journal = Journal(logdir)
    try:
        journal.save_settings(settings)
        found = register_disk_segments(journal, settings)
        journal.record_event(
            "recover", f"journal rebuilt from {found} segment(s) on disk", moved_to=str(moved), found=found
        )
    except BaseException:
        journal.close()
        raise
    return journal, moved


def salvage_settings(path: Path) -> RunSettings | None:
    """The run settings still readable from an unusable journal file (read-only; `None` if unreadable)."""
    if not path.is_file():
        return None
    try:
        conn = connect_read_only(path)
    except sqlite3.Error:
        return None
    try:
        return run_settings(conn)
    except (sqlite3.Error, KeyError, TypeError, ValueError):
        return None
    finally:
        conn.close()


def _keep_sequence_above_disk(journal: Journal) -> None:
    """Never hand out a segment name that is already on disk (say, the journal was restored from a backup)."""
    sequences = [parse_segment_sequence(name) for _, name in iter_logdir_files(journal.logdir)]
    if highest := max((s for s in sequences if s is not None), default=None):
        journal.ensure_sequence_above(highest)


@dataclass(frozen=True)
class DirListing:
    """One directory's entries that matter to the logdir's walks: its subdirectories to enter (not the journal's
    directory, not symlinks) and its regular files (no symlinks, FIFOs, sockets or devices: opening a FIFO to
    hash it would block forever). `nested_run`: it holds a journal of its own (another writer's logdir, pushed
    by that writer), so neither it nor anything under it belongs to this logdir."""

    subdirs: tuple[str, ...]
    files: tuple[str, ...]
    nested_run: bool


def list_dir(path: Path) -> DirListing:
    """`DirListing` of `path`; an unreadable or vanished directory lists as empty."""
    subdirs, files, nested = [], [], False
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                try:
                    if entry.name == JOURNAL_DIR:
                        nested = True
                    elif entry.is_dir(follow_symlinks=False):
                        subdirs.append(entry.name)
                    elif entry.is_file(follow_symlinks=False):
                        files.append(entry.name)
                except OSError:  # gone since the listing
                    continue
    except OSError:
        pass
    return DirListing(tuple(sorted(subdirs)), tuple(sorted(files)), nested)


def iter_logdir_files(logdir: Path) -> Iterator[tuple[str, str]]:
    """`(run, name)` of every regular file under `logdir` (see `DirListing`): a walk of the whole
    logdir, for start-up and `recover`; the uploader's pushes use `hf_summary.assets.AssetTracker`."""
    stack = [""]
    while stack:
        run = stack.pop()
        listing = list_dir(logdir / run if run else logdir)
        if run and listing.nested_run:
            continue
        yield from ((run, name) for name in listing.files)
        stack += [logdir_relative(run, name) for name in reversed(listing.subdirs)]


def iter_disk_segments(logdir: Path) -> list[tuple[str, str]]:
    """`(run, name)` of every segment file hf-summary wrote under `logdir`, in sequence order."""
    found = [(parse_segment_sequence(name), run, name) for run, name in iter_logdir_files(logdir)]
    return [(run, name) for sequence, run, name in sorted(f for f in found if f[0] is not None)]


def logdir_relative(run: str, name: str) -> str:
    """Path of file `name` of run dir `run`, relative to the logdir (`run` is `""` for the logdir)."""
    return f"{run}/{name}" if run else name


def repo_path(settings: RunSettings, run: str, name: str) -> str:
    """Path in the repo of file `name` of run dir `run`."""
    return "/".join(part for part in (settings.path_in_repo, run, name) if part)


def register_disk_segments(journal: Journal, settings: RunSettings) -> int:
    """Record as sealed every segment on disk that the journal does not know (torn tails cut first).

    Returns how many were added. Re-pushing one the Hub already holds is a no-op, so this is always safe.
    """
    on_disk = iter_disk_segments(journal.logdir)
    known = journal.known_files(on_disk)
    added = 0
    covered = _covered_by_merges(on_disk)
    for run, name in on_disk:
        relative = logdir_relative(run, name)
        if (run, name) in covered and (run, name) not in known:
            (journal.logdir / relative).unlink(missing_ok=True)
            logger.info("removed %s: a merged file on disk holds its records (an interrupted compaction)", relative)
            continue
        if (run, name) in known or not path_matches(relative, settings.allow_patterns, settings.ignore_patterns):
            continue
        sealed = seal_tail(journal.logdir / relative)
        journal.ensure_sequence_above(parse_segment_sequence(name))
        if sealed.size:
            journal.add_sealed_segment(run, name, repo_path(settings, run, name), sealed.size, sealed.sha256)
            added += 1
    return added


def _covered_by_merges(files: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Files that a merged file of a higher level in the same run dir covers (it only reaches a run dir once the
    Hub holds it) of the same run id: leftovers of a compaction whose swap in the logdir was cut short."""
    merged: dict[tuple[str, str | None], list[tuple[tuple[int, int], int]]] = {}
    for run, name in files:
        if level := merge_level(name):
            merged.setdefault((run, parse_segment_run_id(name)), []).append((segment_span(name), level))
    covered = set()
    for run, name in files:
        span, level = segment_span(name), merge_level(name)
        tops = merged.get((run, parse_segment_run_id(name)), ())
        if any(lo <= span[0] and span[1] <= hi and level < top for (lo, hi), top in tops):
            covered.add((run, name))
    return covered


def seal_abandoned(
    journal: Journal, writer_alive: Callable[[int, float | None], bool], *, others_gone: bool = False
) -> list[SegmentRow]:
    """Seal the open segments whose writer process is gone: cut a torn trailing record, then record the
    size and sha256; a segment whose file never got a record is dropped. Returns the rows sealed.

    `writer_alive` judges processes of this host; a writer recorded on another host is judged by its
    heartbeat (`hf_summary.liveness`), so a live writer's open segment is never sealed from elsewhere;
    `others_gone`: the writers of other hosts are known to be gone."""
    writer_alive = host_aware(journal, writer_alive, others_gone=others_gone)
    sealed_rows = []
    for row in journal.open_segments():
        if row.writer_pid is not None and writer_alive(row.writer_pid, row.writer_create_time):
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
