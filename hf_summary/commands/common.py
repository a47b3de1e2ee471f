"""What the commands share: their exit status, how they report a failure, their log on stderr, and Ctrl-C
for SIGTERM. Standard library only, like every command module's top level: a command imports what it needs
when it runs (`status` must not load the Hub client)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Callable, Iterator

from hf_summary.exit_status import ExitStatus

TOKEN_HELP = ("Hub token (default: HF_TOKEN or the stored login). A command line is visible to other users in "
              "`ps`: prefer HF_TOKEN")

Commands = argparse._SubParsersAction


def fail(command: str, exc: BaseException | str, status: ExitStatus = ExitStatus.FAILED) -> ExitStatus:
    """Say why `command` stops (on stderr, no traceback) and return `status`."""
    print(f"hf-summary {command}: {exc}", file=sys.stderr)
    return status


def add_quiet_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="no progress bars and no progress lines: only the results, warnings and errors (progress "
                        "bars show only when stderr is a terminal anyway)")


def limit_progress_bars(quiet: bool) -> None:
    """Turn off the uploads' progress bars (huggingface_hub's, fed by hf_xet) unless stderr is a terminal and
    not `quiet`: a command run from cron or a job script must not fill its log with them."""
    if quiet or not sys.stderr.isatty():
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


def say_to_stderr(command: str, quiet: bool = False):
    """A `say` callback for the library calls: one progress line on stderr, prefixed with the command (none
    when `quiet`)."""
    if quiet:
        return lambda line: None
    return lambda line: print(f"hf-summary {command}: {line}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def stderr_log(command: str, quiet: bool = False) -> Iterator[None]:
    """The package's log lines on stderr, prefixed with the command, while the command runs: from INFO on (from
    WARNING on when `quiet`)."""
    package_logger = logging.getLogger("hf_summary")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"hf-summary {command}: %(message)s"))
    previous_level = package_logger.level
    package_logger.addHandler(handler)
    package_logger.setLevel(logging.WARNING if quiet else logging.INFO)
    try:
        yield
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(previous_level)


@contextlib.contextmanager
def command_output(command: str, quiet: bool) -> Iterator[Callable[[str], None]]:
    """What a long command (`recover`, `sync`, `watch`) shows while it runs: progress bars only on a terminal
    (`limit_progress_bars`), its log on stderr (`stderr_log`); yields its progress-line callback."""
    limit_progress_bars(quiet)
    with stderr_log(command, quiet):
        yield say_to_stderr(command, quiet)


def interrupt(signum: int, frame: object) -> None:
    """A signal handler: SIGTERM stops a long-running command as Ctrl-C does."""
    raise KeyboardInterrupt
