"""`hf-summary recover`: finish a run's push after a crash and verify the Hub holds it
([`hf_summary.recover.recover`][hf_summary.recover.recover]), and print what it did."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hf_summary.commands.common import TOKEN_HELP, Commands, add_quiet_option, command_output, fail
from hf_summary.exit_status import ExitStatus

if TYPE_CHECKING:
    from hf_summary.journal import RunSettings
    from hf_summary.recover import RecoverReport


def register(commands: Commands) -> None:
    recover = commands.add_parser(
        "recover",
        help="finish pushing a run after a crash, and verify the Hub holds it",
        description="Finish a run's job after a crash: seal the event files a dead writer left open (cutting a "
        "torn last record), push everything pending in the journal, then check that the Hub holds every "
        "committed segment with the recorded size and content, and push again what it lacks. Needs only the "
        "logdir: the repo settings come from its journal (a missing or corrupt journal is moved aside and "
        "rebuilt from the files on disk, given --repo-id). The token comes from --token, HF_TOKEN or the "
        "stored login. Safe to run any number of times: a second run makes no commit. Exit status: 0 when "
        "the Hub holds everything, 1 when something is still missing, 2 on a permanent error (token, "
        "permissions) or when recovery cannot start (no journal and no --repo-id), 3 when a live uploader "
        "holds the run and --no-wait was given (or --timeout passed while waiting for it, or it runs on another "
        "host: see --take-over). --dry-run lists "
        "what would be pushed and changes nothing.",
    )
    recover.add_argument("logdir", type=Path, help="the writer's logdir")
    recover.add_argument("--token", default=None, help=TOKEN_HELP)
    recover.add_argument("--no-wait", action="store_true", help="fail instead of waiting for a live uploader")
    recover.add_argument("--dry-run", action="store_true", help="list what would be pushed; change nothing")
    recover.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds")
    recover.add_argument(
        "--take-over", action="store_true",
        help="take the run over from other hosts known to be gone: the lease of their uploader, and their writers "
        "(recorded as lost, their open segments sealed) without waiting for their heartbeats to stop for 5 minutes; "
        "only when that machine is known to be gone",
    )
    rebuild = recover.add_argument_group(
        "settings, used only when the journal is missing or unreadable (otherwise the journal's are used)"
    )
    rebuild.add_argument("--repo-id", default=None)
    rebuild.add_argument("--repo-type", default="model", choices=["model", "dataset", "space", "bucket"])
    rebuild.add_argument("--revision", default="main")
    rebuild.add_argument("--path-in-repo", default="tensorboard",
                         help="folder in the repo; the logdir's name is appended (default: tensorboard)")
    rebuild.add_argument("--endpoint", default=None, help="Hub URL (default: HF_ENDPOINT or huggingface.co)")
    add_quiet_option(recover)
    recover.set_defaults(handler=run)


def run(args: argparse.Namespace) -> ExitStatus:
    from hf_summary.journal import JournalError
    from hf_summary.recover import LeaseBusyError, RecoverError, recover

    logdir = args.logdir.resolve()
    try:
        settings = _settings(args, logdir)
    except ValueError as exc:  # a --path-in-repo that cannot name a folder
        return fail("recover", exc)
    try:
        with command_output("recover", args.quiet) as say:
            report = recover(
                logdir,
                token=args.token,
                settings=settings,
                wait=not args.no_wait,
                dry_run=args.dry_run,
                timeout=args.timeout,
                take_over=args.take_over,
                say=say,
            )
    except LeaseBusyError as exc:
        return fail("recover", exc, ExitStatus.BUSY)
    except (RecoverError, JournalError) as exc:
        return fail("recover", exc)
    _print_destination(report)
    if args.dry_run:
        _print_plan(report)
        return ExitStatus.OK
    _print_outcome(report)
    return report.exit_status


def _settings(args: argparse.Namespace, logdir: Path) -> RunSettings | None:
    """The settings given on the command line (`--repo-id` and friends), for a journal to rebuild."""
    if not args.repo_id:
        return None
    import os

    from hf_summary._arguments import join_path_in_repo
    from hf_summary.journal import RunSettings

    return RunSettings(
        repo_id=args.repo_id,
        repo_type=args.repo_type,
        revision=args.revision,
        path_in_repo=join_path_in_repo(args.path_in_repo, logdir.name),
        allow_patterns=["*.tfevents.*"],
        ignore_patterns=None,
        squash_history=False,
        commit_every_s=300.0,
        private=None,
        endpoint=args.endpoint or os.environ.get("HF_ENDPOINT"),
    )


def _print_destination(report: RecoverReport) -> None:
    print(f"Logdir:          {report.logdir}")
    print(f"Repo:            {report.repo_type} {report.repo_id} @ {report.revision}, folder {report.path_in_repo}"
          + (f" on {report.endpoint}" if report.endpoint else ""))
    for note in report.notes:
        print(f"Note:            {note}")


def _print_plan(report: RecoverReport) -> None:
    size = sum(planned.size for planned in report.would_push)
    print(f"Would push:      {len(report.would_push)} segment(s), {size} bytes"
          + (" (nothing to do)" if not report.would_push else ":"))
    for planned in report.would_push:
        print(f"  {planned.path_in_repo} ({planned.size} bytes): {planned.reason}")
    if report.still_open:
        print(f"Being written:   {report.still_open} segment(s) of a live writer (left alone)")
    if report.lost:
        print(f"Lost:            {len(report.lost)} segment(s) neither on the Hub nor on disk", file=sys.stderr)
    print("Dry run: nothing was changed.")


def _print_outcome(report: RecoverReport) -> None:
    if report.moved_journal:
        print(f"Journal:         rebuilt from {report.found_on_disk} segment(s) on disk; "
              f"the old one is kept at {report.moved_journal}")
    elif report.found_on_disk:
        print(f"Found on disk:   {report.found_on_disk} segment(s) the journal did not know")
    print(f"Tails sealed:    {report.sealed_tails}")
    print(f"Pushed:          {report.pushed_segments} segment(s), {report.pushed_bytes} bytes"
          + (f" (Hub commit {report.commits[-1]})" if report.commits else ""))
    print(f"Pushed again:    {len(report.repushed)} (missing or different on the Hub)")
    print(f"Verified:        {report.verified_segments} segment(s), {report.verified_bytes} bytes on the Hub "
          "(size and content)")
    if report.still_open:
        print(f"Being written:   {report.still_open} segment(s) of a live writer (its uploader pushes them)")
    for path in report.lost[:10]:
        print(f"Lost:            {path}", file=sys.stderr)
    print(f"Time:            {report.elapsed_s:.1f} s")
    if report.exit_status == ExitStatus.OK:
        print("OK: the Hub holds every segment")
    else:
        print(f"INCOMPLETE: {report.error}", file=sys.stderr)
