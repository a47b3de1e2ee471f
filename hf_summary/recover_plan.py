"""`hf-summary recover --dry-run`: what a real recovery would push, changing nothing; and the verdict on a
committed segment that both the dry run and the real recovery reach by comparing it with the Hub's listing."""

from __future__ import annotations

from pathlib import Path

from hf_summary.hub import HubError, PushTarget, RemoteFile, client_for
from hf_summary.journal import (
    Journal,
    JournalCorruptError,
    JournalVersionError,
    RunSettings,
    SegmentRow,
    journal_path,
)
from hf_summary.liveness import host_aware, lease_owner_alive, process_alive
from hf_summary.patterns import path_matches
from hf_summary.reconcile import iter_disk_segments, logdir_relative, repo_path, salvage_settings
from hf_summary.recover_report import PlannedPush, RecoverError, RecoverReport, describe
from hf_summary.segments import file_digests, last_complete_offset


def plan_recovery(logdir: Path, settings: RunSettings | None, token, report: RecoverReport, say) -> None:
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
    describe(report, settings)
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
        verdict, local_ok = committed_verdict(row, report.logdir, remote)
        if verdict is False:
            if local_ok:
                report.would_push.append(PlannedPush(row.path_in_repo, row.size or 0, "missing or different on the Hub"))
            else:
                report.lost.append(row.path_in_repo)


def committed_verdict(row: SegmentRow, logdir: Path, remote: dict[str, RemoteFile]) -> tuple[bool | None, bool]:
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
