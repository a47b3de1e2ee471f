"""Many writers, one repo: eight training processes (one logdir each) push to the same repo through a Hub whose
commit rate limit they hit. They back off on 429 (honouring Retry-After) instead of failing, every event
arrives, and every commit a journal recorded is in the repo's history. (The Hub's window is shortened from an
hour to seconds, so that the limit is hit and Retry-After stays short.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import REPO_ROOT, kill_uploaders
from trainer_kit import api, assert_journal_sound, assert_repo_matches_logdir, hub_env, loss_steps

from hf_summary.journal import Journal
from hf_summary.localhub.testing import LocalHub

WRITERS = 8

WRITER = """
    import json, os, time
    import numpy as np
    from hf_summary import HFSummaryWriter

    writer = HFSummaryWriter(os.environ["REPO"], logdir=os.environ["LOGDIR"], commit_every=1 / 60, close_timeout=300)
    rng = np.random.default_rng(int(os.environ["SEED"]))
    deadline = time.monotonic() + float(os.environ["DURATION"])
    step = 0
    while time.monotonic() < deadline:
        writer.add_scalar("loss", step * 0.5, step)
        if step % 25 == 0:
            writer.add_histogram("weights", rng.normal(size=100), step)
        step += 1
        time.sleep(0.01)
    writer.close()
    print(json.dumps({"steps": step}), flush=True)
"""

def _run_writers(hub, repo_id: str, tmp_path: Path, duration: float, timeout: float) -> dict[Path, int]:
    """Start the writers together, wait for all; returns logdir -> steps logged."""
    procs = []
    try:
        for n in range(WRITERS):
            logdir = tmp_path / f"writer{n}"
            env = {**os.environ, **hub_env(hub), "PYTHONPATH": str(REPO_ROOT), "REPO": repo_id,
                   "LOGDIR": str(logdir), "SEED": str(n), "DURATION": str(duration)}
            with (tmp_path / f"writer{n}.stderr").open("w") as stderr:
                proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(WRITER)], env=env, cwd=tmp_path,
                                        stdout=subprocess.PIPE, stderr=stderr, text=True)
            procs.append((logdir, proc))
        steps = {}
        for logdir, proc in procs:
            out, _ = proc.communicate(timeout=timeout)
            errors = (tmp_path / f"{logdir.name}.stderr").read_text()
            assert proc.returncode == 0, errors
            steps[logdir] = json.loads(out.strip().splitlines()[-1])["steps"]
        return steps
    finally:
        for logdir, proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()
            kill_uploaders(logdir)


def _check(hub, repo_id: str, tmp_path: Path, steps: dict[Path, int]) -> None:
    commits = {c.commit_id: c.title for c in api(hub).list_repo_commits(repo_id)}
    recorded: set[str] = set()
    rate_limited = 0
    for logdir, count in steps.items():
        assert count > 0
        assert loss_steps(logdir) == set(range(count))
        assert_repo_matches_logdir(hub, repo_id, logdir, tmp_path / "copy" / logdir.name)
        assert_journal_sound(logdir)
        with Journal(logdir, create=False) as journal:
            recorded |= {row.commit_oid for row in journal.segments("committed")}
            errors = journal.history("error", limit=1000)
        assert all(not error["permanent"] for error in errors), errors
        rate_limited += sum("429" in error["message"] for error in errors)
    assert rate_limited > 0, "the commit limit was never hit: lower it"
    assert recorded <= commits.keys()  # every commit a journal recorded is in the repo's history
    assert {oid for oid, title in commits.items() if title.startswith("hf-summary:")} <= recorded  # and no other


def test_eight_writers_share_a_rate_limited_repo(tmp_path, repo_id):
    with LocalHub(commit_limit=4, commit_window_s=5) as hub:
        steps = _run_writers(hub, repo_id, tmp_path, duration=6, timeout=150)
        _check(hub, repo_id, tmp_path, steps)


@pytest.mark.slow
def test_eight_writers_for_minutes_under_the_limit_and_flaky_commits(tmp_path, repo_id):
    with LocalHub(commit_limit=10, commit_window_s=20) as hub:
        hub.set_faults([{"method": "POST", "path": "/commit/", "status": 503, "probability": 0.1}])
        steps = _run_writers(hub, repo_id, tmp_path, duration=150, timeout=600)
        hub.clear_faults()
        _check(hub, repo_id, tmp_path, steps)
