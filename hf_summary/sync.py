"""`hf-summary sync PATH...`: push every run found under some directories (offline runs, typically), each to its
own recorded destination, with `recover`'s push and verification.

A run whose writer is still alive (offline on a compute node, say, with the logdir on a shared filesystem) gets
what is sealed pushed; its open segments stay with their writer (see `hf_summary.liveness` for how a
writer on another host is judged alive) and a later sync pushes them. A run whose live uploader holds the
journal's lease is left to it. Running sync again is safe: what the Hub holds is never committed again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from hf_summary.exit_status import ExitStatus
from hf_summary.journal import JournalError
from hf_summary.recover import (
    LeaseBusyError,
    RecoverError,
    RecoverReport,
    recover,
    require_online,
)
from hf_summary.runs import find_runs

OUTCOMES = ("ok", "writing", "incomplete", "busy", "failed")


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
        return sum(len(run.report.commits) for run in self.runs if run.report)


def sync(
    paths: Iterable[Path],
    *,
    token: str | None = None,
    timeout: float = 3600.0,
    take_over: bool = False,
    say: Callable[[str], None] = lambda _: None,
) -> SyncResult:
    """Push every run at or under `paths`, one after the other, within `timeout` seconds in all.

    Raises [`RecoverError`][hf_summary.recover.RecoverError] in offline mode, `NotADirectoryError` for a path
    that is not a directory and `NoRunsError` when no run is found. `take_over` is `recover`'s: take the lease
    of an uploader on another host that is known to be gone.
    """
    require_online()
    runs = find_runs(paths)
    deadline = time.monotonic() + timeout
    result = SyncResult()
    for logdir in runs:
        say(f"{logdir}: syncing")
        try:
            report = recover(
                logdir,
                token=token,
                wait=False,
                timeout=max(1.0, deadline - time.monotonic()),
                take_over=take_over,
                say=lambda line, logdir=logdir: say(f"{logdir}: {line}"),
            )
        except LeaseBusyError as exc:
            result.runs.append(RunSync(logdir, "busy", message=str(exc)))
        except (RecoverError, JournalError) as exc:
            result.runs.append(RunSync(logdir, "failed", message=str(exc)))
        else:
            result.runs.append(RunSync(logdir, _outcome(report), report, report.error or ""))
    return result


def _outcome(report: RecoverReport) -> str:
    if report.exit_status == ExitStatus.OK:
        return "ok"
    if report.exit_status == ExitStatus.INCOMPLETE and report.live_writers:
        return "writing"
    return "incomplete" if report.exit_status == ExitStatus.INCOMPLETE else "failed"
