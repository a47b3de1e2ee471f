"""Both TensorBoard backends (the Python loader and rustboard) show every step of a rolled run."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from helpers import wait_until

from hf_summary import HFSummaryWriter

pytest.importorskip("tensorboard")
pytest.importorskip("tensorboard_data_server")

STEPS = 300


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _scalar_steps(port: int, run: str, tag: str) -> list[int] | None:
    url = f"http://127.0.0.1:{port}/data/plugin/scalars/scalars?run={run}&tag={tag}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return [point[1] for point in json.load(response)]
    except (urllib.error.URLError, ConnectionError, json.JSONDecodeError):
        return None


@pytest.fixture(scope="module")
def rolled_logdir(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("readers") / "run"
    with HFSummaryWriter("alice/readers", logdir=logdir, commit_every=60, handle_sigterm=False,
                         close_timeout=0, drain_timeout=0) as writer:
        for step in range(STEPS):
            writer.add_scalar("loss", float(step), step)
            writer.add_scalars("pair", {"a": float(step)}, step)
            if step % 60 == 59:
                writer.push_to_hub(blocking=False)
    return logdir


@pytest.mark.parametrize("load_fast", ["true", "false"])
def test_tensorboard_shows_every_step(rolled_logdir, load_fast, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the logdir is only read here
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(rolled_logdir), "--host", "127.0.0.1",
         "--port", str(port), f"--load_fast={load_fast}", "--samples_per_plugin", "scalars=100000",
         "--reload_interval", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        expected = list(range(STEPS))
        wait_until(lambda: _scalar_steps(port, ".", "loss") == expected, timeout=60, interval=0.5,
                   message=f"tensorboard --load_fast={load_fast} to show steps 0-{STEPS - 1}")
        assert _scalar_steps(port, "pair/a", "pair") == expected
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
