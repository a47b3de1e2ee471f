"""`hf-summary demo`: log a short numpy training run, check that the Hub holds every event, and (`--view`)
show it in a live TensorBoard."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from hf_summary.commands.common import Commands, fail, interrupt
from hf_summary.exit_status import ExitStatus

if TYPE_CHECKING:
    from hf_summary.demo import DemoResult


def register(commands: Commands) -> None:
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
    demo.set_defaults(handler=run)


def run(args: argparse.Namespace) -> ExitStatus:
    import signal

    from huggingface_hub.utils import disable_progress_bars

    from hf_summary.demo import run_demo
    from hf_summary.view import ViewError, require_tensorboard

    status = ExitStatus.INCOMPLETE

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
        status = ExitStatus.OK
        if args.view:
            _view(result)
        else:
            print("To see its charts in a live TensorBoard: hf-summary demo --view")

    disable_progress_bars()
    try:
        if args.view:
            require_tensorboard()  # before the training, not after it
            signal.signal(signal.SIGTERM, interrupt)
        run_demo(steps=args.steps, then=report)
    except ViewError as exc:
        return fail("demo", exc)
    except KeyboardInterrupt:
        if not args.view:
            raise
        print("Stopped.", flush=True)
    return status


def _view(result: DemoResult) -> None:
    from hf_summary.view import Target
    from hf_summary.view import run as run_view

    print(f"Repo page: {result.endpoint}/{result.repo_id}", flush=True)
    print("Press Ctrl-C to stop.", flush=True)
    run_view(
        Target(repo_id=result.repo_id, path=result.path_in_repo),
        endpoint=result.endpoint,
        token=result.token,
        cache_dir=result.workdir,
        say=lambda line: print(line, flush=True),
    )
