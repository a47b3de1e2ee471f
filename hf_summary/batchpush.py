"""Shared commits for many runs that push to one target (endpoint, repo type, repo and branch): `sync` of a
sweep's runs makes one commit per batch of runs instead of one per run, so that it stays within the repo's commit
budget (about 128 commits an hour) and spends one upload and one commit request per batch.

A batch holds at most `MAX_FILES_PER_COMMIT` files (the Hub advises commits of at most 100 files) and
`MAX_BYTES_PER_COMMIT` bytes; a run's files go in one commit when they fit in one. What goes in is what
each run would push on its own (`JournalShare`: its sealed segments and changed assets, after its run
folder's parked pushes were moved in; `ForeignShare`: the sealed segments of a live writer of another
host that this host reads whole), and each run learns of a commit only once it is made: a journal marks its
segments committed after the commit that carried them. A crash between the two leaves them sealed; the next push
carries them again and the client skips the files the Hub already holds (the same content at the same path), so
nothing is committed twice.

A commit refused for the repo's commit budget (HTTP 429) is tried again, spaced as the uploader spaces its own
(`pacing`), until the time allowed runs out: then the runs not pushed stay pending
(incomplete, not failed). Other transient errors back off and retry the same way; a permanent one fails the runs
of its batch.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_summary._faults import fault
from hf_summary.exit_status import ExitStatus
from hf_summary.hub import (
    CommitResult,
    HubError,
    PathConflictError,
    PermanentHubError,
    PushTarget,
    RateLimitedError,
    commit_or_create,
)
from hf_summary.journal import RunSettings, SegmentRow
from hf_summary.recover import ForeignRun, Recovery
from hf_summary.uploader.pacing import CommitPacer
from hf_summary.uploader.pusher import BACKOFF_BASE_S, BACKOFF_CAP_S

logger = logging.getLogger("hf_summary")

MAX_FILES_PER_COMMIT = 100
MAX_BYTES_PER_COMMIT = 100_000_000


@dataclass(frozen=True)
class File:
    """One file of a share: where it is, where it goes, how big it is."""

    path: Path
    path_in_repo: str
    size: int


class JournalShare:
    """The part of a run of this host (a `Recovery`, its lease held) in the shared
    commits: its sealed segments on disk and its changed assets."""

    def __init__(self, recovery: Recovery):
        self.recovery = recovery
        pusher = recovery.pusher
        self._rows: dict[str, SegmentRow] = {}
        self._assets: dict[str, Any] = {}
        self.files: list[File] = []
        self._asset_of: dict[str, str] = {}  # path in repo -> the asset's path in the logdir
        logdir = pusher.journal.logdir
        rows = [] if recovery.report.error is not None else [
            row for row in pusher.pushable()  # those not on disk are recover's to record as lost
            if row.local_path(logdir).is_file() and not row.local_path(logdir).is_symlink()]
        if not rows or not pusher.settle_first():
            return  # nothing to push here: its own recovery pushes what is left (or says why not)
        self._rows = {row.path_in_repo: row for row in rows}
        self.files = [File(row.local_path(logdir), row.path_in_repo, row.size or 0) for row in rows]
        self._assets, asset_files = pusher.changed_assets(full=True)  # assets ride with segments, as on its own
        self._asset_of = {dest: relative for relative, (_, dest) in zip(self._assets, asset_files, strict=True)}
        self.files += [File(path, dest, _size(path)) for path, dest in asset_files]

    @property
    def settings(self) -> RunSettings:
        return self.recovery.pusher.settings

    def committed(self, files: list[File], result: CommitResult) -> None:
        rows = [self._rows[file.path_in_repo] for file in files if file.path_in_repo in self._rows]
        journal, report = self.recovery.journal, self.recovery.report
        journal.mark_committed([row.id for row in rows], result.oid, result.url)
        assets = [self._asset_of[file.path_in_repo] for file in files if file.path_in_repo in self._asset_of]
        self.recovery.pusher.assets_pushed({relative: self._assets[relative] for relative in assets})
        report.pushed_segments += len(rows)
        report.pushed_bytes += sum(row.size or 0 for row in rows)

    def conflicting(self, paths: set[str], exc: PathConflictError) -> None:
        rows = [row for dest, row in self._rows.items() if dest in paths]
        if rows:
            self.recovery.pusher.set_aside(rows, exc)

    def refused(self, files: list[File], exc: HubError) -> None:
        """The Hub did not take `files` in the time allowed: recorded in the journal and the report."""
        rows = [self._rows[file.path_in_repo] for file in files if file.path_in_repo in self._rows]
        permanent = isinstance(exc, PermanentHubError)
        self.recovery.journal.record_failure([row.id for row in rows], str(exc), permanent=permanent)
        report = self.recovery.report
        report.error = f"{len(rows)} segment(s) still pending; last error: {exc}"
        report.exit_status = ExitStatus.FAILED if permanent else ExitStatus.INCOMPLETE

    def conclude(self) -> None:
        """Verify on the Hub and push what is left, as `recover` does (nothing, usually)."""
        self.recovery.finish()


class ForeignShare:
    """The part of a run whose writer lives on another host (a `ForeignRun`): the
    sealed segments this host reads whole and the Hub lacks; nothing is recorded in its journal."""

    def __init__(self, run: ForeignRun):
        self.run = run
        self.files = [File(path, dest, _size(path)) for path, dest in run.plan.files]
        self._commits: list[str] = []
        self._error: HubError | None = None

    @property
    def settings(self) -> RunSettings:
        return self.run.settings

    def committed(self, files: list[File], result: CommitResult) -> None:
        self._commits.append(result.oid)

    def conflicting(self, paths: set[str], exc: PathConflictError) -> None:
        if any(file.path_in_repo in paths for file in self.files):
            self._error = exc

    def refused(self, files: list[File], exc: HubError) -> None:
        self._error = exc

    def conclude(self) -> None:
        if self._error is not None:
            self.run.failed(self._error)
        else:
            self.run.pushed(self._commits)


Share = JournalShare | ForeignShare


@dataclass
class _Batch:
    parts: list[tuple[Share, list[File]]] = field(default_factory=list)

    @property
    def files(self) -> list[File]:
        return [file for _, files in self.parts for file in files]

    def add(self, share: Share, file: File) -> None:
        if not self.parts or self.parts[-1][0] is not share:
            self.parts.append((share, []))
        self.parts[-1][1].append(file)


def batches(shares: list[Share], *, max_files: int = MAX_FILES_PER_COMMIT,
            max_bytes: int = MAX_BYTES_PER_COMMIT) -> list[_Batch]:
    """The shares' files in batches of at most `max_files` files and `max_bytes` bytes (a file bigger than
    that alone); a share's files start a new batch when they fit in one but not in the current one."""
    found: list[_Batch] = [_Batch()]

    def fits(files: list[File]) -> bool:
        current = found[-1].files
        return not current or (len(current) + len(files) <= max_files
                               and sum(f.size for f in current) + sum(f.size for f in files) <= max_bytes)

    for share in shares:
        if not fits(share.files) and len(share.files) <= max_files and sum(f.size for f in share.files) <= max_bytes:
            found.append(_Batch())
        for file in share.files:
            if not fits([file]):
                found.append(_Batch())
            found[-1].add(share, file)
    return [batch for batch in found if batch.parts]


