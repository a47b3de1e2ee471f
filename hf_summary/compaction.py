"""Compaction: merge a run dir's committed files into bigger event files, so that a run of any length keeps a
bounded number of files on the Hub and in the logdir, at a bounded upload cost.

Policy (levels, a base-`FANOUT` counter per run dir). A segment the writer sealed is level 0. When
`FANOUT` adjacent files of one run dir are committed and of one level `L`, they are merged into one file
of level `L + 1`; at most one merge per run dir rides in each push. A merged file is the byte concatenation
of the files it replaces (event files are sequences of whole records), so it holds exactly their records in
order, and it is named from the first one (`hf_summary.segments.merged_name`), so it sorts where they
did. `hf-summary watch`'s copies of one foreign file merge alike (`hf_summary.tailcopy`), by runs of
contiguous copies, read from the foreign file itself. Bounds, for `n` segments of a run dir (or copies of a
foreign file):

* files: at most `FANOUT` per level (`FANOUT - 1` once merges caught up), levels `0 .. floor(log_F n)`,
  so at most `FANOUT * (floor(log_F n) + 1)` committed files plus the pending ones: 40 for a 30-day run at
  the default 5-minute tick (n = 8,640, levels 0..4), 48 for 8 months;
* upload: each byte goes up once as a segment and once per level it climbs: at most `1 + floor(log_F n)`
  times with basic LFS (5 for a 30-day run); through Xet the merged file's chunks are already stored, so
  almost nothing new is sent.

Each step is crash-safe (a crash between two steps leaves a state the next push, or `recover`, finishes):

1. `prepare` (in the uploader's push, before its commit): first `settle` what a crashed push left:
   a `planned` merge whose file the Hub holds was committed (atomically with its deletions in a repo; in a
   bucket, deletions the push did not get to are sent now); one it lacks
   rides again (`recover` abandons it instead); `committed` ones are applied to the logdir. Then plan: write the merged file to `LOGDIR/.hf_summary/compaction/` (not a `tfevents`
   name, so no reader sees it), fsync, and record it `planned` with the files it replaces. A merge of
   `watch`'s copies is not written: it is a byte range of the foreign file, hashed and recorded, pushed from
   there (`merged_source`) and checked again as it is read; one whose range no longer hashes to the
   record is abandoned by the next push.
2. The push's one commit adds the merged file and deletes the files it replaces (a reader of the repo sees
   either the old files or the merged one, each event once). A bucket push sends the deletions in a second
   batch, once the first answered (between the two, a reader of the bucket may see those events twice).
3. `journal.mark_committed(..., compactions=...)` records both in one transaction.
4. `apply`: in the logdir, rename the merged file into its run dir (a merge of copies has none), then
   unlink the files it replaces, then mark it `applied`. (A directory has no atomic multi-file swap: a reader that lists the run dir
   between the rename and the unlinks, microseconds, may see those events twice.)

TensorBoard running on the logdir during a compaction: the Python loader never reads a file that sorts
before the one it is reading, so it skips the merged file and keeps what it read (every event once), as
long as the file it is reading is not one of those merged (it reopens that file by name at each reload and,
once it is gone, stops following the run until restarted; its current file is normally the writer's open
segment, never merged, so this takes a TensorBoard that lags by whole files: `view`'s mirror empties
dropped files instead of deleting them for this reason); rustboard reads the merged file as a new one and, since its steps are older than those it already holds,
its step preemption hides the steps logged after the merged range until it is restarted. A TensorBoard
started after the compaction (or on a download of the repo at any commit) sees every event exactly once.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from hf_summary._faults import fault
from hf_summary.hub import FileRange, PushTarget
from hf_summary.journal import CompactionRow, Journal, JournalError, RunSettings, SegmentRow
from hf_summary.reconcile import JOURNAL_DIR, logdir_relative, repo_path
from hf_summary.segments import concatenate, concatenation_digest, fsync_dir, merged_name, segment_span
from hf_summary.tailcopy import CopyName, copy_range, merged_copy_name, range_sha256

logger = logging.getLogger("hf_summary")

FANOUT = 8
STAGING_DIR = "compaction"


@dataclass
class Ride:
    """What the merges of one push add to its commit."""

    compaction_ids: list[int] = field(default_factory=list)
    # (staged merged file, or a copies' merge's byte range of its foreign file; path in repo)
    additions: list[tuple[Path | FileRange, str]] = field(default_factory=list)
    deletions: list[str] = field(default_factory=list)  # paths in repo of the files they replace


def prepare(journal: Journal, settings: RunSettings, client: PushTarget, runs: set[str], *, plan: bool = True) -> Ride:
    """Settle merges a crashed push left planned; with `plan`, plan at most one new merge per run dir in
    `runs` (not already merging); return what this push's commit must carry for all planned merges."""
    planned = settle(journal, client, abandon=False)
    busy = {row.run for row in planned}
    for run in sorted(runs - busy) if plan else ():
        if (compaction := _plan(journal, settings, run)) is not None:
            planned.append(compaction)
    if planned:
        fault("after_compaction_planned")
    ride = Ride()
    for compaction in planned:
        ride.compaction_ids.append(compaction.id)
        ride.additions.append((merged_source(journal, compaction), compaction.path_in_repo))
        ride.deletions += [row.path_in_repo for row in journal.compaction_members(compaction.id)]
    return ride


