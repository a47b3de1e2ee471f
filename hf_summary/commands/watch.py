"""`hf-summary watch`: push the logdir of a writer hf-summary does not control (`hf_summary.watch`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hf_summary.commands.common import Commands, add_quiet_option, command_output, fail
from hf_summary.exit_status import ExitStatus


def register(commands: Commands) -> None:
    watch = commands.add_parser(
        "watch",
        help="push the logdir of a writer hf-summary does not control (Keras, tf.summary, torch, tensorboardX)",
        description="Push LOGDIR, written by a TensorBoard writer hf-summary does not control, with HFSummaryWriter's "
        "guarantees. Every --commit-every minutes the new complete records of each event file are copied into a "
        "sealed segment under LOGDIR/.hf_summary (a torn last record is never copied) and pushed in one commit, "
        "with the other matching files that changed (--asset). Runs until SIGTERM or SIGHUP (preemption: what is "
        "left is copied and pushed within --grace-period) or SIGINT or the end of --pid (within --drain-timeout); "
        "a second signal leaves at once. A restarted watcher resumes "
        "where the journal says: nothing is lost and nothing is pushed twice. The token comes from HF_TOKEN or the "
        "stored login. Exit status: 0 when the Hub holds everything, 1 when something is still pending "
        "(`hf-summary recover LOGDIR` pushes it), 2 when it cannot start, 3 when another watcher holds LOGDIR.",
    )
    watch.add_argument("logdir", type=Path, help="the directory the foreign writer logs to")
    watch.add_argument("--repo-id", required=True, help="repo to push to; created if missing")
    watch.add_argument("--commit-every", type=float, default=5.0, metavar="MINUTES",
                       help="minutes between two pushes (default: 5)")
    watch.add_argument("--repo-type", default=None, choices=["model", "dataset", "space"])
    watch.add_argument("--revision", default=None, help="branch to push to (default: main)")
    watch.add_argument("--path-in-repo", default="tensorboard",
                       help="folder in the repo; the logdir's name is appended (default: tensorboard)")
    watch.add_argument("--pid", type=int, default=None, help="also stop, and push what is left, when PID ends")
    watch.add_argument("--drain-timeout", type=float, default=600.0, metavar="SECONDS",
                       help="how long the final push may take after SIGINT or the end of --pid (default: 600)")
    watch.add_argument("--grace-period", type=float, default=None, metavar="SECONDS",
                       help="how long the final push may take after SIGTERM or SIGHUP, i.e. preemption (default: "
                       "HF_SUMMARY_GRACE_PERIOD or 8)")
    watch.add_argument("--asset", action="append", default=None, metavar="PATTERN",
                       help="glob of other files to push when they change, relative to LOGDIR (repeatable; "
                       "default: *.pbtxt *.yaml *.yml *.tsv)")
    watch.add_argument("--no-assets", action="store_true", help="push event files only")
    watch.add_argument("--once", action="store_true",
                       help="copy and push what LOGDIR holds now, then exit (after the job ended or its node was lost)")
    watch.add_argument("--token-from-stdin", action="store_true", help=argparse.SUPPRESS)
    add_quiet_option(watch)
    watch.set_defaults(handler=run)


def run(args: argparse.Namespace) -> ExitStatus:
    from hf_summary import _early_signals

    _early_signals.hold()  # a job-wide SIGTERM during the imports and the access check is handled, not fatal
    from hf_summary.uploader.protocol import read_token
    from hf_summary.watch import DEFAULT_ASSET_PATTERNS, WatchBusyError, WatchError, watch

    token = read_token(sys.stdin) if args.token_from_stdin else None
    try:
        with command_output("watch", args.quiet):
            return ExitStatus(watch(
                args.logdir,
                args.repo_id,
                commit_every=args.commit_every,
                repo_type=args.repo_type,
                revision=args.revision,
                path_in_repo=args.path_in_repo,
                assets=[] if args.no_assets else args.asset or DEFAULT_ASSET_PATTERNS,
                token=token,
                pid=args.pid,
                drain_timeout=args.drain_timeout,
                grace_period=args.grace_period,
                once=args.once,
            ))
    except KeyboardInterrupt:
        return fail("watch", "interrupted; the uploader pushes what was copied, `hf-summary watch --once` the rest",
                    ExitStatus.INTERRUPTED)
    except WatchBusyError as exc:
        return fail("watch", exc, ExitStatus.BUSY)
    except (WatchError, ValueError, TypeError, OSError) as exc:
        return fail("watch", exc)
