"""The `hf-summary` command line: `hub`, `demo`, `view`, `status`, `recover`, `watch`, `sync`."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hf_summary.demo import DemoResult


def _add_hub_parser(commands: argparse._SubParsersAction) -> None:
    hub = commands.add_parser(
        "hub",
        help="run the local Hub-compatible server",
        description="Run a Hub-compatible HTTP server (for tests, benchmarks and offline use). "
        "Point huggingface_hub at it with HF_ENDPOINT=http://HOST:PORT.",
    )
    hub.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    hub.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks a free one (default: 0)")
    hub.add_argument("--data-dir", required=True, help="directory where repos, commits and blobs persist")
    hub.add_argument(
        "--user",
        action="append",
        default=[],
        metavar="NAME:TOKEN",
        help="a user and the bearer token that names it (repeatable)",
    )
    hub.add_argument("--admin-token", default=None, help="token guarding /_localhub/faults and /_localhub/stats")
    hub.add_argument(
        "--regular",
        action="store_true",
        help="regular-only mode for old clients: every file 'regular', no LFS or Xet (default: answer as the Hub "
        "does, binary and large files 'lfs', uploaded through Xet or basic LFS)",
    )
    hub.add_argument(
        "--commit-limit", type=int, default=128, help="commits per repo per rolling hour before 429 (default: 128)"
    )
    hub.add_argument(
        "--commit-window",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="length of the rolling window of --commit-limit (default: 3600, as the real Hub)",
    )
    hub.add_argument("--page-size", type=int, default=1000, help="entries per page in /tree and /commits lists")
    hub.set_defaults(handler=_run_hub)


def _run_hub(args: argparse.Namespace) -> int:
    from hf_summary.localhub.server import parse_users, serve

    serve(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        users=parse_users(args.user),
        admin_token=args.admin_token,
        regular=args.regular,
        commit_limit=args.commit_limit,
        page_size=args.page_size,
        commit_window_s=args.commit_window,
    )
    return 0


def _add_demo_parser(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser(
        "demo",
        help="log a short numpy training run and check it on the Hub",
        description="Log a short numpy training run with HFSummaryWriter, then count the events on the Hub. "
        "With no HF_ENDPOINT and no token configured, a local Hub is started for it.",
    )
    demo.add_argument("--steps", type=int, default=200, help="training steps per phase (default: 200)")
    demo.add_argument(
        "--view",
        action="store_true",
        help="then keep the Hub running and show the run in a live TensorBoard (`hf-summary view`) until Ctrl-C",
    )
    demo.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    import signal

    from huggingface_hub.utils import disable_progress_bars

    from hf_summary.demo import run_demo
    from hf_summary.view import ViewError, require_tensorboard

    status = 1

    def report(result: DemoResult) -> None:
        nonlocal status
        print(f"Repo: {result.endpoint}/{result.repo_id}")
        print(f"Commits ({len(result.commits)}, newest first):")
        for commit in result.commits:
            print(f"  {commit}")
        print(f"Events logged: {result.logged}; events on the Hub: {result.on_hub}")
        if result.on_hub != result.logged:
            print("MISMATCH: the Hub does not hold every logged event", file=sys.stderr)
            return
        print("OK: every logged event is on the Hub", flush=True)
        status = 0
        if args.view:
            _view_demo(result)
        else:
            print("To see its charts in a live TensorBoard: hf-summary demo --view")

    disable_progress_bars()
    try:
        if args.view:
            require_tensorboard()  # before the training, not after it
            signal.signal(signal.SIGTERM, _interrupt)
        run_demo(steps=args.steps, then=report)
    except ViewError as exc:
        print(f"hf-summary demo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if not args.view:
            raise
        print("Stopped.", flush=True)
    return status


def _view_demo(result: DemoResult) -> None:
    from hf_summary.view import Target, run

    print(f"Repo page: {result.endpoint}/{result.repo_id}", flush=True)
    print("Press Ctrl-C to stop.", flush=True)
    run(
        Target(repo_id=result.repo_id, path=result.path_in_repo),
        endpoint=result.endpoint,
        token=result.token,
        cache_dir=result.workdir,
        say=lambda line: print(line, flush=True),
    )


def _add_view_parser(commands: argparse._SubParsersAction) -> None:
    view = commands.add_parser(
        "view",
        help="a live local TensorBoard of a run on the Hub",
        description="Keep a local mirror of a run's event files on the Hub (in a repo or a Storage Bucket), start "
        "TensorBoard on it and print its URL, and refresh the mirror every few seconds: new files are fetched once, "
        "files the Hub no longer has are emptied (and deleted at the next start). The token comes from HF_TOKEN or "
        "the stored login; the Hub from HF_ENDPOINT. A directory instead of a repo id views a local logdir. Ctrl-C "
        "stops it and TensorBoard. Needs TensorBoard: pip install 'hf-summary[view]'.",
    )
    view.add_argument("source", metavar="REPO_ID|LOGDIR", help="repo or bucket id (user/name), or a local logdir")
    view.add_argument("--repo-type", default="model", choices=["model", "dataset", "space", "bucket"],
                      help="the repo's type, or bucket for a Storage Bucket (default: model)")
    view.add_argument("--revision", default=None,
                      help="branch, tag or commit (default: main); buckets have none")
    view.add_argument("--path", default="", metavar="PATH_IN_REPO",
                      help="folder of the run(s) in the repo or bucket (default: all of it)")
    view.add_argument("--host", default="127.0.0.1", help="address TensorBoard listens on (default: 127.0.0.1)")
    view.add_argument("--port", type=int, default=None,
                      help="TensorBoard's port; 0 picks a free one (default: TensorBoard's, 6006 or the next free)")
    view.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                      help="keep downloads (DIR/hub) and the mirror (DIR/view) here instead of the Hugging Face cache")
    view.add_argument("--interval", type=float, default=5.0, metavar="SECONDS",
                      help="seconds between refreshes (default: 5)")
    view.set_defaults(handler=_run_view)


def _run_view(args: argparse.Namespace) -> int:
    import signal

    from huggingface_hub.utils import disable_progress_bars

    from hf_summary.hub import use_timeouts
    from hf_summary.view import Target, ViewError, run

    if not args.interval > 0:
        print("hf-summary view: --interval must be > 0", file=sys.stderr)
        return 2
    disable_progress_bars()
    use_timeouts()  # a hung Hub fails a refresh (retried at the next one) instead of blocking it for good
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        target = Target.parse(args.source, repo_type=args.repo_type, revision=args.revision, path=args.path)
        run(target, interval_s=args.interval, host=args.host, port=args.port, cache_dir=args.cache_dir,
            say=lambda line: print(line, flush=True))
    except ViewError as exc:
        print(f"hf-summary view: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Stopped.", flush=True)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _add_status_parser(commands: argparse._SubParsersAction) -> None:
    status = commands.add_parser(
        "status",
        help="tell where a run stands",
        description="Show a run's state (offline, live, preempted, closed), its pending segments and bytes, the age "
        "of the oldest pending segment, the last commit and the last error, whether an uploader is alive, and "
        "where the run is pushed. On a directory that is not a run, one line for every run under it. Reads only "
        "the journals (LOGDIR/.hf_summary); never contacts the Hub.",
    )
    status.add_argument("logdir", type=Path, metavar="PATH", help="a writer's logdir, or a directory of runs")
    status.add_argument("--json", action="store_true",
                        help="print one JSON object (a list of them for a directory of runs) instead of text")
    status.set_defaults(handler=_run_status)


def _run_status(args: argparse.Namespace) -> int:
    from hf_summary.runs import NoRunsError, find_runs, is_run
    from hf_summary.status import StatusError, run_status

    if not is_run(args.logdir) and args.logdir.is_dir():
        try:
            return _print_statuses(find_runs([args.logdir]), as_json=args.json)
        except NoRunsError as exc:
            print(f"hf-summary status: {exc}", file=sys.stderr)
            return 2
    try:
        status = run_status(args.logdir)
    except StatusError as exc:
        print(f"hf-summary status: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return 0
    print(f"Run:        {args.logdir}")
    print(f"Repo:       {status['repo_type']} {status['repo_id']} @ {status['revision']}, "
          f"path {status['path_in_repo']}")
    age = status["oldest_pending_age_s"]
    print(f"Pending:    {status['pending_segments']} segment(s), {status['pending_bytes']} bytes"
          + (f", oldest {age:.0f} s" if age is not None else ""))
    print(f"Open:       {status['open_segments']} segment(s) being written")
    print(f"Committed:  {status['committed_segments']} segment(s)")
    commit = status["last_commit"]
    print("Last commit: " + (f"{commit['oid']} at {_when(commit['at'])} {commit['url'] or ''}" if commit else "none"))
    error = status["last_error"]
    print("Last error: " + (f"{_when(error['at'])}: {error['message']}" if error else "none"))
    print("Uploader:   " + (f"alive (pid {status['uploader_pid']})" if status["uploader_alive"] else "not running"))
    if status["conflicting_segments"]:
        print(f"Conflicts:  {status['conflicting_segments']} segment(s) not pushed: their path on the Hub holds "
              "another run's file (see the last error)")
    if preemption := status["preemption"]:
        print(f"Preempted:  {_when(preemption['at'])} by {preemption['signal']}; "
              + _final_push(preemption, status["pending_segments"]))
    if budget := status["budget"]:
        print(f"Budget:     the repo's commit budget is the bottleneck: the Hub refused commits (429) since "
              f"{_when(budget['since'])}; commits are spaced by {budget['gap_s']:.0f} s")
    if parked := status["parked"]:
        print(f"Parked:     {parked['segments']} segment(s), {parked['bytes']} bytes, in bucket {parked['bucket']} "
              f"since {_when(parked['since'])} (the commit budget was spent at the final push); `hf-summary settle "
              f"{status['repo_id']}` moves them into the repo")
    print(f"State:      {_state(status)}")
    if status["pending_segments"] and not status["uploader_alive"]:
        print(f"Next:       hf-summary {'sync' if status['offline'] else 'recover'} {args.logdir}")
    return 0


def _final_push(preemption: dict, pending_now: int) -> str:
    final = preemption["final_push"]
    if final is None:
        return (f"the final drain did not finish (the process was killed); {pending_now} segment(s) pending "
                "now")
    if final["pending"]:
        return f"the final drain ended with {final['pending']} segment(s) pending"
    return (f"everything sealed was on the Hub after the final drain ({final['segments']} segment(s) in "
            f"{len(final['commits'])} commit(s) during it; last commit {final['last_commit']})")


def _print_statuses(logdirs: list[Path], *, as_json: bool) -> int:
    """One line (or JSON object) per run; exit status 2 if a journal was unusable."""
    from hf_summary.status import StatusError, run_status

    statuses, unusable = [], 0
    for logdir in logdirs:
        try:
            statuses.append({"logdir": str(logdir), **run_status(logdir)})
        except StatusError as exc:
            unusable += 1
            statuses.append({"logdir": str(logdir), "error": str(exc)})
    if as_json:
        print(json.dumps(statuses, indent=2, sort_keys=True))
        return 2 if unusable else 0
    for status in statuses:
        if "error" in status:
            print(f"{status['logdir']}  unusable: {status['error']}")
            continue
        commit = status["last_commit"]
        print(f"{status['logdir']}  {status['repo_type']} {status['repo_id']}:{status['path_in_repo']}  "
              f"{_state(status)}  last commit " + (f"{commit['oid'][:12]} at {_when(commit['at'])}" if commit else "none"))
    return 2 if unusable else 0


def _state(status: dict) -> str:
    """``offline, 3 segment(s) pending, 1 open`` (``offline, preempted, ...`` when it ended by a signal)."""
    preempted = ", preempted" if status["preempted"] and status["state"] != "preempted" else ""
    text = f"{status['state']}{preempted}, {status['pending_segments']} segment(s) pending"
    return text + (f", {status['open_segments']} open" if status["open_segments"] else "")


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _add_recover_parser(commands: argparse._SubParsersAction) -> None:
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
    recover.add_argument(
        "--token",
        default=None,
        help="Hub token (default: HF_TOKEN or the stored login). A command line is visible to other users in "
        "`ps`: prefer HF_TOKEN",
    )
    recover.add_argument("--no-wait", action="store_true", help="fail instead of waiting for a live uploader")
    recover.add_argument("--dry-run", action="store_true", help="list what would be pushed; change nothing")
    recover.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds")
    recover.add_argument(
        "--take-over", action="store_true",
        help="take the lease from an uploader on another host (whose liveness cannot be checked from here); "
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
    recover.set_defaults(handler=_run_recover)


def _run_recover(args: argparse.Namespace) -> int:
    import os

    from hf_summary.journal import JournalError, RunSettings
    from hf_summary.recover import LeaseBusyError, RecoverError, recover

    logdir = args.logdir.resolve()
    settings = None
    if args.repo_id:
        folder = args.path_in_repo.strip("/")
        settings = RunSettings(
            repo_id=args.repo_id,
            repo_type=args.repo_type,
            revision=args.revision,
            path_in_repo=f"{folder}/{logdir.name}" if folder else logdir.name,
            allow_patterns=["*.tfevents.*"],
            ignore_patterns=None,
            squash_history=False,
            commit_every_s=300.0,
            private=None,
            endpoint=args.endpoint or os.environ.get("HF_ENDPOINT"),
        )
    try:
        with _stderr_log("recover"):
            report = recover(
                logdir,
                token=args.token,
                settings=settings,
                wait=not args.no_wait,
                dry_run=args.dry_run,
                timeout=args.timeout,
                take_over=args.take_over,
                say=lambda line: print(f"hf-summary recover: {line}", file=sys.stderr, flush=True),
            )
    except LeaseBusyError as exc:
        print(f"hf-summary recover: {exc}", file=sys.stderr)
        return 3
    except (RecoverError, JournalError) as exc:
        print(f"hf-summary recover: {exc}", file=sys.stderr)
        return 2
    print(f"Logdir:          {report.logdir}")
    print(f"Repo:            {report.repo_type} {report.repo_id} @ {report.revision}, folder {report.path_in_repo}"
          + (f" on {report.endpoint}" if report.endpoint else ""))
    for note in report.notes:
        print(f"Note:            {note}")
    if args.dry_run:
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
        return 0
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
    if report.exit_status == 0:
        print("OK: the Hub holds every segment")
    else:
        print(f"INCOMPLETE: {report.error}", file=sys.stderr)
    return report.exit_status


def _add_watch_parser(commands: argparse._SubParsersAction) -> None:
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
    watch.set_defaults(handler=_run_watch)


def _run_watch(args: argparse.Namespace) -> int:
    from hf_summary import _early_signals

    _early_signals.hold()  # a job-wide SIGTERM during the imports and the access check is handled, not fatal
    from hf_summary.watch import (
        DEFAULT_ASSET_PATTERNS,
        EXIT_BUSY,
        EXIT_ERROR,
        WatchBusyError,
        WatchError,
        watch,
    )

    token = json.loads(sys.stdin.readline() or "{}").get("token") if args.token_from_stdin else None
    try:
        with _stderr_log("watch"):
            return watch(
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
            )
    except KeyboardInterrupt:
        print("hf-summary watch: interrupted; the uploader pushes what was copied, `hf-summary watch --once` the rest",
              file=sys.stderr)
        return 130
    except WatchBusyError as exc:
        print(f"hf-summary watch: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except (WatchError, ValueError, TypeError, OSError) as exc:
        print(f"hf-summary watch: {exc}", file=sys.stderr)
        return EXIT_ERROR


@contextlib.contextmanager
def _stderr_log(command: str) -> Iterator[None]:
    """The package's INFO log lines on stderr, prefixed with the command, while the command runs."""
    import logging

    package_logger = logging.getLogger("hf_summary")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"hf-summary {command}: %(message)s"))
    previous_level = package_logger.level
    package_logger.addHandler(handler)
    package_logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(previous_level)


