"""`sync`, `recover` and `watch` draw progress bars (huggingface_hub's, fed by hf_xet's uploads) only when stderr is
a terminal; `--quiet` silences them and the progress lines, never the results or the errors."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading

import pytest
from helpers import REPO_ROOT
from trainer_kit import fake_dead_run, hub_env

BAR = "Processing Files"  # the label of huggingface_hub's bar for a Xet upload


def run_on_terminal(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """``hf-summary ARGS`` with stderr on a pseudo-terminal (stdout piped): exit status, stdout, terminal text."""
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "hf_summary", *args], stdout=subprocess.PIPE, stderr=follower,
                               env={**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)}, text=True)
    os.close(follower)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the last writer closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        stdout, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(10)
        os.close(leader)
    return process.returncode, stdout, b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize("command", ["sync", "recover"])
def test_progress_bars_only_on_a_terminal_and_never_with_quiet(tmp_path, hub, repo_name, command):
    env = hub_env(hub)
    runs = {how: tmp_path / how for how in ("terminal", "piped", "quiet")}
    for how, logdir in runs.items():
        fake_dead_run(logdir, endpoint=hub.endpoint, repo_id=f"alice/{repo_name}-{how}")

    status, stdout, terminal = run_on_terminal(command, str(runs["terminal"]), env=env)
    assert status == 0 and BAR in terminal, terminal

    piped = subprocess.run([sys.executable, "-m", "hf_summary", command, str(runs["piped"])], capture_output=True,
                           text=True, env={**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)}, timeout=120)
    assert piped.returncode == 0, piped.stdout + piped.stderr
    assert BAR not in piped.stderr and "%|" not in piped.stderr, piped.stderr
    assert f"hf-summary {command}: " in piped.stderr  # the progress lines stay

    status, stdout, terminal = run_on_terminal(command, "--quiet", str(runs["quiet"]), env=env)
    assert status == 0, stdout + terminal
    assert BAR not in terminal and f"hf-summary {command}: " not in terminal, terminal
    assert "OK" in stdout  # the result stays
