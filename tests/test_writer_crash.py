"""A trainer that dies (SIGKILL, SIGTERM) loses nothing: its uploader seals the tails and pushes them."""

from __future__ import annotations

import contextlib
import random
import signal

import pytest
from helpers import event_keys, hub_events, kill_uploaders, run_script, uploader_processes, wait_until
from huggingface_hub.errors import BucketNotFoundError

TRAINER = """
    import os, signal, sys, time
    import numpy as np
    from hf_summary import HFSummaryWriter

    if os.environ.get("OWN_HANDLER"):
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(3))
    writer = HFSummaryWriter(os.environ["REPO"], logdir=os.environ["LOGDIR"], commit_every=0.02,
                             repo_type=os.environ.get("REPO_TYPE") or None)
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


def _assert_everything_reaches_the_hub(hub, repo_id, tmp_path, logdir, last_step: int, target: str) -> None:
    """Every acknowledged step reaches the Hub within 30 s with no restart, the uploader exits, and the Hub's
    copy (repo or bucket) equals the logdir's event files."""
    folder = f"tensorboard/{logdir.name}"

    def on_hub() -> set[tuple]:
        try:
            return hub_events(hub, repo_id, tmp_path, path_in_repo=folder, repo_type=target)
        except BucketNotFoundError:  # not created yet
            return set()

    wait_until(
        lambda: set(range(last_step + 1)) <= _scalar_steps(on_hub()),
        timeout=30,
        interval=1,
        message="every acknowledged step on the Hub",
    )
    wait_until(lambda: not uploader_processes(logdir), timeout=30, message="the uploader to exit")
    assert on_hub() == event_keys(logdir)


@contextlib.contextmanager
def _trainer(env: dict[str, str], tmp_path, logdir):
    proc = run_script(TRAINER, {"LOGDIR": str(logdir), **env}, tmp_path)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        kill_uploaders(logdir)


@pytest.fixture(params=["model", "bucket"])
def target(request) -> str:
    return request.param


@pytest.mark.parametrize("seed", [1, 2])
def test_sigkill_of_the_trainer_loses_nothing(tmp_path, hub, writer_env, repo_id, seed, target):
    logdir = tmp_path / "killed"
    with _trainer({"REPO": repo_id, "REPO_TYPE": target}, tmp_path, logdir) as proc:
        last = _run_until(proc, random.Random(seed).randint(100, 1500))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        _assert_everything_reaches_the_hub(hub, repo_id, tmp_path, logdir, last, target)


@pytest.mark.parametrize(("own_handler", "expected_status"), [(False, -signal.SIGTERM), (True, 3)])
def test_sigterm_pushes_and_chains_to_the_previous_handler(tmp_path, hub, writer_env, repo_id, own_handler,
                                                            expected_status, target):
    logdir = tmp_path / "terminated"
    env = {"REPO": repo_id, "REPO_TYPE": target, **({"OWN_HANDLER": "1"} if own_handler else {})}
    with _trainer(env, tmp_path, logdir) as proc:
        last = _run_until(proc, 300)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == expected_status
        _assert_everything_reaches_the_hub(hub, repo_id, tmp_path, logdir, last, target)
