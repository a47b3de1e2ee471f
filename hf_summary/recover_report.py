"""What `hf-summary recover` reports of a run, and the errors that stop it from starting."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hf_summary.exit_status import ExitStatus
from hf_summary.journal import RunSettings
from hf_summary.status import public_url


class RecoverError(Exception):
    """Recovery cannot start; the message says what to do."""


class LeaseBusyError(RecoverError):
    def __init__(self, pid: int | None, message: str | None = None):
        super().__init__(
            message
            or f"a live uploader (pid {pid}) is pushing this logdir; wait for it (run without --no-wait) "
            "or check it with `hf-summary status`"
        )
        self.pid = pid


@dataclass
class PlannedPush:
    """One file a (dry) run would push, and why."""

    path_in_repo: str
    size: int
    reason: str


@dataclass
class RecoverReport:
    logdir: Path
    repo_id: str = ""
    repo_type: str = "model"
    revision: str = "main"
    path_in_repo: str = ""
    endpoint: str | None = None
    moved_journal: Path | None = None
    found_on_disk: int = 0
    sealed_tails: int = 0
    pushed_segments: int = 0
    pushed_bytes: int = 0
    commits: list[str] = field(default_factory=list)
    repushed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    verified_segments: int = 0
    verified_bytes: int = 0
    still_open: int = 0
    live_writers: list[int] = field(default_factory=list)  # pids whose open segments were left to them
    not_seen_whole: int = 0  # sealed segments of a writer of another host not yet read whole from here
    waited_for: int | None = None
    would_push: list[PlannedPush] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    exit_status: ExitStatus = ExitStatus.OK
    elapsed_s: float = 0.0


def describe(report: RecoverReport, settings: RunSettings) -> None:
    """Fill in where `settings` push to."""
    report.repo_id = settings.repo_id
    report.repo_type = settings.repo_type
    report.revision = settings.revision
    report.path_in_repo = settings.path_in_repo
    report.endpoint = public_url(settings.endpoint)
