"""`hf-summary recover`: finish a crashed run's push and check that the Hub holds every segment."""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from hf_summary import compaction
from hf_summary.crosshost import ForeignPush, foreign_live_writers, plan_foreign_push, push_foreign
from hf_summary.exit_status import ExitStatus
from hf_summary.filesystems import filesystem_of
from hf_summary.hub import HubError, PermanentHubError, PushTarget, client_for, offline_mode
from hf_summary.journal import (
    Journal,
    JournalCorruptError,
    JournalVersionError,
    LeaseOwner,
    RunSettings,
    SegmentRow,
    journal_path,
)
from hf_summary.liveness import (
    WriterRecord,
    lease_owner_alive,
    process_alive,
    record_foreign_writers_lost,
    writer_records,
)
from hf_summary.reconcile import (
    open_or_rebuild,
    register_disk_segments,
    seal_abandoned,
)
from hf_summary.recover_plan import committed_verdict, plan_recovery
from hf_summary.recover_report import LeaseBusyError, RecoverError, RecoverReport, describe
from hf_summary.segments import file_sha256
from hf_summary.snapshot import SnapshotError, journal_snapshot
from hf_summary.uploader.drain import Uploader, this_lease_owner
from hf_summary.uploader.pusher import Pusher

logger = logging.getLogger("hf_summary")

LEASE_POLL_S = 0.5


def recover(
    logdir: Path,
    *,
    token: str | None = None,
    settings: RunSettings | None = None,
    wait: bool = True,
    dry_run: bool = False,
    timeout: float = 3600.0,
    take_over: bool = False,
    say: Callable[[str], None] = lambda _: None,
) -> RecoverReport:
    """Seal what dead writers left open, push everything pending, then verify every committed segment on the
    Hub (size and content) and push again what is missing. Safe to run any number of times: when the Hub
    holds everything, no commit is made.

    Holds the journal's lease throughout (waiting for a live uploader unless `wait` is false, then
    [`LeaseBusyError`][hf_summary.recover_report.LeaseBusyError]); an uploader on another host cannot be checked, so
    its lease is taken only with `take_over` (when that machine is known to be gone). `settings` are needed
    only when the journal is missing, or unusable and its settings unreadable (it is then moved aside and
    rebuilt from the segments on disk). `dry_run` lists what would be pushed and changes nothing (neither the
    journal nor the files nor the Hub).
    """
    started = time.monotonic()
    deadline = started + timeout
    report = RecoverReport(logdir=logdir)
    if not logdir.is_dir():
        raise RecoverError(f"{logdir} is not a directory")
    if not dry_run:
        require_online()
    try:
        if dry_run:
            plan_recovery(logdir, settings, token, report, say)
        else:
            _recover(logdir, settings, token, wait, take_over, deadline, report, say)
    finally:
        report.elapsed_s = time.monotonic() - started
    return report


def require_online() -> None:
    """Raise [`RecoverError`][hf_summary.recover_report.RecoverError] when huggingface_hub is in offline mode: every
    push would be refused."""
    if offline_mode():
        raise RecoverError(
            "HF_HUB_OFFLINE is set, so huggingface_hub refuses every request from here; run this where the Hub is "
            "reachable, without HF_HUB_OFFLINE"
        )


# -------------------------------------------------------------------------------- the real thing


def _recover(logdir, settings, token, wait, take_over, deadline, report: RecoverReport, say) -> None:
    with open_recovery(logdir, token=token, settings=settings, wait=wait, take_over=take_over, deadline=deadline,
                       report=report, say=say) as run:
        if isinstance(run, ForeignRun):
            run.push_alone()
        elif run is not None:
            run.prepare()
            run.finish()