def apply(journal: Journal) -> int:
    """Make the logdir match the repo for every committed merge: move the merged file into its run dir (a
    copies' merge has none: the foreign file holds its bytes), unlink the files it replaced, mark it applied.
    Idempotent; returns how many were applied."""
    applied = 0
    for compaction in journal.compactions("committed"):
        members = journal.compaction_members(compaction.id)
        if copy_range(journal.logdir, compaction) is None and not _move_into_place(journal, compaction, members):
            continue
        fault("during_compaction_swap")
        for row in members:
            row.local_path(journal.logdir).unlink(missing_ok=True)
        if (directory := members[0].local_path(journal.logdir).parent).is_dir():
            fsync_dir(directory)
        journal.mark_applied(compaction.id)
        applied += 1
    return applied


def _move_into_place(journal: Journal, compaction: CompactionRow, members: list[SegmentRow]) -> bool:
    """Rename the staged merged file into its run dir (done already if it is there); whether it is there."""
    staged = staging_path(journal.logdir, compaction.run, compaction.name)
    target = journal.logdir / logdir_relative(compaction.run, compaction.name)
    if staged.exists():
        os.replace(staged, target)
        fsync_dir(target.parent)
    elif not target.exists():
        logger.error("the merged file %s is missing from disk; keeping the %d file(s) it replaced",
                     target, len(members))
        return False
    return True


def merged_source(journal: Journal, compaction: CompactionRow) -> Path | FileRange:
    """What a push uploads for merged file `compaction`: its staged file, or for `hf-summary watch`'s copies
    the byte range of the foreign file they were taken from, checked against the merge's record as it is read
    (`hf_summary.hub.ranges`), so no merged copy is ever written to disk."""
    if (span := copy_range(journal.logdir, compaction)) is not None:
        return FileRange(*span, compaction.sha256)
    return staging_path(journal.logdir, compaction.run, compaction.name)


def _source_holds(journal: Journal, compaction: CompactionRow) -> bool:
    """Whether what `merged_source` names still holds the merge: the staged file is there, or the foreign
    file's range hashes to the merge's sha256 (one read of the range, only for a merge a failed push left)."""
    source = merged_source(journal, compaction)
    if isinstance(source, Path):
        return source.is_file()
    try:
        return range_sha256(source.path, source.start, source.end) == source.sha256
    except OSError:
        return False


def staging_path(logdir: Path, run: str, name: str) -> Path:
    """Where merged file `name` of `run` waits until its commit is confirmed (under the journal's directory)."""
    key = hashlib.sha1(logdir_relative(run, name).encode()).hexdigest()
    return logdir / JOURNAL_DIR / STAGING_DIR / key


def mergeable(live: list[SegmentRow]) -> list[SegmentRow] | None:
    """The oldest `FANOUT` adjacent files (in name order) that are committed, not being merged, of one
    level, and segments or merged files, or `hf-summary watch`'s copies of one source that follow each other
    in one generation of it (`hf_summary.tailcopy`); `None` if there are none."""
    streak: list[SegmentRow] = []
    for row in live:
        if row.state != "committed" or row.replaced_by is not None or (
            segment_span(row.name) is None and CopyName.parse(row.name) is None
        ):
            streak = []
            continue
        streak = [*streak, row] if streak and _continues(streak[-1], row) else [row]
        if len(streak) == FANOUT:
            return streak
    return None


