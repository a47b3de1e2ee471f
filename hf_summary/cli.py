"""The `hf-summary` command line: `hub`, `demo`, `view`, `status`, `recover`, `watch`, `sync`,
`settle`
(one module each in `hf_summary.commands`)."""

from __future__ import annotations

import argparse
import sys

from hf_summary.commands import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-summary", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