def _add_sync_parser(commands: argparse._SubParsersAction) -> None:
    sync = commands.add_parser(
        "sync",
        help="push every run under some directories (offline runs, from a connected machine)",
        description="Find every run at or under the given logdirs or parent directories (a run is a directory "
        "with .hf_summary/journal.db; symlinks are not followed) and push each to its own recorded repo, with "
        "the same verification as `recover`. A run still being written (an offline writer alive on another "
        "node of a shared filesystem, say) gets what is sealed pushed; its open segments stay with their writer "
        "and a later sync pushes them. Prints one line per run and a total. Safe to run again and again: what "
        "the Hub holds is never committed again. Exit status: 0 when the Hub holds every run, 1 when something "
        "is still missing (being written, pushed by a live uploader, the Hub failing), 2 when a run failed for "
        "good (token, permissions, unusable journal), no run was found, or HF_HUB_OFFLINE is set.",
    )
    sync.add_argument("paths", type=Path, nargs="+", metavar="PATH", help="a logdir, or a directory of runs")
    sync.add_argument(
        "--token",
        default=None,
        help="Hub token (default: HF_TOKEN or the stored login). A command line is visible to other users in "
        "`ps`: prefer HF_TOKEN",
    )
    sync.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds in all")
    sync.add_argument(
        "--take-over", action="store_true",
        help="take the lease from uploaders on other hosts (whose liveness cannot be checked from here); only "
        "when those machines are known to be gone",
    )
    sync.set_defaults(handler=_run_sync)


