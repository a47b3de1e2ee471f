"""Test kit for `hf-summary view`: run it (or `demo --view`) in a subprocess and read TensorBoard's HTTP API."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
from helpers import REPO_ROOT, wait_until

START_S = 150.0  # TensorBoard's first start on a busy 2-core machine
STOP_S = 15.0


class ViewProcess:
    """`hf-summary <args>` in a subprocess, its output lines collected by a thread (context manager)."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hf_summary", *args],
            env={**env, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"},
            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))

    def _drain(self) -> None:
        while True:
            try:
                self.lines.append(self._queue.get_nowait())
            except queue.Empty:
                return

    def line(self, prefix: str, timeout: float = START_S) -> str:
        """The first output line starting with ``prefix``, waiting for it (not past the process's exit)."""

        def found() -> str | None:
            exited = self.process.poll() is not None
            self._drain()
            line = next((line for line in self.lines if line.startswith(prefix)), None)
            if line is None and exited and self._queue.empty():
                raise AssertionError(f"exited ({self.process.returncode}) with no line {prefix!r}: {self.lines}")
            return line

        try:
            return wait_until(found, timeout, interval=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; output so far: {self.lines}") from None

    def tensorboard(self) -> tuple[str, int]:
        """(TensorBoard's URL, its pid) from the `TensorBoard at URL (pid N)` line."""
        words = self.line("TensorBoard at ").split()
        return words[2], int(words[4].rstrip(")"))

    def interrupt(self, timeout: float = 30.0) -> int:
        """Ctrl-C (SIGINT to its pid) and wait for it to exit; returns the exit status."""
        self.process.send_signal(signal.SIGINT)
        status = self.process.wait(timeout)
        self._drain()
        return status

    def __enter__(self) -> ViewProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop it as a user would (Ctrl-C: it stops what it started), and kill it if that does not work."""
        if self.process.poll() is None:
            try:
                self.interrupt()
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def alive(process: psutil.Process) -> bool:
    """Whether the process still runs (a zombie does not)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def hub_env(hub, tmp_path: Path, token: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    # Downloads go through Xet, as on the Hub: the local Hub counts one reconstruction per file downloaded.
    env.update(HF_ENDPOINT=hub.endpoint, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_DISABLE_TELEMETRY="1")
    return env | ({"HF_TOKEN": token} if token else {})


def tb_get(url: str, path: str, **query: str) -> object:
    with urllib.request.urlopen(f"{url}{path}?{urllib.parse.urlencode(query)}", timeout=30) as response:
        return json.load(response)


def tb_steps(url: str) -> dict[tuple[str, str], list[int]]:
    """{(run, tag): sorted steps, repeats kept} of every scalar TensorBoard serves."""
    tags = tb_get(url, "data/plugin/scalars/tags")
    return {
        (run, tag): sorted(point[1] for point in tb_get(url, "data/plugin/scalars/scalars", run=run, tag=tag))
        for run, run_tags in tags.items()
        for tag in run_tags
    }


def logged_steps(logdir: Path, run_prefix: str) -> dict[tuple[str, str], list[int]]:
    """The same for the event files under ``logdir``, read record by record; runs are named ``run_prefix/dir``."""
    from hf_summary.verify import iter_events

    steps: dict[tuple[str, str], list[int]] = {}
    for run, event in iter_events(logdir):
        for value in event.summary.value:
            steps.setdefault(("/".join(p for p in (run_prefix, run) if p), value.tag), []).append(event.step)
    return {key: sorted(values) for key, values in steps.items()}
