"""A logdir on a filesystem two hosts see (two bindfs mounts, each used from its own UTS + PID namespace; see
tests/twohosts.py), in both lock modes: an offline writer on one host, `hf-summary sync` from the other during
the run and after it. Nothing is lost, nothing is pushed twice, no sync fails, and the first sync after the
writer closed pushes the rest and exits 0."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest
from helpers import download_repo, wait_until
from trainer_kit import hub_env
from twohosts import LOCK_MODES, needs_two_hosts, two_hosts

from hf_summary.verify import iter_events

pytestmark = needs_two_hosts

# An offline trainer logging ~240 steps/s for SECONDS (saying so every 50th step), sealing a segment every 1.2 s,
# then closing.
WRITER = """
    import json, os, time
    from hf_summary import HFSummaryWriter

    writer = HFSummaryWriter(os.environ["REPO"], logdir=os.environ["LOGDIR"], commit_every=0.02)
    print(json.dumps({"event": "ready"}), flush=True)
    step, end = 0, time.monotonic() + float(os.environ["SECONDS"])
    while time.monotonic() < end:
        writer.add_scalar("loss", step * 0.5, step)
        if step % 50 == 0:
            print(json.dumps({"event": "step", "step": step}), flush=True)
        step += 1
        time.sleep(1 / 240)
    writer.close()
    print(json.dumps({"event": "closed", "steps": step}), flush=True)
"""


def step_counts(root: Path) -> Counter:
    """How many times each ``loss`` step is in the event files under ``root``."""
    return Counter(event.step for _, event in iter_events(root) for value in event.summary.value
                   if value.tag == "loss")


def hub_step_counts(hub, repo_id: str, dest: Path, folder: str) -> Counter:
    """How many times each ``loss`` step is in the repo's copy of ``folder``."""
    return step_counts(download_repo(hub.endpoint, hub.token(), repo_id, dest) / folder)


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
        assert "database is locked" not in stderr
        final = hosts.two.cli("sync", str(hosts.two.path("runs")), env=env)
        assert final.returncode == 0, final.stdout + final.stderr
        assert len(statuses) >= 3
        counts = hub_step_counts(hub, repo_id, tmp_path / "hub", "tensorboard/job")
        assert set(counts) == set(range(steps)), sorted(set(range(steps)) ^ set(counts))[:20]
        assert set(counts.values()) == {1}, "a step is on the Hub more than once"
        wait_until(lambda: hosts.one.pids() == [hosts.one.init_pid], 10, message="host one's processes to end")


@pytest.mark.parametrize("locks", LOCK_MODES)
def test_the_writers_host_lost_mid_run_then_syncs_from_the_other_push_every_event_once(tmp_path, hub, repo_id, locks):
    env = {**hub_env(hub), "REPO": repo_id}
    with two_hosts(tmp_path, locks) as hosts:
        writer = start_writer(hosts.one, hosts.one.path("runs/job"), env, seconds=600)
        acked = 0
        while acked < 1500:  # several segments sealed, one open
            acked = json.loads(writer.stdout.readline())["step"]
        during = hosts.two.cli("sync", str(hosts.two.path("runs")), env=env)
        assert during.returncode == 1 and during.stdout.startswith("WRITING"), during.stdout + during.stderr
        assert "pushed 0 segment(s)" not in during.stdout

        hosts.one.kill()  # the node is lost, with every process on it
        assert hosts.one.pids() == []
        still = hosts.two.cli("sync", str(hosts.two.path("runs")), env=env)  # its counter stopped only just now
        assert still.returncode == 1 and still.stdout.startswith("WRITING"), still.stdout + still.stderr
        final = hosts.two.cli("sync", "--take-over", str(hosts.two.path("runs")), env=env)  # known gone
        assert final.returncode == 0, final.stdout + final.stderr
        again = hosts.two.cli("sync", str(hosts.two.path("runs")), env=env)
        assert again.returncode == 0 and "pushed 0 segment(s)" in again.stdout, again.stdout + again.stderr

        on_disk = step_counts(hosts.backing / "runs" / "job")  # every record that reached the filesystem
        assert set(range(acked + 1)) <= set(on_disk)
        assert hub_step_counts(hub, repo_id, tmp_path / "hub", "tensorboard/job") == on_disk
        assert set(on_disk.values()) == {1}


# A writer hf-summary does not control: tensorboardX's own, flushing every second.
FOREIGN_WRITER = """
    import json, os, time
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(os.environ["LOGDIR"], flush_secs=1)
    print(json.dumps({"event": "ready"}), flush=True)
    step, end = 0, time.monotonic() + float(os.environ["SECONDS"])
    while time.monotonic() < end:
        writer.add_scalar("loss", step * 0.5, step)
        step += 1
        time.sleep(1 / 240)
    writer.close()
    print(json.dumps({"event": "closed", "steps": step}), flush=True)
"""