@contextlib.contextmanager
def open_recovery(
    logdir: Path,
    *,
    report: RecoverReport,
    token: str | None = None,
    settings: RunSettings | None = None,
    wait: bool = False,
    take_over: bool = False,
    deadline: float,
    say: Callable[[str], None] = lambda _: None,
) -> Iterator[Recovery | ForeignRun | None]:
    """A run ready to recover in steps: a `Recovery` (its journal open, its lease held until the
    block ends), a `ForeignRun` (a live writer of another host writes it), or `None` when `report`
    already says all (a journal still being created). `recover` takes the steps one run at a time; `sync`
    pushes many runs' segments in shared commits between them. Raises `RecoverError` (and
    `LeaseBusyError`) as `recover` does."""
    existed = journal_path(logdir).exists()
    if existed and settings is None and filesystem_of(logdir).shared:
        foreign = _foreign_run(logdir, token, take_over, report, say)
        if foreign is not False:
            yield foreign
            return
    if settings is None and not existed:
        raise RecoverError(f"{logdir} has no journal; pass --repo-id (and --path-in-repo if not the default)")
    try:
        journal, report.moved_journal = open_or_rebuild(logdir, settings, check_integrity=True)
    except (JournalCorruptError, JournalVersionError) as exc:
        raise RecoverError(
            f"the journal of {logdir} is unusable ({exc}) and its settings cannot be read back; pass --repo-id "
            "(and --path-in-repo if not the default) to rebuild it from the segments on disk"
        ) from exc
    with journal:
        settings = _settle_settings(journal, settings, existed, report, say)
        pusher = Pusher.open(journal, settings, token)
        owner = this_lease_owner()
        _take_lease(journal, owner, wait=wait, take_over=take_over, deadline=deadline, report=report, say=say)
        try:
            yield Recovery(pusher, owner, deadline, take_over, report, say)
        finally:
            journal.release_lease(owner)


def _settle_settings(journal: Journal, settings: RunSettings | None, existed: bool, report: RecoverReport,
                     say) -> RunSettings:
    """The run's settings (the journal's, else `settings`, then saved), after saying how the journal came."""
    if report.moved_journal is not None:
        report.found_on_disk = len(journal.pending_segments())
        say(f"the journal was unusable: moved it to {report.moved_journal} and rebuilt it from "
            f"{report.found_on_disk} segment(s) on disk")
    elif not existed:
        report.found_on_disk = len(journal.pending_segments())
        say(f"no journal: created one from {report.found_on_disk} segment(s) on disk")
    stored = journal.load_settings()
    if stored is None:
        if settings is None:
            raise RecoverError(f"the journal of {journal.logdir} has no settings; pass --repo-id")
        journal.save_settings(settings)
    elif settings is not None and stored.destination != settings.destination:
        report.notes.append("the journal's settings were used; --repo-id and friends were ignored")
    settings = stored or settings
    describe(report, settings)
    return settings


@dataclass
class ForeignRun:
    """A run on a shared filesystem whose writer lives on another host: the sealed segments this host reads whole
    and the Hub lacks (`hf_summary.crosshost`), to push without writing anything that host writes (its
    journal records nothing of the push)."""

    settings: RunSettings
    client: PushTarget
    plan: ForeignPush
    live: list[WriterRecord]
    report: RecoverReport
    say: Callable[[str], None]

    def push_alone(self) -> None:
        """Push the plan in a commit of its own."""
        try:
            push_foreign(self.plan, self.settings, self.client)
        except HubError as exc:
            self.failed(exc)
            return
        self.pushed([self.plan.commit] if self.plan.commit else [])

    def pushed(self, commits: list[str]) -> None:
        """The plan's files are on the Hub, carried by `commits`: fill the report (the run stays incomplete)."""
        plan, report = self.plan, self.report
        report.pushed_segments, report.pushed_bytes = len(plan.files), plan.bytes
        report.commits = commits
        report.verified_segments = plan.on_hub + len(plan.files)
        report.still_open, report.not_seen_whole = plan.open, plan.unseen
        report.live_writers = sorted({record.pid for record in self.live})
        hosts = ", ".join(sorted({record.host for record in self.live}))
        self.say(f"written on host(s) {hosts}: pushed {len(plan.files)} sealed segment(s); its journal left as it is")
        report.error = (f"writer(s) {report.live_writers} on host(s) {hosts} still write this run "
                        f"({plan.open} open segment(s)"
                        + (f", {plan.unseen} sealed one(s) not yet seen whole from here" if plan.unseen else "")
                        + "); sync again later, or once they have closed")
        report.exit_status = ExitStatus.INCOMPLETE

    def failed(self, exc: HubError) -> None:
        _hub_failed(self.report, exc)


