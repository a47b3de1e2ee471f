"""`hf-summary hub`: run the local Hub-compatible server (`hf_summary.localhub`)."""

from __future__ import annotations

import argparse

from hf_summary.commands.common import Commands
from hf_summary.exit_status import ExitStatus


def register(commands: Commands) -> None:
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
    hub.set_defaults(handler=run)


def run(args: argparse.Namespace) -> ExitStatus:
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
    return ExitStatus.OK
