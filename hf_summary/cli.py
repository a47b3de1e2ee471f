"""The `hf-summary` command line: `hub`, `demo`, `status`, `recover`."""

from __future__ import annotations

import argparse
import sys


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
    hub.add_argument("--lfs", action="store_true", help="mark binary or large files 'lfs' and serve basic LFS")
    hub.add_argument(
        "--commit-limit", type=int, default=128, help="commits per repo per rolling hour before 429 (default: 128)"
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
        lfs=args.lfs,
        commit_limit=args.commit_limit,
        page_size=args.page_size,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-summary", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_hub_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