def _hub_failed(report: RecoverReport, exc: HubError) -> None:
    report.error = f"the Hub failed: {exc}"
    report.exit_status = ExitStatus.FAILED if isinstance(exc, PermanentHubError) else ExitStatus.INCOMPLETE


def _foreign_run(logdir: Path, token, take_over: bool, report: RecoverReport, say) -> ForeignRun | None | bool:
    """A run on a shared filesystem whose writer lives on another host, with what to push of it; `None` when
    `report` says all (the Hub failed, or a journal still without its settings, as a writer creating it leaves
    it, unless `take_over`); False when no writer of another host lives (the run is this host's to recover)."""
    try:
        with journal_snapshot(logdir) as snapshot:
            settings = snapshot.load_settings()
            if settings is None and not take_over:
                return _still_starting(logdir, report)
            if not take_over and not snapshot.segments() and not writer_records(snapshot):
                return _still_starting(logdir, report)  # a writer records itself first, but it may not have yet
            live = foreign_live_writers(snapshot, logdir, others_gone=take_over)
            if not live:
                return False
            lease = snapshot.lease_owner()
            if lease is not None and lease_owner_alive(lease[0]):
                raise LeaseBusyError(lease[0].pid, f"an uploader on host {lease[0].host!r} (pid {lease[0].pid}) "
                                     "pushes this logdir for its live writer")
            describe(report, settings)
            client = client_for(settings, token)
            plan = plan_foreign_push(snapshot, logdir, settings, client)
    except FileNotFoundError:  # not even initialised yet
        return False if take_over else _still_starting(logdir, report)
    except SnapshotError as exc:
        raise RecoverError(f"{exc}; try again in a moment") from exc
    except HubError as exc:
        _hub_failed(report, exc)
        return None
    return ForeignRun(settings, client, plan, live, report, say)


def _still_starting(logdir: Path, report: RecoverReport) -> None:
    report.error = (f"the journal of {logdir} is being created (no settings, or no writer and no segment yet); if "
                    f"its writer died doing so, `hf-summary recover {logdir} --take-over` (or --repo-id) finishes it")
    report.exit_status = ExitStatus.INCOMPLETE


def _take_lease(journal: Journal, owner: LeaseOwner, *, wait: bool, take_over: bool, deadline: float, report,
                say) -> None:
    """One drainer per journal: take the lease, waiting while a live uploader holds it."""
    here = owner.host

    def holder_alive(owner) -> bool:
        if take_over and owner.host != here:
            say(f"taking over the lease of pid {owner.pid} on host {owner.host!r} (--take-over)")
            return False
        return lease_owner_alive(owner)

    while not journal.acquire_lease(owner, holder_alive):
        lease = journal.lease_owner()
        pid = lease[0].pid if lease else None
        if lease is not None and lease[0].host != here:
            age = max(0.0, time.time() - lease[1])
            raise LeaseBusyError(
                pid,
                f"an uploader on host {lease[0].host!r} (pid {pid}, last heartbeat {age:.0f} s ago) holds the lease "
                "of this logdir; from here it cannot be told whether it is alive. Run recover on that host, or "
                "with --take-over once that machine is known to be gone",
            )
        if not wait:
            raise LeaseBusyError(pid)
        if report.waited_for != pid:
            say(f"a live uploader (pid {pid}) is pushing this logdir; waiting for it to finish ...")
            report.waited_for = pid
        if time.monotonic() >= deadline:
            raise LeaseBusyError(pid, f"the uploader (pid {pid}) still holds the lease; gave up waiting (--timeout)")
        time.sleep(LEASE_POLL_S)
    if report.waited_for is not None:
        say("the uploader is done; taking over")


