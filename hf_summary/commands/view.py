"""`hf-summary view`: a live local TensorBoard of a run on the Hub (or of a local logdir)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hf_summary.commands.common import Commands, fail, interrupt
from hf_summary.exit_status import ExitStatus


def register(commands: Commands) -> None:
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
    view.set_defaults(handler=run)


def run(args: argparse.Namespace) -> ExitStatus:
    import signal

    from huggingface_hub.utils import disable_progress_bars

    from hf_summary.hub import use_timeouts
    from hf_summary.view import Target, ViewError
    from hf_summary.view import run as run_view

    if not args.interval > 0:
        return fail("view", "--interval must be > 0")
    disable_progress_bars()
    use_timeouts()  # a hung Hub fails a refresh (retried at the next one) instead of blocking it for good
    signal.signal(signal.SIGTERM, interrupt)
    try:
        target = Target.parse(args.source, repo_type=args.repo_type, revision=args.revision, path=args.path)
        run_view(target, interval_s=args.interval, host=args.host, port=args.port, cache_dir=args.cache_dir,
            say=lambda line: print(line, flush=True))
    except ViewError as exc:
        return fail("view", exc)
    except KeyboardInterrupt:
        print("Stopped.", flush=True)
    return ExitStatus.OK
