"""A trainer that dies (SIGKILL, SIGTERM) loses nothing: its uploader seals the tails and pushes them."""

from __future__ import annotations

import random
import signal

import pytest
from helpers import event_keys, hub_events, kill_uploaders, run_script, uploader_processes, wait_until

TRAINER = """
    import os, signal, sys, time
    import numpy as np
    from hf_summary import HFSummaryWriter

    if os.environ.get("OWN_HANDLER"):
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(3))
    writer = HFSummaryWriter(os.environ["REPO"], logdir=os.environ["LOGDIR"], commit_every=0.02)
    rng = np.random.default_rng(0)
    step = 0
    while True:
        writer.add_scalar("loss", step * 0.5, step)
        if step % 10 == 0:
            writer.add_histogram("weights", rng.normal(size=100), step)
        print(step, flush=True)
        step += 1
        time.sleep(0.002)
"""


def _run_until(proc, steps: int) -> int:
    """Read acknowledged steps until ``steps`` were logged; returns the last step acknowledged."""
    last = -1
    for line in proc.stdout:
        last = int(line)
        if last >= steps:
            return last
    raise AssertionError(f"trainer ended early: {proc.stderr.read()}")


def _scalar_steps(keys: set[tuple]) -> set[int]:
    return {key[2] for key in keys if key[1] == "loss" and key[0] == ""}


@pytest.mark.parametrize("seed", [1, 2])
def test_sigkill_of_the_trainer_loses_nothing(tmp_path, hub, writer_env, repo_id, seed):
    logdir = tmp_path / "killed"
    proc = run_script(TRAINER, {"REPO": repo_id, "LOGDIR": str(logdir)}, tmp_path)
    try:
        last = _run_until(proc, random.Random(seed).randint(100, 1500))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_until(
            lambda: set(range(last + 1)) <= _scalar_steps(
                hub_events(hub, repo_id, tmp_path, path_in_repo="tensorboard/killed")
            ),
            timeout=30,
            interval=1,
            message="every acknowledged step on the Hub",
        )
        wait_until(lambda: not uploader_processes(logdir), timeout=30, message="the uploader to exit")
        assert hub_events(hub, repo_id, tmp_path, path_in_repo="tensorboard/killed") == event_keys(logdir)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        kill_uploaders(logdir)


@pytest.mark.parametrize(("own_handler", "expected_status"), [(False, -signal.SIGTERM), (True, 3)])
def test_sigterm_pushes_and_chains_to_the_previous_handler(tmp_path, hub, writer_env, repo_id, own_handler,
                                                            expected_status):
    logdir = tmp_path / "terminated"
    env = {"REPO": repo_id, "LOGDIR": str(logdir), **({"OWN_HANDLER": "1"} if own_handler else {})}
    proc = run_script(TRAINER, env, tmp_path)
    try:
        last = _run_until(proc, 300)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == expected_status
        wait_until(
            lambda: set(range(last + 1)) <= _scalar_steps(
                hub_events(hub, repo_id, tmp_path, path_in_repo="tensorboard/terminated")
            ),
            timeout=30,
            interval=1,
            message="every acknowledged step on the Hub",
        )
        wait_until(lambda: not uploader_processes(logdir), timeout=30, message="the uploader to exit")
        assert hub_events(hub, repo_id, tmp_path, path_in_repo="tensorboard/terminated") == event_keys(logdir)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        kill_uploaders(logdir)
