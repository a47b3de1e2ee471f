"""`hf-summary sync PATH...`: push every run found under some directories (offline runs, typically), each to its
own recorded destination, with `recover`'s push and verification.

Runs that push to the same target (endpoint, repo type, repo and branch: a sweep's runs in one repo) share their
commits: one commit per batch of runs (`hf_summary.batchpush`), so that syncing 200 runs into one repo makes
a few commits, not 200, and stays within the repo's commit budget. Runs are taken `RUNS_AT_ONCE` at a time
(their journals open and leases held until their commits are made and verified).

A run whose writer is still alive (offline on a compute node, say, with the logdir on a shared filesystem) gets
what is sealed pushed; its open segments stay with their writer (see `hf_summary.liveness` for how a
writer on another host is judged alive) and a later sync pushes them. A run whose live uploader holds the
journal's lease is left to it. Running sync again is safe: what the Hub holds is never committed again.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from hf_summary.batchpush import MAX_FILES_PER_COMMIT, ForeignShare, JournalShare, Share, push_together
from hf_summary.exit_status import ExitStatus
from hf_summary.hub import client_for
from hf_summary.journal import JournalError
from hf_summary.recover import (
    ForeignRun,
    LeaseBusyError,
    RecoverError,
    RecoverReport,
    Recovery,
    open_recovery,
    require_online,
)
from hf_summary.runs import find_runs

OUTCOMES = ("ok", "writing", "incomplete", "busy", "failed")
RUNS_AT_ONCE = 128


@dataclass
class RunSync:
    """How one run fared: `outcome` is one of `OUTCOMES`."""

    logdir: Path
    outcome: str
    report: RecoverReport | None = None
    message: str = ""


@dataclass
class SyncResult:
    runs: list[RunSync] = field(default_factory=list)

    @property
    def exit_status(self) -> ExitStatus:
        """0 when the Hub holds every run; 2 when a run failed and retrying alone will not help; else 1."""
        if self.count("failed"):
            return ExitStatus.FAILED
        return ExitStatus.OK if all(run.outcome == "ok" for run in self.runs) else ExitStatus.INCOMPLETE

    def count(self, outcome: str) -> int:
        return sum(1 for run in self.runs if run.outcome == outcome)

    @property
    def pushed_segments(self) -> int:
        return sum(run.report.pushed_segments for run in self.runs if run.report)

    @property
    def pushed_bytes(self) -> int:
        return sum(run.report.pushed_bytes for run in self.runs if run.report)

    @property
    def commits(self) -> int:
        """The commits made (one shared by several runs counts once)."""
        return len({oid for run in self.runs if run.report for oid in run.report.commits})


def sync(
    paths: Iterable[Path],
    *,
    token: str | None = None,
    timeout: float = 3600.0,
    take_over: bool = False,
    files_per_commit: int = MAX_FILES_PER_COMMIT,
    say: Callable[[str], None] = lambda _: None,
) -> SyncResult:
    """Push every run at or under `paths`, within `timeout` seconds in all; runs to the same target in shared
    commits of at most `files_per_commit` files.

    Raises [`RecoverError`][hf_summary.recover_report.RecoverError] in offline mode, `NotADirectoryError` for a path
    that is not a directory and `NoRunsError` when no run is found. `take_over` is `recover`'s: take the lease
    of an uploader on another host that is known to be gone.
    """
    require_online()
    runs = find_runs(paths)
    deadline = time.monotonic() + timeout
    result = SyncResult()
    for start in range(0, len(runs), RUNS_AT_ONCE):
        result.runs += _sync_some(runs[start:start + RUNS_AT_ONCE], token=token, deadline=deadline,
                                  take_over=take_over, files_per_commit=files_per_commit, say=say)
    return result


def _sync_some(logdirs: list[Path], *, token, deadline: float, take_over: bool, files_per_commit: int,
               say) -> list[RunSync]:
    """Open every run of `logdirs` (leases held to the end), push them by target in shared commits, conclude."""
    synced: list[tuple[RunSync, Share | None]] = []
    targets: dict[tuple, list[Share]] = {}
    with contextlib.ExitStack() as stack:
        for logdir in logdirs:
            say(f"{logdir}: syncing")
            report = RecoverReport(logdir=logdir)
            try:
                run = stack.enter_context(open_recovery(
                    logdir, report=report, token=token, take_over=take_over, deadline=deadline,
                    say=lambda line, logdir=logdir: say(f"{logdir}: {line}")))
                share = _share(run)
            except LeaseBusyError as exc:
                synced.append((RunSync(logdir, "busy", message=str(exc)), None))
                continue
            except (RecoverError, JournalError) as exc:
                synced.append((RunSync(logdir, "failed", message=str(exc)), None))
                continue
            synced.append((RunSync(logdir, "", report), share))
            if share is not None:
                settings = share.settings
                target = (settings.endpoint, settings.repo_type, settings.repo_id, settings.revision)
                targets.setdefault(target, []).append(share)
        for shares in targets.values():
            push_together(shares, client_for(shares[0].settings, token), deadline=deadline,
                          max_files=files_per_commit, say=say)
        for run, share in synced:
            if run.report is not None:
                _conclude(run, share)
    return [run for run, _ in synced]


def _share(run: Recovery | ForeignRun | None) -> Share | None:
    if isinstance(run, ForeignRun):
        return ForeignShare(run)
    if run is None:
        return None
    run.prepare()
    return JournalShare(run)


def _conclude(run: RunSync, share: Share | None) -> None:
    if share is not None:
        try:
            share.conclude()
        except JournalError as exc:
            run.outcome, run.message = "failed", str(exc)
            return
    run.outcome, run.message = _outcome(run.report), run.report.error or ""


def _outcome(report: RecoverReport) -> str:
    if report.exit_status == ExitStatus.OK:
        return "ok"
    if report.exit_status == ExitStatus.INCOMPLETE and report.live_writers:
        return "writing"
    return "incomplete" if report.exit_status == ExitStatus.INCOMPLETE else "failed"