@dataclass
class Recovery:
    """A run of this host's with its journal's lease held, recovered in two steps: `prepare` (finish
    interrupted merges, seal what dead writers left open, register what the journal did not know), then
    `finish` (push what is pending, verify every committed segment on the Hub, push again what it lacks).
    `sync` pushes the pending segments of many runs in shared commits between the two steps."""

    pusher: Pusher
    owner: LeaseOwner
    deadline: float
    take_over: bool
    report: RecoverReport
    say: Callable[[str], None]
    first_history: int = 0  # the journal's history before this recovery: its commits are those after

    @property
    def journal(self) -> Journal:
        return self.pusher.journal

    def prepare(self) -> None:
        """Get every segment that can be pushed sealed and known to the journal; on a failure of the Hub, the
        report says so (`finish` then does nothing)."""
        journal, report, say = self.journal, self.report, self.say
        self.first_history = max((e["id"] for e in journal.history(limit=1)), default=0)
        try:
            if journal.compactions("planned") or journal.compactions("committed"):
                compaction.settle(journal, self.pusher.client, abandon=True)
                say("finished the merge(s) of committed segments an interrupted push left")
        except HubError as exc:
            report.error, report.exit_status = f"the Hub failed: {exc}", ExitStatus.INCOMPLETE
            return
        if self.take_over and (lost := record_foreign_writers_lost(journal)):
            say(f"recorded writer(s) {[record.pid for record in lost]} of host(s) "
                f"{sorted({record.host for record in lost})} as lost (--take-over)")
        sealed = seal_abandoned(journal, process_alive, others_gone=self.take_over)
        report.sealed_tails = len(sealed)
        if sealed:
            say(f"sealed {len(sealed)} segment(s) left open by a dead writer (torn records cut)")
        found = register_disk_segments(journal, self.pusher.settings)
        report.found_on_disk += found
        if found:
            say(f"found {found} segment(s) on disk that the journal did not know")
        report.still_open = len(journal.open_segments())
        report.lost += [row.path_in_repo for row in journal.pending_segments()
                        if not row.local_path(journal.logdir).is_file()]

    def finish(self) -> None:
        """Push what is still pending, verify, push again what the Hub lacks, and conclude the report."""
        if self.report.error is not None:
            return
        try:
            self._finish()
        except HubError as exc:
            self.report.error, self.report.exit_status = f"the Hub failed: {exc}", ExitStatus.INCOMPLETE

    def _finish(self) -> None:
        journal, report, say, pusher = self.journal, self.report, self.say, self.pusher
        for attempt in range(2):  # push, verify; push again what the Hub lacks, verify once more
            status = _drain(pusher, self.owner, self.deadline, report, say)
            report.commits = [e["oid"] for e in reversed(journal.history("commit", limit=1000))
                              if e["id"] > self.first_history]
            if status != ExitStatus.OK:
                report.exit_status = status
                return
            committed = journal.segments("committed")
            say(f"checking that the Hub holds {len(committed)} committed segment(s) ...")
            absent, unrecoverable = _check_hub(journal, pusher.settings, pusher.client, committed)
            report.lost += [row.path_in_repo for row in unrecoverable]
            if not absent:
                bad = {row.id for row in unrecoverable}
                good = [row for row in committed if row.id not in bad]
                report.verified_segments = len(good)
                report.verified_bytes = sum(row.size or 0 for row in good)
                report.missing = [row.path_in_repo for row in unrecoverable]
                break
            report.missing = [row.path_in_repo for row in absent]
            if attempt == 1:
                report.error, report.exit_status = (
                    f"the Hub still lacks {len(absent)} segment(s) after pushing them again", ExitStatus.INCOMPLETE
                )
                return
            say(f"{len(absent)} committed segment(s) are missing or different on the Hub; pushing them again")
            report.repushed += report.missing
            journal.requeue_segments([row.id for row in absent], "missing or different on the Hub")
            pusher.may_replace.update(row.path_in_repo for row in absent)  # our own files, damaged on the Hub
            report.lost += [row.path_in_repo for row in journal.pending_segments()
                            if not row.local_path(journal.logdir).is_file()]
        _conclude(journal, report)