_SYNC_LABELS = {"ok": "OK", "writing": "WRITING", "incomplete": "INCOMPLETE", "busy": "BUSY", "failed": "FAILED"}
_SYNC_TOTALS = (("writing", "still being written"), ("incomplete", "incomplete"),
                ("busy", "pushed by a live uploader"), ("failed", "failed"))


def _run_sync(args: argparse.Namespace) -> int:
    from hf_summary.recover import RecoverError
    from hf_summary.runs import NoRunsError
    from hf_summary.sync import sync

    try:
        with _stderr_log("sync"):
            result = sync(
                args.paths,
                token=args.token,
                timeout=args.timeout,
                take_over=args.take_over,
                say=lambda line: print(f"hf-summary sync: {line}", file=sys.stderr, flush=True),
            )
    except (RecoverError, NoRunsError, NotADirectoryError) as exc:
        print(f"hf-summary sync: {exc}", file=sys.stderr)
        return 2
    for run in result.runs:
        line = f"{_SYNC_LABELS[run.outcome]:<10} {run.logdir}"
        if run.report is not None:
            report = run.report
            line += (f"  {report.repo_type} {report.repo_id}:{report.path_in_repo}  pushed {report.pushed_segments} "
                     f"segment(s), {report.pushed_bytes} bytes in {len(report.commits)} commit(s); "
                     f"{report.verified_segments} verified on the Hub")
        if run.outcome == "writing":
            line += (f"; {run.report.still_open} open segment(s) left to live writer(s) {run.report.live_writers}: "
                     "sync again once they are sealed")
        elif run.message:
            line += f"; {run.message}"
        print(line)
    print(f"Total: {len(result.runs)} run(s), {result.count('ok')} on the Hub"
          + "".join(f", {result.count(o)} {phrase}" for o, phrase in _SYNC_TOTALS if result.count(o))
          + f"; pushed {result.pushed_segments} segment(s), {result.pushed_bytes} bytes in {result.commits} commit(s)")
    return result.exit_status


