"""`hf-summary recover`: finish a crashed run's push and check that the Hub holds every segment."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hf_summary import compaction
from hf_summary.crosshost import foreign_live_writers, push_foreign
from hf_summary.exit_status import ExitStatus
from hf_summary.filesystems import filesystem_of
from hf_summary.hub import HubError, PermanentHubError, PushTarget, RemoteFile, client_for, offline_mode
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
    host_aware,
    lease_owner_alive,
    process_alive,
    record_foreign_writers_lost,
    writer_records,
)
from hf_summary.patterns import path_matches
from hf_summary.reconcile import (
    iter_disk_segments,
    logdir_relative,
    open_or_rebuild,
    register_disk_segments,
    repo_path,
    salvage_settings,
    seal_abandoned,
)
from hf_summary.segments import file_digests, file_sha256, last_complete_offset
from hf_summary.snapshot import SnapshotError, journal_snapshot
from hf_summary.status import public_url
from hf_summary.uploader.drain import Uploader, this_lease_owner
from hf_summary.uploader.pusher import Pusher

logger = logging.getLogger("hf_summary")

LEASE_POLL_S = 0.5


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
    [`LeaseBusyError`][hf_summary.recover.LeaseBusyError]); an uploader on another host cannot be checked, so
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
            _plan(logdir, settings, token, report, say)
        else:
            _recover(logdir, settings, token, wait, take_over, deadline, report, say)
    finally:
        report.elapsed_s = time.monotonic() - started
    return report


def require_online() -> None:
    """Raise [`RecoverError`][hf_summary.recover.RecoverError] when huggingface_hub is in offline mode: every
    push would be refused."""
    if offline_mode():
        raise RecoverError(
            "HF_HUB_OFFLINE is set, so huggingface_hub refuses every request from here; run this where the Hub is "
            "reachable, without HF_HUB_OFFLINE"
        )


# -------------------------------------------------------------------------------- the real thing


def _recover(logdir, settings, token, wait, take_over, deadline, report: RecoverReport, say) -> None:
    existed = journal_path(logdir).exists()
    if (existed and settings is None and filesystem_of(logdir).shared
            and _push_for_foreign_writer(logdir, token, take_over, report, say)):
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
                raise RecoverError(f"the journal of {logdir} has no settings; pass --repo-id")
            journal.save_settings(settings)
        elif settings is not None and stored.destination != settings.destination:
            report.notes.append("the journal's settings were used; --repo-id and friends were ignored")
        settings = stored or settings
        _describe(report, settings)
        pusher = Pusher.open(journal, settings, token)
        owner = this_lease_owner()
        _take_lease(journal, owner, wait=wait, take_over=take_over, deadline=deadline, report=report, say=say)
        try:
            _recover_locked(pusher, owner, deadline, take_over, report, say)
        except HubError as exc:
            report.error, report.exit_status = f"the Hub failed: {exc}", ExitStatus.INCOMPLETE
        finally:
            journal.release_lease(owner)


def _push_for_foreign_writer(logdir: Path, token, take_over: bool, report: RecoverReport, say) -> bool:
    """A run on a shared filesystem whose writer lives on another host: push what it sealed and this host reads
    whole, writing nothing the writer's host writes (`hf_summary.crosshost`); a journal still without its
    settings (a writer creating it) is left alone too, unless `take_over`. Returns False when no writer of
    another host lives (then the run is this host's to recover)."""
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
            _describe(report, settings)
            plan = push_foreign(snapshot, logdir, settings, client_for(settings, token))
    except FileNotFoundError:  # not even initialised yet
        if take_over:
            return False
        return _still_starting(logdir, report)
    except SnapshotError as exc:
        raise RecoverError(f"{exc}; try again in a moment") from exc
    except HubError as exc:
        report.error = f"the Hub failed: {exc}"
        report.exit_status = ExitStatus.FAILED if isinstance(exc, PermanentHubError) else ExitStatus.INCOMPLETE
        return True
    report.pushed_segments, report.pushed_bytes = len(plan.files), plan.bytes
    report.commits = [plan.commit] if plan.commit else []
    report.verified_segments = plan.on_hub + len(plan.files)
    report.still_open, report.not_seen_whole = plan.open, plan.unseen
    report.live_writers = sorted({record.pid for record in live})
    hosts = ", ".join(sorted({record.host for record in live}))
    say(f"written on host(s) {hosts}: pushed {len(plan.files)} sealed segment(s); its journal left as it is")
    report.error = (f"writer(s) {report.live_writers} on host(s) {hosts} still write this run "
                    f"({plan.open} open segment(s)"
                    + (f", {plan.unseen} sealed one(s) not yet seen whole from here" if plan.unseen else "")
                    + "); sync again later, or once they have closed")
    report.exit_status = ExitStatus.INCOMPLETE
    return True


def _still_starting(logdir: Path, report: RecoverReport) -> bool:
    report.error = (f"the journal of {logdir} is being created (no settings, or no writer and no segment yet); if "
                    f"its writer died doing so, `hf-summary recover {logdir} --take-over` (or --repo-id) finishes it")
    report.exit_status = ExitStatus.INCOMPLETE
    return True


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


def _recover_locked(pusher: Pusher, owner: LeaseOwner, deadline, take_over: bool, report, say) -> None:
    journal, settings, logdir = pusher.journal, pusher.settings, pusher.journal.logdir
    if journal.compactions("planned") or journal.compactions("committed"):
        compaction.settle(journal, pusher.client, abandon=True)
        say("finished the merge(s) of committed segments an interrupted push left")
    if take_over and (lost := record_foreign_writers_lost(journal)):
        say(f"recorded writer(s) {[record.pid for record in lost]} of host(s) "
            f"{sorted({record.host for record in lost})} as lost (--take-over)")
    sealed = seal_abandoned(journal, process_alive, others_gone=take_over)
    report.sealed_tails = len(sealed)
    if sealed:
        say(f"sealed {len(sealed)} segment(s) left open by a dead writer (torn records cut)")
    found = register_disk_segments(journal, settings)
    report.found_on_disk += found
    if found:
        say(f"found {found} segment(s) on disk that the journal did not know")
    report.still_open = len(journal.open_segments())
    first_history = max((e["id"] for e in journal.history(limit=1)), default=0)
    for attempt in range(2):  # push, verify; push again what the Hub lacks, verify once more
        report.lost += [
            row.path_in_repo for row in journal.pending_segments() if not row.local_path(logdir).is_file()
        ]
        status = _drain(pusher, owner, deadline, report, say)
        report.commits = [
            e["oid"] for e in reversed(journal.history("commit", limit=1000)) if e["id"] > first_history
        ]
        if status != ExitStatus.OK:
            report.exit_status = status
            return
        committed = journal.segments("committed")
        say(f"checking that the Hub holds {len(committed)} committed segment(s) ...")
        absent, unrecoverable = _check_hub(journal, settings, pusher.client, committed)
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
        verdict, local_ok = _committed_verdict(row, journal.logdir, remote)
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


def _committed_verdict(row: SegmentRow, logdir: Path, remote: dict[str, RemoteFile]) -> tuple[bool | None, bool]:
    """For a committed segment: whether the Hub holds it (`None`: only downloading it can tell), and whether
    its file on disk still has the recorded content, so it can be pushed again (read only when that matters:
    not when the Hub's LFS sha256 already says it holds it)."""
    found = remote.get(row.path_in_repo)
    if found is not None and found.sha256 is not None and found.holds(row.size, row.sha256, None):
        return True, True  # no need to read the local copy
    path = row.local_path(logdir)
    local = file_digests(path) if path.is_file() else None
    local_ok = local is not None and local[0] == row.size and local[1] == row.sha256
    verdict = False if found is None else found.holds(
        row.size, row.sha256, local[2] if local_ok else None, path if local_ok else None
    )
    return verdict, local_ok


# -------------------------------------------------------------------------------- dry run


def _plan(logdir: Path, settings: RunSettings | None, token, report: RecoverReport, say) -> None:
    """What a real run would push, without changing anything: no journal is created, moved or written, no
    file truncated, nothing pushed. The Hub is only read (to tell what it lacks), and only if reachable."""
    journal, unusable = _open_to_plan(logdir, report)
    if unusable:
        settings = settings or salvage_settings(journal_path(logdir))
    rows: list[SegmentRow] = []
    on_disk, known = iter_disk_segments(logdir), set()
    writer_alive = process_alive
    if journal is not None:
        with journal:
            settings = journal.load_settings() or settings
            live = [row for state in ("open", "sealed", "committed") for row in journal.segments(state)]
            rows = sorted(live, key=lambda row: row.id)  # replaced rows (compaction history) are not read
            known = journal.known_files(on_disk)
            lease = journal.lease_owner()
            writer_alive = host_aware(journal, process_alive)
        if lease is not None and lease_owner_alive(lease[0]):
            report.notes.append(f"a live uploader (pid {lease[0].pid}) holds the lease; recover would wait for it")
    if settings is None:
        raise RecoverError(f"the settings of {logdir} are unknown; pass --repo-id (and --path-in-repo if not the "
                           "default)")
    _describe(report, settings)
    plan = _plan_journal_rows(logdir, rows, writer_alive, report) + [
        (PlannedPush(repo_path(settings, run, name), end, "on disk, not in the journal"), digests)
        for run, name, end, digests in _unknown_on_disk(logdir, on_disk, known, settings)
    ]
    _plan_against_hub(client_for(settings, token), settings, plan, [r for r in rows if r.state == "committed"], report)


def _open_to_plan(logdir: Path, report: RecoverReport) -> tuple[Journal | None, bool]:
    """The journal, if it is there and sound (read-only use); else `None`, with a note saying why. And
    whether it is there but unusable (a real run would move it aside)."""
    journal, problem = None, None
    try:
        journal = Journal(logdir, create=False)
    except FileNotFoundError:
        report.notes.append("no journal: one would be created and the segments on disk registered")
    except (JournalCorruptError, JournalVersionError) as exc:
        problem = str(exc)
    if journal is not None:
        try:
            problems = journal.integrity_check()
        except JournalCorruptError as exc:
            problems = str(exc)
        if problems != "ok":
            journal.close()
            journal, problem = None, problems.splitlines()[0]
    if problem is not None:
        report.notes.append(f"the journal is unusable ({problem}); it would be moved aside and rebuilt from disk")
    return journal, problem is not None


_Plan = list[tuple[PlannedPush, tuple[int, str, str] | None]]  # with the digests of a file not in the journal


def _plan_journal_rows(logdir: Path, rows: list[SegmentRow], writer_alive, report: RecoverReport) -> _Plan:
    """The journal's sealed segments, and the open ones of dead writers (their tails sealed first)."""
    plan: _Plan = []
    for row in rows:
        path = row.local_path(logdir)
        if row.state == "sealed":
            plan.append((PlannedPush(row.path_in_repo, row.size or 0, "pending"), None))
        elif row.state == "open" and row.writer_pid is not None and writer_alive(
            row.writer_pid, row.writer_create_time
        ):
            report.still_open += 1
        elif row.state == "open" and path.is_file() and (end := last_complete_offset(path)):
            torn = " (a torn record would be cut)" if end != path.stat().st_size else ""
            plan.append((PlannedPush(row.path_in_repo, end, "left open by a dead writer" + torn), None))
    return plan


def _unknown_on_disk(logdir: Path, on_disk, known, settings: RunSettings):
    """`(run, name, complete size, digests)` of the segments on disk that the journal does not know."""
    for run, name in on_disk:
        relative = logdir_relative(run, name)
        if (run, name) in known or not path_matches(relative, settings.allow_patterns, settings.ignore_patterns):
            continue
        end = last_complete_offset(logdir / relative)
        if end:
            yield run, name, end, file_digests(logdir / relative, end)


def _plan_against_hub(client: PushTarget, settings: RunSettings, plan: _Plan, committed: list[SegmentRow],
                      report: RecoverReport) -> None:
    """Keep of `plan` what the Hub lacks, and add the committed segments it lacks (or that are lost)."""
    try:
        remote = client.list_files(settings.path_in_repo) if (committed or plan) else {}
    except HubError as exc:
        report.notes.append(f"could not read the repo to tell what it lacks ({exc})")
        report.would_push = [planned for planned, _ in plan]
        return
    for planned, digests in plan:
        found = remote.get(planned.path_in_repo)
        if digests is None or found is None or not found.holds(*digests):
            report.would_push.append(planned)
    for row in committed:
        verdict, local_ok = _committed_verdict(row, report.logdir, remote)
        if verdict is False:
            if local_ok:
                report.would_push.append(PlannedPush(row.path_in_repo, row.size or 0, "missing or different on the Hub"))
            else:
                report.lost.append(row.path_in_repo)


# -------------------------------------------------------------------------------- helpers


def _describe(report: RecoverReport, settings: RunSettings) -> None:
    report.repo_id = settings.repo_id
    report.repo_type = settings.repo_type
    report.revision = settings.revision
    report.path_in_repo = settings.path_in_repo
    report.endpoint = public_url(settings.endpoint)
