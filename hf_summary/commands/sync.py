"""`hf-summary sync`: push every run under some directories ([`hf_summary.sync.sync`][hf_summary.sync.sync]),
one line per run."""

from __future__ import annotations

import argparse
from pathlib import Path

from hf_summary.commands.common import TOKEN_HELP, Commands, add_quiet_option, command_output, fail
from hf_summary.exit_status import ExitStatus


def register(commands: Commands) -> None:
    sync = commands.add_parser(
        "sync",
        help="push every run under some directories (offline runs, from a connected machine)",
        description="Find every run at or under the given logdirs or parent directories (a run is a directory "
        "with .hf_summary/journal.db; symlinks are not followed) and push each to its own recorded repo, with "
        "the same verification as `recover`. A run still being written (an offline writer alive on another "
        "node of a shared filesystem, say) gets what is sealed pushed; its open segments stay with their writer "
        "and a later sync pushes them. Runs that go to the same repo and branch share their commits: one commit per "
        "batch of runs (at most --files-per-commit files), so a sweep's runs stay within the repo's commit budget; "
        "a commit the Hub refuses for that budget (HTTP 429) is tried again later, spaced, within --timeout. "
        "Prints one line per run and a total. Safe to run again and again: what "
        "the Hub holds is never committed again. Exit status: 0 when the Hub holds every run, 1 when something "
        "is still missing (being written, pushed by a live uploader, the Hub failing), 2 when a run failed for "
        "good (token, permissions, unusable journal), no run was found, or HF_HUB_OFFLINE is set.",
    )
    sync.add_argument("paths", type=Path, nargs="+", metavar="PATH", help="a logdir, or a directory of runs")
    sync.add_argument("--token", default=None, help=TOKEN_HELP)
    sync.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds in all")
    sync.add_argument("--files-per-commit", type=_positive, default=None, metavar="N",
                      help="at most N files in one commit (default: 100, as the Hub advises)")
    sync.add_argument(
        "--take-over", action="store_true",
        help="take runs over from other hosts known to be gone: the lease of their uploaders, and their writers "
        "(recorded as lost, their open segments sealed) without waiting for their heartbeats to stop for 5 minutes; "
        "only when those machines are known to be gone",
    )
    add_quiet_option(sync)
    sync.set_defaults(handler=run)


_SYNC_LABELS = {"ok": "OK", "writing": "WRITING", "incomplete": "INCOMPLETE", "busy": "BUSY", "failed": "FAILED"}
_SYNC_TOTALS = (("writing", "still being written"), ("incomplete", "incomplete"),
                ("busy", "pushed by a live uploader"), ("failed", "failed"))


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def run(args: argparse.Namespace) -> ExitStatus:
    from hf_summary.recover import RecoverError
    from hf_summary.runs import NoRunsError
    from hf_summary.sync import sync

    try:
        with command_output("sync", args.quiet) as say:
            result = sync(
                args.paths,
                token=args.token,
                timeout=args.timeout,
                take_over=args.take_over,
                **({"files_per_commit": args.files_per_commit} if args.files_per_commit else {}),
                say=say,
            )
    except (RecoverError, NoRunsError, NotADirectoryError) as exc:
        return fail("sync", exc)
    for run in result.runs:
        line = f"{_SYNC_LABELS[run.outcome]:<10} {run.logdir}"
        if run.report is not None:
            report = run.report
            line += (f"  {report.repo_type} {report.repo_id}:{report.path_in_repo}  pushed {report.pushed_segments} "
                     f"segment(s), {report.pushed_bytes} bytes in {len(report.commits)} commit(s); "
                     f"{report.verified_segments} verified on the Hub")
        if run.outcome == "writing":
            line += (f"; {run.report.still_open} open segment(s) left to live writer(s) {run.report.live_writers}"
                     + (f", {run.report.not_seen_whole} sealed segment(s) not yet seen whole from here"
                        if run.report.not_seen_whole else "")
                     + ": sync again once they are sealed")
        elif run.message:
            line += f"; {run.message}"
        print(line)
    print(f"Total: {len(result.runs)} run(s), {result.count('ok')} on the Hub"
          + "".join(f", {result.count(o)} {phrase}" for o, phrase in _SYNC_TOTALS if result.count(o))
          + f"; pushed {result.pushed_segments} segment(s), {result.pushed_bytes} bytes in {result.commits} commit(s)")
    return result.exit_status