def _add_settle_parser(commands: argparse._SubParsersAction) -> None:
    settle = commands.add_parser(
        "settle",
        help="move pushes parked in the overflow bucket (the commit budget was spent) into the repo",
        description="A final push that the Hub refused for the repo's commit budget (HTTP 429) is parked in a "
        "Storage Bucket, with a record of where it belongs. This moves every parked file of the repo's branch "
        "into the repo in one commit, exactly once (files the repo already holds are not committed again), "
        "then removes them from the bucket. Needs neither the logdir nor the machine that parked them. Exit "
        "status: 0 when nothing is left parked, 1 when the repo still refuses commits for its budget (run it "
        "again later) or something could not be moved, 2 on a permanent error (token, permissions).",
    )
    settle.add_argument("repo_id", help="the repo the runs push to, e.g. alice/sweep")
    settle.add_argument("--repo-type", default="model", choices=["model", "dataset", "space"])
    settle.add_argument("--revision", default="main", help="the branch (default: main)")
    settle.add_argument("--bucket", default=None,
                        help="the overflow bucket (default: HF_SUMMARY_OVERFLOW_BUCKET, else REPO-hf-summary-overflow)")
    settle.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the stored login)")
    settle.add_argument("--endpoint", default=None, help="Hub URL (default: HF_ENDPOINT or huggingface.co)")
    settle.set_defaults(handler=_run_settle)


