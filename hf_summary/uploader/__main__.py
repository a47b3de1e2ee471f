"""The uploader child's entry: `python -m hf_summary.uploader LOGDIR --parent-pid P --parent-create-time T
--drain-timeout D --grace-period G --reverse-fd FD`, started by the writer or the watcher
(`launcher`) in its own session. It reads the token and then the trainer's requests
on stdin (`protocol`) and drains the journal (`drain`).
"""

# ruff: noqa: E402  (stop signals are held before the imports, which take about a second)
from __future__ import annotations

from hf_summary import _early_signals

if __name__ == "__main__":
    _early_signals.hold()

import argparse
import contextlib
import logging
import queue
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from hf_summary._arguments import DEFAULT_GRACE_PERIOD_S
from hf_summary.exit_status import ExitStatus
from hf_summary.hub import BUCKET
from hf_summary.journal import Journal, JournalError, LeaseOwner
from hf_summary.uploader import protocol
from hf_summary.uploader.drain import EOF, Uploader
from hf_summary.uploader.environment import configure_logging, prepare_process
from hf_summary.uploader.hostshare import HostShare, shared_pushes_enabled
from hf_summary.uploader.preemption import Preemption
from hf_summary.uploader.pusher import Pusher

logger = logging.getLogger("hf_summary")


def _read_requests(stream: IO[str], wakeups: queue.Queue, closing: threading.Event) -> None:
    """The trainer's lines, onto the drain loop's queue; `closing` is set on `close` or end of file."""
    for line in stream:
        wakeups.put(line.strip())
        if protocol.decode(line)[0] == protocol.CLOSE:
            closing.set()
    closing.set()
    wakeups.put(EOF)


@contextlib.contextmanager
def sharing(pusher: Pusher, owner: LeaseOwner) -> Iterator[None]:
    """Share pushes with this host's other uploaders to the same repo branch (see
    `hostshare`) while the block runs, unless turned off or pushing to a bucket."""
    if pusher.settings.repo_type == BUCKET or not shared_pushes_enabled():
        yield
        return
    share = HostShare(pusher.settings, owner, pusher.journal.logdir)
    try:
        share.join()
    except OSError as exc:
        logger.warning("cannot share pushes with this host's other uploaders (%s); pushing alone", exc)
        yield
        return
    pusher.share = share
    try:
        yield
    finally:
        share.leave()


def main(argv: list[str] | None = None) -> ExitStatus:
    parser = argparse.ArgumentParser(prog="python -m hf_summary.uploader", description=__doc__)
    parser.add_argument("logdir", type=Path)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--parent-create-time", type=float, required=True)
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument("--grace-period", type=float, default=DEFAULT_GRACE_PERIOD_S)
    parser.add_argument("--reverse-fd", type=int, default=None)
    args = parser.parse_args(argv)
    configure_logging(args.logdir)
    wakeups: queue.Queue = queue.Queue()
    preemption = Preemption(args.grace_period, wakeups)
    for signum in _early_signals.STOP_SIGNALS:  # from now on a stop signal means "push now", never "die"
        signal.signal(signum, preemption.on_signal)
    _early_signals.replay(preemption.on_signal)
    token = protocol.read_token(sys.stdin)
    closing = threading.Event()
    threading.Thread(target=_read_requests, args=(sys.stdin, wakeups, closing), daemon=True).start()
    scratch = prepare_process(args.logdir)
    try:
        with Journal(args.logdir, create=False) as journal:
            settings = journal.load_settings()
            if settings is None:
                logger.error("journal of %s has no settings; nothing to push", args.logdir)
                return ExitStatus.FAILED
            pusher = Pusher.open(journal, settings, token)
            uploader = Uploader(
                pusher,
                parent=(args.parent_pid, args.parent_create_time),
                drain_timeout=args.drain_timeout,
                wakeups=wakeups,
                closing=closing,
                preemption=preemption,
                reverse_fd=args.reverse_fd,
            )
            with sharing(pusher, uploader.owner):
                return uploader.run()
    except JournalError as exc:
        logger.error("cannot use the journal of %s: %s", args.logdir, exc)
        return ExitStatus.FAILED
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