def push_together(shares: list[Share], client: PushTarget, *, deadline: float, max_files: int = MAX_FILES_PER_COMMIT,
                  say: Callable[[str], None] = lambda _: None) -> list[str]:
    """Push the files of `shares` (runs of one target, `client`'s) in shared commits; the commits made. Each
    share then needs its `conclude`."""
    pushing = [share for share in shares if share.files]
    committer = SharedCommits(client, tick_s=min((share.settings.commit_every_s for share in pushing), default=0.0),
                              deadline=deadline, say=say)
    found = batches(pushing, max_files=max_files)
    if found:
        settings = pushing[0].settings
        say(f"{settings.repo_type} {settings.repo_id} ({settings.revision}): pushing {sum(len(s.files) for s in pushing)} "
            f"file(s) of {len(pushing)} run(s) in {len(found)} shared commit(s)")
    for batch in found:
        committer.push(batch)
    if committer.commits:
        _after_commits([share for share in pushing if isinstance(share, JournalShare)])
    return committer.commits


def _after_commits(shares: list[JournalShare]) -> None:
    """What a run's own push does after its commit, once for the target: squash (if the runs ask for it) and tag
    the repo card."""
    pushed = [share for share in shares if share.recovery.report.error is None]
    if not pushed:
        return
    leader = pushed[0].recovery.pusher
    leader.after_commit()
    if leader.journal.get_value("card_tagged", False):
        for share in pushed[1:]:
            share.recovery.journal.set_value("card_tagged", True)


