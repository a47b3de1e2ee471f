"""What the commands share: their exit status, how they report a failure, their log on stderr, and Ctrl-C
for SIGTERM. Standard library only, like every command module's top level: a command imports what it needs
when it runs (``status`` must not load the Hub client)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator

from hf_summary.exit_status import ExitStatus

TOKEN_HELP = ("Hub token (default: HF_TOKEN or the stored login). A command line is visible to other users in "
              "`ps`: prefer HF_TOKEN")

Commands = argparse._SubParsersAction


def fail(command: str, exc: BaseException | str, status: ExitStatus = ExitStatus.FAILED) -> ExitStatus:
    """Say why ``command`` stops (on stderr, no traceback) and return ``status``."""
    print(f"hf-summary {command}: {exc}", file=sys.stderr)
    return status


def say_to_stderr(command: str):
    """A ``say`` callback for the library calls: one progress line on stderr, prefixed with the command."""
    return lambda line: print(f"hf-summary {command}: {line}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def stderr_log(command: str) -> Iterator[None]:
    """The package's INFO log lines on stderr, prefixed with the command, while the command runs."""
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


def interrupt(signum: int, frame: object) -> None:
    """A signal handler: SIGTERM stops a long-running command as Ctrl-C does."""
    raise KeyboardInterrupt