def test_watch_from_another_host_pushes_a_foreign_writers_every_event_once(tmp_path, hub, repo_id):
    env = hub_env(hub)
    with two_hosts(tmp_path, "local") as hosts:
        logdir = "runs/keras"
        writer = hosts.one.popen(sys.executable, "-c", textwrap.dedent(FOREIGN_WRITER),
                                 env={"LOGDIR": str(hosts.one.path(logdir)), "SECONDS": "10"},
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert json.loads(writer.stdout.readline())["event"] == "ready", writer.stderr.read()
        watcher = hosts.two.popen(sys.executable, "-m", "hf_summary", "watch", str(hosts.two.path(logdir)),
                                  "--repo-id", repo_id, "--commit-every", "0.02", "--quiet", env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        stdout, stderr = writer.communicate(timeout=120)
        assert writer.returncode == 0, stderr
        steps = json.loads(stdout.splitlines()[-1])["steps"]
        (watch,) = psutil.Process(watcher.pid).children()  # nsenter's child: the watcher, in host two's namespace
        watch.send_signal(signal.SIGINT)  # the job ended: push what is left and exit
        out, err = watcher.communicate(timeout=120)
        assert watcher.returncode == 0, out + err
        assert "%|" not in err  # --quiet (and no terminal): no progress bar
        counts = hub_step_counts(hub, repo_id, tmp_path / "hub", "tensorboard/keras")
        assert counts == Counter(range(steps))
        wait_until(lambda: hosts.two.pids() == [hosts.two.init_pid], 30, message="host two's processes to end")


# One job of a SLURM array: waits for the array's start (a file appearing), then creates its writer, logs, closes.
ARRAY_JOB = """
    import json, os, time
    start = os.environ["START"]
    while not os.path.exists(start):
        time.sleep(0.005)
    from hf_summary import HFSummaryWriter

    writer = HFSummaryWriter(os.environ["REPO"], logdir=os.environ["LOGDIR"], commit_every=0.02)
    for step in range(int(os.environ["STEPS"])):
        writer.add_scalar("loss", step * 0.5, step)
        time.sleep(0.01)
    writer.close()
    print(json.dumps({"event": "closed"}), flush=True)
"""
ARRAY_SIZE, ARRAY_STEPS = 64, 300


def test_a_slurm_array_of_64_writers_starting_at_once_while_another_host_reads_and_syncs(tmp_path, hub, repo_id):
    env = {**hub_env(hub), "REPO": repo_id, "HF_HUB_OFFLINE": "1", "STEPS": str(ARRAY_STEPS)}
    with two_hosts(tmp_path, "local") as hosts:
        (hosts.backing / "array").mkdir()
        start = tmp_path / "start"
        jobs = [hosts.one.popen(sys.executable, "-c", textwrap.dedent(ARRAY_JOB),
                                env={**env, "START": str(start), "LOGDIR": str(hosts.one.path(f"array/job-{n:02d}"))},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for n in range(ARRAY_SIZE)]
        start.touch()  # every job creates its writer now
        wait_until(lambda: list((hosts.backing / "array").glob("*/.hf_summary/journal.db")), 120,
                   message="the first journal")  # before it, status and sync rightly say there is no run
        parent = str(hosts.two.path("array"))
        online = {key: value for key, value in env.items() if key != "HF_HUB_OFFLINE"}
        outputs = []
        while any(job.poll() is None for job in jobs):
            status = hosts.two.cli("status", parent, "--json", env={}, timeout=900)  # 64 runs, a loaded machine
            sync = hosts.two.cli("sync", "--quiet", parent, env=online, timeout=900)
            outputs += [status.stdout + status.stderr, sync.stdout + sync.stderr]
            errors = [run["error"] for run in json.loads(status.stdout) if "error" in run]
            assert all("is not initialised" in error for error in errors), errors  # only writers just starting
            assert sync.returncode in (0, 1), [line for line in sync.stdout.splitlines() if "FAILED" in line]
        for job in jobs:
            stdout, stderr = job.communicate(timeout=60)
            assert job.returncode == 0 and '"closed"' in stdout, stderr
            outputs.append(stderr)
        final = hosts.two.cli("sync", "--quiet", parent, env=online, timeout=900)  # 64 runs: pushes, verifications
        assert final.returncode == 0, final.stdout + final.stderr
        assert f"Total: {ARRAY_SIZE} run(s), {ARRAY_SIZE} on the Hub" in final.stdout
        assert not [text for text in outputs if "database is locked" in text]
        hub_copy = download_repo(hub.endpoint, hub.token(), repo_id, tmp_path / "hub") / "tensorboard"
        for n in range(ARRAY_SIZE):
            assert step_counts(hub_copy / f"job-{n:02d}") == Counter(range(ARRAY_STEPS)), n
        wait_until(lambda: hosts.one.pids() == [hosts.one.init_pid], 30, message="host one's processes to end")
