"""A logdir on a filesystem two hosts see (two bindfs mounts, each used from its own UTS + PID namespace; see
tests/twohosts.py), in both lock modes: an offline writer on one host, `hf-summary sync` from the other during
the run and after it. Nothing is lost, nothing is pushed twice, no sync fails, and the first sync after the
writer closed pushes the rest and exits 0."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
from helpers import download_repo, wait_until
from trainer_kit import hub_env
from twohosts import LOCK_MODES, needs_two_hosts, two_hosts

from hf_summary.verify import iter_events

pytestmark = needs_two_hosts

# An offline trainer logging ~240 steps/s for SECONDS, sealing a segment every 1.2 s, then closing.
WRITER = """
    import json, os, time
    from hf_summary import HFSummaryWriter

    writer = HFSummaryWriter(os.environ["REPO"], logdir=os.environ["LOGDIR"], commit_every=0.02)
    print(json.dumps({"event": "ready"}), flush=True)
    step, end = 0, time.monotonic() + float(os.environ["SECONDS"])
    while time.monotonic() < end:
        writer.add_scalar("loss", step * 0.5, step)
        step += 1
        time.sleep(1 / 240)
    writer.close()
    print(json.dumps({"event": "closed", "steps": step}), flush=True)
"""


def hub_step_counts(hub, repo_id: str, dest: Path, folder: str) -> Counter:
    """How many times each ``loss`` step is in the repo's copy of ``folder``."""
    root = download_repo(hub.endpoint, hub.token(), repo_id, dest) / folder
    return Counter(event.step for _, event in iter_events(root) for value in event.summary.value
                   if value.tag == "loss")


def start_writer(host, logdir: Path, env: dict[str, str], seconds: float) -> subprocess.Popen:
    writer = host.popen(sys.executable, "-c", textwrap.dedent(WRITER),
                        env={**env, "LOGDIR": str(logdir), "SECONDS": str(seconds), "HF_HUB_OFFLINE": "1"},
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert json.loads(writer.stdout.readline())["event"] == "ready", writer.stderr.read()
    return writer


@pytest.mark.parametrize("locks", LOCK_MODES)
def test_sync_from_another_host_during_and_after_an_offline_run_loses_nothing(tmp_path, hub, repo_id, locks):
    env = {**hub_env(hub), "REPO": repo_id}
    with two_hosts(tmp_path, locks) as hosts:
        writer = start_writer(hosts.one, hosts.one.path("runs/job"), env, seconds=15)
        statuses = []
        while writer.poll() is None:
            sync = hosts.two.cli("sync", str(hosts.two.path("runs")), env=env)
            assert sync.returncode in (0, 1), sync.stdout + sync.stderr
            statuses.append(sync.returncode)
            time.sleep(2)
        stdout, stderr = writer.communicate(timeout=60)
        assert writer.returncode == 0, stderr
        steps = json.loads(stdout.splitlines()[-1])["steps"]
        final = hosts.two.cli("sync", str(hosts.two.path("runs")), env=env)
        assert final.returncode == 0, final.stdout + final.stderr
        assert len(statuses) >= 3
        counts = hub_step_counts(hub, repo_id, tmp_path / "hub", "tensorboard/job")
        assert set(counts) == set(range(steps)), sorted(set(range(steps)) ^ set(counts))[:20]
        assert set(counts.values()) == {1}, "a step is on the Hub more than once"
        wait_until(lambda: hosts.one.pids() == [hosts.one.init_pid], 10, message="host one's processes to end")