def _run_settle(args: argparse.Namespace) -> int:
    from hf_summary.hub import BUCKET, HubError, PermanentHubError, open_client
    from hf_summary.overflow import overflow_bucket
    from hf_summary.settle import BudgetSpentError, settle

    repo = open_client(repo_id=args.repo_id, repo_type=args.repo_type, revision=args.revision,
                       endpoint=args.endpoint, token=args.token)
    bucket = open_client(repo_id=args.bucket or overflow_bucket(args.repo_id), repo_type=BUCKET,
                         endpoint=args.endpoint, token=args.token)
    try:
        with _stderr_log("settle"):
            report = settle(repo, bucket, say=lambda line: print(f"hf-summary settle: {line}", file=sys.stderr,
                                                                 flush=True))
    except BudgetSpentError as exc:
        when = f"in about {exc.retry_after:.0f} s" if exc.retry_after is not None else "later"
        print(f"hf-summary settle: the repo's commit budget is still spent ({exc}); nothing was moved. Run "
              f"settle again {when}", file=sys.stderr)
        return 1
    except HubError as exc:
        print(f"hf-summary settle: the Hub failed: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, PermanentHubError) else 1
    if not report.records:
        print(f"{args.repo_type} {args.repo_id} @ {args.revision}: nothing to settle in bucket {report.bucket}")
        return 0
    print(f"Bucket:          {report.bucket}, {report.records} parked push(es)")
    print(f"Committed:       {report.committed_files} file(s), {report.committed_bytes} bytes"
          + (f" (Hub commit {report.commit})" if report.commit else ""))
    print(f"Already there:   {report.already_in_repo} file(s) the repo held already")
    print(f"Removed:         {report.settled_records} parked push(es) from the bucket")
    for line in report.unreadable:
        print(f"Unreadable:      {line}", file=sys.stderr)
    for path in report.missing[:10]:
        print(f"Missing:         {path} (neither intact in the bucket nor in the repo)", file=sys.stderr)
    for path in report.conflicts[:10]:
        print(f"Conflict:        {path} holds other content in the repo; its parked copy is kept", file=sys.stderr)
    return 0 if report.complete else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-summary", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_hub_parser(commands)
    _add_demo_parser(commands)
    _add_view_parser(commands)
    _add_status_parser(commands)
    _add_recover_parser(commands)
    _add_watch_parser(commands)
    _add_sync_parser(commands)
    _add_settle_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