class SharedCommits:
    """Commits batches of files for one target, one after the other, spacing them while the repo's commit
    budget is spent; `deadline` (monotonic) bounds the waits. `commits` lists what was committed."""

    def __init__(self, client: PushTarget, *, tick_s: float, deadline: float,
                 say: Callable[[str], None] = lambda _: None):
        self.client = client
        self.deadline = deadline
        self.say = say
        self.pacer = CommitPacer(tick_s)
        self.commits: list[str] = []
        self._failures = 0

    def push(self, batch: _Batch) -> None:
        """Commit `batch` (retrying within the deadline); each share hears of its files' fate."""
        while batch.parts:
            files = batch.files
            size = sum(file.size for file in files)
            message = (f"hf-summary: {len(files)} file(s), {size} bytes of {len(batch.parts)} run(s) (synced from "
                       f"{socket.gethostname()})")
            try:
                result = commit_or_create(self.client, [(f.path, f.path_in_repo) for f in files], message,
                                          private=batch.parts[0][0].settings.private,
                                          never_replace=frozenset(f.path_in_repo for f in files))
            except PathConflictError as exc:  # those files stay out; the rest goes on at once
                paths = set(exc.paths)
                for share, _ in batch.parts:
                    share.conflicting(paths, exc)
                batch.parts = [(share, kept) for share, theirs in batch.parts
                               if (kept := [f for f in theirs if f.path_in_repo not in paths])]
                continue
            except HubError as exc:
                if not self._wait_after(exc):
                    for share, theirs in batch.parts:
                        share.refused(theirs, exc)
                    return
                continue
            fault("after_shared_commit")
            for share, theirs in batch.parts:
                share.committed(theirs, result)
            self.commits.append(result.oid)
            self._failures = 0
            self._sleep(self.pacer.committed())  # spaced while the budget is the bottleneck
            return

    def _wait_after(self, exc: HubError) -> bool:
        """After a failed commit: wait before the next try and return True, or False when it would come too
        late (after the deadline) or not help (a permanent error)."""
        if isinstance(exc, PermanentHubError):
            return False
        if isinstance(exc, RateLimitedError):
            refusal = self.pacer.refused(exc.retry_after)
            delay, why = refusal.delay_s, f"the repo's commit budget is spent; commits spaced by {refusal.gap_s:.0f} s"
        else:
            self._failures += 1
            backoff = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (self._failures - 1))
            delay, why = exc.retry_after if getattr(exc, "retry_after", None) is not None else backoff, "retrying"
        if time.monotonic() + delay > self.deadline:
            return False
        self.say(f"the Hub refused a commit ({exc}); {why}: next try in {delay:.0f} s")
        logger.warning("shared commit refused (%s); next try in %.0f s", exc, delay)
        time.sleep(delay)
        return True

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.say(f"the repo's commit budget was spent: waiting {seconds:.0f} s before the next commit")
            time.sleep(max(0.0, min(seconds, self.deadline - time.monotonic())))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
