"""Start the uploader child and own the two pipes between it and the trainer (trainer side; the words on them
are `hf_summary.uploader.protocol`'s).

The child is a fresh interpreter (never a fork of the trainer) in its own session, so a Ctrl-C or a job-wide
SIGTERM to the trainer's process group does not cut its final push short.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from hf_summary.uploader import protocol

logger = logging.getLogger("hf_summary")

_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent.parent)


def child_environment() -> dict[str, str]:
    """This process's environment, with this copy of hf_summary first on `PYTHONPATH`: a child started with
    `python -m hf_summary...` runs the same code as its parent, wherever that was imported from."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH")) if p)
    return env


class UploaderProcess:
    """Handle on a running uploader child. Sending never blocks the trainer.

    `on_seal` runs on the reverse channel's reader thread whenever the uploader asks for a seal.
    """

    def __init__(
        self,
        logdir: Path,
        *,
        token: str | None,
        drain_timeout: float,
        grace_period: float,
        on_seal: Callable[[], None],
    ):
        me = psutil.Process()
        reverse_read, reverse_write = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "hf_summary.uploader",
                    str(logdir),
                    "--parent-pid",
                    str(me.pid),
                    "--parent-create-time",
                    repr(me.create_time()),
                    "--drain-timeout",
                    repr(drain_timeout),
                    "--grace-period",
                    repr(grace_period),
                    "--reverse-fd",
                    str(reverse_write),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
                env=child_environment(),
                close_fds=True,
                pass_fds=(reverse_write,),
            )
        except BaseException:
            os.close(reverse_read)
            raise
        finally:
            os.close(reverse_write)
        self.pid = self._proc.pid
        # Re-entrant: a signal handler may send (or wait) while the code it interrupted was doing the same.
        self._send_lock = threading.RLock()
        self._answers = threading.Condition(threading.RLock())
        self._requested = 0
        self._drained = 0
        self._listening = True
        self._on_seal = on_seal
        self._send(protocol.token_line(token), "the token")
        os.set_blocking(self._proc.stdin.fileno(), False)
        threading.Thread(
            target=self._listen, args=(reverse_read,), name="hf-summary-uploader-answers", daemon=True
        ).start()

    def _send(self, line: bytes, what: str) -> bool:
        """Write `line` without blocking; `what` names it in the debug log (never the line: it may hold the
        token)."""
        with self._send_lock:
            stdin = self._proc.stdin
            if stdin is None or stdin.closed:
                return False
            try:
                os.write(stdin.fileno(), line)
                return True
            except (BlockingIOError, BrokenPipeError, OSError) as exc:
                logger.debug("uploader %s did not take %s: %s", self.pid, what, exc)
                return False

    def _request(self, word: str) -> int | None:
        with self._send_lock:
            self._requested += 1
            number = self._requested
            return number if self._send(protocol.encode(word, number), f"{word} {number}") else None

    def request_push(self) -> int | None:
        """Ask for a push of everything sealed so far. Returns the request's number (`None`: not sent)."""
        return self._request(protocol.PUSH)

    def request_preempted_push(self) -> int | None:
        """Tell the uploader the trainer is being stopped: push now, and drain within the grace period."""
        return self._request(protocol.PREEMPT)

    def request_close(self) -> None:
        """Ask for a final push, then exit; closes the pipe (end of file is the exit signal too)."""
        self._send(protocol.encode(protocol.CLOSE), protocol.CLOSE)
        with self._send_lock:
            if self._proc.stdin is not None and not self._proc.stdin.closed:
                self._proc.stdin.close()

    def wait_drained(self, request: int | None, timeout: float) -> bool:
        """Wait up to `timeout` s until the uploader says that what was sealed before `request` is on
        the Hub; returns at once, `False`, when it can no longer say so (`request` not sent, uploader
        gone)."""
        if request is None:
            return False
        deadline = time.monotonic() + timeout
        with self._answers:
            while self._drained < request:
                remaining = deadline - time.monotonic()
                if not self._listening or remaining <= 0:
                    return False
                self._answers.wait(remaining)
            return True

    def _listen(self, fd: int) -> None:
        with os.fdopen(fd, "r", encoding="utf-8", errors="replace") as answers:
            for line in answers:
                word, number = protocol.decode(line)
                if word == protocol.SEAL:
                    try:
                        self._on_seal()
                    except Exception:
                        logger.exception("could not seal the segments the uploader asked for")
                elif word == protocol.DRAINED and number is not None:
                    with self._answers:
                        self._drained = max(self._drained, number)
                        self._answers.notify_all()
        with self._answers:
            self._listening = False
            self._answers.notify_all()

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the child to exit. When it outlives the wait, a daemon thread reaps it
        later so it never lingers as a zombie. Returns whether it exited."""
        try:
            self._proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            threading.Thread(target=self._proc.wait, name="hf-summary-reaper", daemon=True).start()
            return False

    def is_running(self) -> bool:
        return self._proc.poll() is None
