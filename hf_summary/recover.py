"""`hf-summary recover` and `status`: finish a crashed run's push and check that the Hub holds every segment."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hf_summary.hub import HubClient, HubError, git_blob_oid
from hf_summary.journal import Journal, RunSettings, SegmentRow, journal_path
from hf_summary.reconcile import open_or_rebuild, register_disk_segments, seal_abandoned
from hf_summary.uploader import Uploader, lease_owner_alive, process_alive

logger = logging.getLogger("hf_summary")

EXIT_OK, EXIT_INCOMPLETE, EXIT_PERMANENT, EXIT_BUSY = 0, 1, 2, 3


class RecoverError(Exception):
    """Recovery cannot start; the message says what to do."""


class LeaseBusyError(RecoverError):
    def __init__(self, pid: int):
        super().__init__(f"a live uploader (pid {pid}) is pushing this logdir; wait for it or run without --no-wait")
        self.pid = pid


@dataclass
class RecoverReport:
    logdir: Path
    repo_id: str = ""
    moved_journal: Path | None = None
    sealed_tails: int = 0
    found_on_disk: int = 0
    pushed_segments: int = 0
    pushed_bytes: int = 0
    repushed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    still_open: int = 0
    would_push: list[SegmentRow] = field(default_factory=list)
    error: str | None = None
    exit_status: int = EXIT_OK


def run_status(logdir: Path) -> dict:
    """Where a run stands: pending work, last commit and error, the uploader, the settings."""
    if not journal_path(logdir).exists():
        raise RecoverError(f"{logdir} has no hf-summary journal ({journal_path(logdir)} is missing)")
    with Journal(logdir, create=False) as journal:
        status = journal.status()
        settings = journal.load_settings()
        lease = journal.lease_owner()
    alive = lease is not None and lease_owner_alive(lease[0])
    status.update(
        uploader_alive=alive,
        uploader_pid=lease[0].pid if alive else None,
        uploader_heartbeat_age_s=(time.time() - lease[1]) if alive else None,
        repo_id=settings.repo_id if settings else None,
        repo_type=settings.repo_type if settings else None,
        revision=settings.revision if settings else None,
        path_in_repo=settings.path_in_repo if settings else None,
        endpoint=settings.endpoint if settings else None,
    )
    return status


def recover(
    logdir: Path,
    *,
    token: str | None = None,
    settings: RunSettings | None = None,
    wait: bool = True,
    dry_run: bool = False,
    timeout: float = 3600.0,
    say: Callable[[str], None] = lambda _: None,
) -> RecoverReport:
    """Seal what dead writers left open, push everything pending, then verify every committed segment on the
    Hub (size and content hash) and push again what is missing. Safe to run any number of times.

    ``settings`` are needed only when the journal is missing or unusable (it is then rebuilt from disk).
    """
    report = RecoverReport(logdir=logdir)
    if settings is None and not journal_path(logdir).exists():
        raise RecoverError(f"{logdir} has no journal; pass --repo-id (and --path-in-repo if not the default)")
    journal, report.moved_journal = open_or_rebuild(logdir, settings)
    with journal:
        settings = journal.load_settings() or settings
        if settings is None:
            raise RecoverError(f"the journal of {logdir} has no settings; pass --repo-id")
        journal.save_settings(settings)
        report.repo_id = settings.repo_id
        _wait_for_lease(journal, wait=wait, timeout=timeout, say=say)
        report.sealed_tails = len(seal_abandoned(journal, process_alive))
        report.found_on_disk = register_disk_segments(journal, settings)
        report.still_open = len(journal.open_segments())
        if dry_run:
            report.would_push = journal.pending_segments()
            return report
        client = HubClient(
            repo_id=settings.repo_id,
            repo_type=settings.repo_type,
            revision=settings.revision,
            endpoint=settings.endpoint,
            token=token,
        )
        deadline = time.monotonic() + timeout
        for _ in range(2):  # push, verify; push again what the Hub lacks, verify once more
            status = _drain(journal, settings, token, deadline, report, say)
            if status != EXIT_OK:
                report.exit_status = status
                return report
            try:
                absent = _absent_on_hub(journal, client)
            except HubError as exc:
                report.error, report.exit_status = f"could not list the repo: {exc}", EXIT_INCOMPLETE
                return report
            if not absent:
                report.missing = []
                return report
            report.missing = [row.path_in_repo for row in absent]
            report.repushed += report.missing
            say(f"{len(absent)} committed segment(s) are missing or differ on the Hub; pushing them again")
            journal.requeue_segments([row.id for row in absent], "missing or different on the Hub")
        report.error, report.exit_status = "the Hub still lacks segments after a second push", EXIT_INCOMPLETE
        return report


def _wait_for_lease(journal: Journal, *, wait: bool, timeout: float, say: Callable[[str], None]) -> None:
    """Recover drains only when no live uploader does (one drainer per journal)."""
    deadline = time.monotonic() + timeout
    announced = False
    while (lease := journal.lease_owner()) is not None and lease_owner_alive(lease[0]):
        if not wait:
            raise LeaseBusyError(lease[0].pid)
        if not announced:
            say(f"waiting for the live uploader (pid {lease[0].pid}) to finish ...")
            announced = True
        if time.monotonic() >= deadline:
            raise RecoverError(f"the uploader (pid {lease[0].pid}) still holds the lease after {timeout:.0f} s")
        time.sleep(0.5)


def _drain(journal, settings, token, deadline, report, say) -> int:
    pending = journal.pending_segments()
    if not pending:
        return EXIT_OK
    size = sum(row.size or 0 for row in pending)
    say(f"pushing {len(pending)} segment(s), {size} bytes ...")
    uploader = Uploader(
        journal, settings, token=token, parent=None, drain_timeout=max(1.0, deadline - time.monotonic())
    )
    status = uploader.run()
    left = journal.pending_segments()
    pushed = [row for row in pending if row.id not in {r.id for r in left}]
    report.pushed_segments += len(pushed)
    report.pushed_bytes += sum(row.size or 0 for row in pushed)
    if status != EXIT_OK or left:
        last_error = journal.status()["last_error"]
        report.error = last_error["message"] if last_error else f"{len(left)} segment(s) still pending"
        return EXIT_PERMANENT if status == EXIT_PERMANENT else EXIT_INCOMPLETE
    return EXIT_OK


def _absent_on_hub(journal: Journal, client: HubClient) -> list[SegmentRow]:
    """Committed segments the Hub does not hold at their path with the recorded size and content."""
    settings = journal.load_settings()
    remote = client.list_files(settings.path_in_repo)
    absent = []
    for row in journal.segments("committed"):
        found = remote.get(row.path_in_repo)
        if found is None or found.size != row.size:
            absent.append(row)
        elif found.sha256 is not None:
            if found.sha256 != row.sha256:
                absent.append(row)
        else:
            local = row.local_path(journal.logdir)
            if local.exists() and git_blob_oid(local) != found.git_oid:
                absent.append(row)
    return absent
