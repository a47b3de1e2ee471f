"""Jobs on one host pushing to one repo and branch share their pushes (hf_summary/hostshare.py): one commit per
tick between them, every job's events on the Hub, and the loss of the uploader that was pushing costs
nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from helpers import REPO_ROOT, download_repo, uploader_processes, wait_until
from trainer_kit import api, hub_env

from hf_summary.verify import event_keys

JOBS = 4
TICK_S = 1.0
LOG_FOR_S = 10.0

# Logs a scalar every 10 ms for LOG_FOR_S seconds at a 1 s tick, then closes (which waits for the final push).
JOB = f"""
    import os, time
    from hf_summary import HFSummaryWriter

    writer = HFSummaryWriter(os.environ["REPO"], logdir=os.environ["LOGDIR"], commit_every={TICK_S / 60})
    print("ready", flush=True)
    step, until = 0, time.monotonic() + {LOG_FOR_S}
    while time.monotonic() < until:
        writer.add_scalar("loss", 1.0 / (step + 1), step)
        step += 1
        time.sleep(0.01)
    writer.close()
    print("closed", flush=True)
"""


def _start_jobs(hub, repo_id, tmp_path, **env: str) -> list[subprocess.Popen]:
    full_env = {**os.environ, **hub_env(hub), "REPO": repo_id, "PYTHONPATH": str(REPO_ROOT),
                "HF_SUMMARY_RUNTIME_DIR": str(tmp_path / "runtime"), **env}
    return [subprocess.Popen([sys.executable, "-c", textwrap.dedent(JOB)], stdout=subprocess.PIPE, text=True,
                             env={**full_env, "LOGDIR": str(tmp_path / f"job{k}")}) for k in range(JOBS)]


def _finish(jobs: list[subprocess.Popen]) -> None:
    try:
        for job in jobs:
            out, _ = job.communicate(timeout=120)
            assert "closed" in out, out
    finally:
        for job in jobs:
            if job.poll() is None:
                job.kill()
                job.wait()


def _assert_every_event_on_the_hub(hub, repo_id, tmp_path) -> None:
    repo = download_repo(hub.endpoint, hub.token(), repo_id, tmp_path / "repo")
    for k in range(JOBS):
        logdir = tmp_path / f"job{k}"
        assert event_keys(repo / "tensorboard" / logdir.name) == event_keys(logdir)


def _pushes(repo_id, hub) -> list:
    """The repo's push commits (not the card's tag), oldest first."""
    if not api(hub).repo_exists(repo_id):
        return []
    return [commit for commit in reversed(api(hub).list_repo_commits(repo_id)) if commit.title.startswith("hf-summary:")]


def test_jobs_on_one_host_make_one_commit_per_tick_between_them(tmp_path, hub, repo_id):
    jobs = _start_jobs(hub, repo_id, tmp_path)
    _finish(jobs)
    _assert_every_event_on_the_hub(hub, repo_id, tmp_path)
    pushes = _pushes(repo_id, hub)
    span = (pushes[-1].created_at - pushes[0].created_at).total_seconds()
    # one commit per tick between them, plus each job's urgent last push when it closes (alone: one per tick each)
    assert len(pushes) <= span / TICK_S + 1 + JOBS, f"{len(pushes)} pushes in {span:.1f} s"
    assert any(" other run(s) of this host" in push.title for push in pushes)


def test_an_uploader_dying_loses_nothing(tmp_path, hub, repo_id):
    """SIGKILL a member uploader while the jobs log (it may hold the lock, mid-push): the others go on pushing,
    its trainer starts a new one at its next tick, and every job's events reach the Hub."""
    jobs = _start_jobs(hub, repo_id, tmp_path)
    try:
        wait_until(lambda: len(_pushes(repo_id, hub)) >= 2, 60, interval=0.2, message="shared pushes to start")
        (victim,) = uploader_processes(tmp_path / "job0")
        victim.send_signal(signal.SIGKILL)
        pushes = len(_pushes(repo_id, hub))
        wait_until(lambda: len(_pushes(repo_id, hub)) > pushes, 30, interval=0.2, message="pushes to go on")
    finally:
        _finish(jobs)
    _assert_every_event_on_the_hub(hub, repo_id, tmp_path)