def _conclude(journal: Journal, report: RecoverReport) -> None:
    """After the Hub was verified: incomplete if segments are lost, or still being written by live writers."""
    if report.lost:
        report.error, report.exit_status = (
            f"{len(report.lost)} segment(s) are neither on the Hub nor on disk any more: "
            + ", ".join(report.lost[:5]) + (" ..." if len(report.lost) > 5 else ""),
            ExitStatus.INCOMPLETE,
        )
    elif (still_open := journal.open_segments()) or (late := journal.pending_segments()):
        report.still_open = len(still_open)
        writers = report.live_writers = sorted({row.writer_pid for row in still_open or late})
        report.error, report.exit_status = (
            f"{len(still_open)} segment(s) are still being written by live writer(s) {writers}"
            + ("" if still_open else f", which sealed {len(late)} more since the push")
            + "; they are pushed at its next tick or when it closes (or run recover again once it has ended)",
            ExitStatus.INCOMPLETE,
        )


def _drain(pusher: Pusher, owner: LeaseOwner, deadline: float, report: RecoverReport, say) -> ExitStatus:
    """Push every pending segment with the lease already held (by `owner`); retry until `deadline`."""
    journal = pusher.journal
    pending = journal.pending_segments()
    if not pending:
        return ExitStatus.OK
    say(f"pushing {len(pending)} segment(s), {sum(row.size or 0 for row in pending)} bytes ...")
    before = _pushed_segments(journal)
    uploader = Uploader(pusher, owner=owner, parent=None, drain_timeout=max(1.0, deadline - time.monotonic()))
    status = uploader.drain()
    # A live writer may seal more meanwhile: the drain pushes them too, or leaves them to the next run.
    left = {row.id for row in journal.pending_segments()} & {row.id for row in pending}
    pushed = [row for row in _pushed_segments(journal).values() if row.id not in before]
    report.pushed_segments += len(pushed)
    report.pushed_bytes += sum(row.size or 0 for row in pushed)
    if status != ExitStatus.OK or left:
        last_error = journal.status()["last_error"]
        report.error = (
            f"{len(left)} segment(s) still pending; last error: "
            + (last_error["message"] if last_error else "none (the time limit passed)")
        )
        return ExitStatus.FAILED if status == ExitStatus.FAILED else ExitStatus.INCOMPLETE
    return ExitStatus.OK


def _pushed_segments(journal: Journal) -> dict[int, SegmentRow]:
    """The sealed segments that are on the Hub, as files of their own or merged by compaction since (merged
    files are not counted: they carry no new event)."""
    return {
        row.id: row for state in ("committed", "replaced") for row in journal.segments(state) if row.level == 0
    }


def _check_hub(
    journal: Journal, settings: RunSettings, client: PushTarget, committed: list[SegmentRow]
) -> tuple[list[SegmentRow], list[SegmentRow]]:
    """Committed segments the Hub does not hold at their path with the recorded size and content: those that
    can be pushed again (their file on disk still has the recorded content), and those that cannot."""
    if not committed:  # nothing to verify (and the repo may not exist yet: nothing was ever pushed)
        return [], []
    remote = client.list_files(settings.path_in_repo)
    absent, unrecoverable, to_download = [], [], []
    for row in committed:
        verdict, local_ok = committed_verdict(row, journal.logdir, remote)
        if verdict is None:
            to_download.append(row)
        elif not verdict:
            (absent if local_ok else unrecoverable).append(row)
    if to_download:  # the local copy is gone: only the Hub's bytes can tell
        with tempfile.TemporaryDirectory(prefix="hf-summary-verify-") as tmp:
            client.download(settings.path_in_repo, Path(tmp))
            for row in to_download:
                copy = Path(tmp, row.path_in_repo)
                if not copy.is_file() or file_sha256(copy) != row.sha256:
                    unrecoverable.append(row)
    return absent, unrecoverable




