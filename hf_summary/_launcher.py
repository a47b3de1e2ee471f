"""Start the uploader child and talk to it over its stdin pipe (trainer side).

The child is a fresh interpreter (never a fork of the trainer) in its own session, so a Ctrl-C or a job-wide
SIGTERM to the trainer's process group does not cut its final push short. The token travels as the first
line on the pipe, never in argv or the environment. Later lines are commands (``push``, ``close``); end of
file means the trainer is gone.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import psutil

logger = logging.getLogger("hf_summary")

_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)


class UploaderProcess:
    """Handle on a running uploader child. Sending never blocks the trainer."""

    def __init__(self, logdir: Path, *, token: str | None, drain_timeout: float):
        me = psutil.Process()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH")) if p)
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
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
            close_fds=True,
        )
        self.pid = self._proc.pid
        self._send_lock = threading.Lock()
        self._send(json.dumps({"token": token}))
        os.set_blocking(self._proc.stdin.fileno(), False)

    def _send(self, line: str) -> None:
        with self._send_lock:
            stdin = self._proc.stdin
            if stdin is None or stdin.closed:
                return
            try:
                os.write(stdin.fileno(), (line + "\n").encode())
            except (BlockingIOError, BrokenPipeError, OSError) as exc:
                logger.debug("uploader %s did not take %r: %s", self.pid, line, exc)

    def request_push(self) -> None:
        """Ask for a push of everything sealed so far."""
        self._send("push")

    def request_close(self) -> None:
        """Ask for a final push, then exit; closes the pipe (end of file is the exit signal too)."""
        self._send("close")
        with self._send_lock:
            if self._proc.stdin is not None and not self._proc.stdin.closed:
                self._proc.stdin.close()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the child to exit. When it outlives the wait, a daemon thread reaps it
        later so it never lingers as a zombie. Returns whether it exited."""
        try:
            self._proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            threading.Thread(target=self._proc.wait, name="hf-summary-reaper", daemon=True).start()
            return False

    def is_running(self) -> bool:
        return self._proc.poll() is None