def _continues(previous: SegmentRow, row: SegmentRow) -> bool:
    """Whether `row` may follow `previous` in one merge: the same level, and for copies the next bytes of the
    same generation of their source (so the merge is one byte range of it)."""
    before, after = CopyName.parse(previous.name), CopyName.parse(row.name)
    if before is None or after is None:
        return previous.level == row.level and before is after
    return previous.level == row.level and before.continued_by(after)


def _merge_inputs(journal: Journal, settings: RunSettings, run: str, group: list[SegmentRow], level: int) -> tuple[
    str, str, list[Path | tuple[Path, int, int]]
]:
    """Name, path in the repo and the bytes to concatenate of the merge of `group`: segments' local files, or
    for copies (whose local files `hf-summary watch` removes once pushed, at any moment) their ranges of the
    foreign file, checked against their sha256 as any member is."""
    first, last = group[0], group[-1]
    if CopyName.parse(first.name) is None:
        name = merged_name(first.name, last.name, level)
        return name, repo_path(settings, run, name), [row.local_path(journal.logdir) for row in group]
    name = merged_copy_name(first.name, last.name)
    inputs = [copy_range(journal.logdir, row) for row in group]
    return name, first.path_in_repo.removesuffix(first.name) + name, inputs


def _plan(journal: Journal, settings: RunSettings, run: str) -> CompactionRow | None:
    group = mergeable(journal.live_files(run))
    if group is None:
        return None
    level = group[0].level + 1
    name, path_in_repo, inputs = _merge_inputs(journal, settings, run, group, level)
    # a copies' merge is a byte range of the foreign file: read to check and hash, never written
    staged = None if isinstance(inputs[0], tuple) else staging_path(journal.logdir, run, name)
    try:  # a full disk, a quota, an I/O error: abandoned, the next push plans it again
        if staged is None:
            size, sha256, read = concatenation_digest(inputs)
        else:
            staged.parent.mkdir(mode=0o700, exist_ok=True)
            os.chmod(staged.parent, 0o700)  # mkdir's mode is subject to the umask
            staged.unlink(missing_ok=True)  # left by a crash before the plan was recorded
            merged, read = concatenate(inputs, staged)
            size, sha256 = merged.size, merged.sha256
    except OSError as exc:
        logger.warning("cannot merge %d file(s) of run dir %r now: %s", len(group), run, exc)
        _discard(staged)
        return None
    if any((got.size, got.sha256) != (row.size, row.sha256) for got, row in zip(read, group, strict=True)):
        logger.warning("not merging files of run dir %r: one changed on disk since it was committed", run)
        _discard(staged)
        return None
    try:
        compaction_id = journal.plan_compaction(run, level, name, path_in_repo, size, sha256, [row.id for row in group])
    except (JournalError, OSError) as exc:  # a member changed state since it was read, or the journal cannot be
        logger.warning("not merging files of run dir %r: %s", run, exc)  # written: plan again at the next push
        _discard(staged)
        return None
    return next(c for c in journal.compactions("planned") if c.id == compaction_id)


def _discard(staged: Path | None) -> None:
    if staged is not None:
        with contextlib.suppress(OSError):
            staged.unlink(missing_ok=True)


def settle(journal: Journal, client: PushTarget, *, abandon: bool) -> list[CompactionRow]:
    """Finish what an interrupted push left: a planned merge whose file the Hub holds was committed: delete
    what it replaces if the Hub still holds some (a bucket's batches are not atomic; a repo's commit is, so
    there is nothing left to delete), and confirm it; one the Hub lacks is abandoned when `abandon` (or
    when its staged file is gone), else returned to ride again. Then `apply` the committed ones.
    One request to look, plus one to delete only after a bucket push died between its batches."""
    planned = journal.compactions("planned")
    pending = []
    if planned:
        members = {c.id: [row.path_in_repo for row in journal.compaction_members(c.id)] for c in planned}
        remote = client.file_info([path for c in planned for path in (c.path_in_repo, *members[c.id])])
        for compaction in planned:
            found = remote.get(compaction.path_in_repo)
            if found is not None and found.size == compaction.size and found.sha256 in (None, compaction.sha256):
                if leftovers := [path for path in members[compaction.id] if path in remote]:
                    client.commit_files([], f"hf-summary: finish merging into {compaction.name}", deletions=leftovers)
                journal.confirm_compaction(compaction.id, None)
            elif abandon or not _source_holds(journal, compaction):
                journal.abandon_compaction(compaction.id)
                staging_path(journal.logdir, compaction.run, compaction.name).unlink(missing_ok=True)
            else:
                pending.append(compaction)
    apply(journal)
    return pending
