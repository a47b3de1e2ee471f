"""A hyperparameter sweep on spot machines: many jobs log into one repo (a folder each), the Hub's commit budget
is spent, and the whole partition is preempted at once (SIGTERM to every process of every job, SIGKILL 10 s
later, then the nodes and their disks are gone). Nothing logged may be lost: what the final pushes could not
commit waits in a Storage Bucket until `hf-summary settle REPO`, run from anywhere, moves it into the repo.

The Hub's budget (about 128 commits per hour per repo) is scaled down to the scale of the test: 40 commits
per hour, against 8 jobs ticking every 3 s (``commit_every=0.05`` minutes)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from helpers import REPO_ROOT, download_repo, uploader_processes, wait_until
from trainer_kit import api, hub_env, pid_gone

from hf_summary.localhub.testing import LocalHub
from hf_summary.overflow import overflow_bucket
from hf_summary.verify import event_keys

JOBS = 8
COMMIT_LIMIT = 40  # per rolling hour, for the whole repo
SHARED_COMMIT_LIMIT = 10  # what two hosts' shared pushes spend within the run
LOG_FOR_S = 25.0
KILL_AFTER_S = 10.0

# One trial: logs a scalar about every 10 ms into its own logdir, ticking every 3 s, until it is killed.
SWEEP_JOB = """
    import os, time
    from hf_summary import HFSummaryWriter

    writer = HFSummaryWriter(os.environ["REPO"], logdir=os.environ["LOGDIR"], commit_every=0.05)
    print("ready", flush=True)
    step = 0
    while True:
        writer.add_scalar("loss", 1.0 / (step + 1), step)
        step += 1
        time.sleep(0.01)
"""

# A "host": a UTS + PID namespace whose init (this script, PID 1) names the host, starts the jobs it is given
# and stays up (a machine's init does not exit when a job does) until the test kills the namespace.
HOST_INIT = """
    import json, os, socket, subprocess, sys, time
    socket.sethostname(sys.argv[1])
    for logdir in json.loads(sys.argv[2]):
        subprocess.Popen([sys.executable, "-c", os.environ["SWEEP_JOB"]], env={**os.environ, "LOGDIR": logdir})
    while True:
        time.sleep(3600)
"""


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--uts", "--pid", "--fork", "--mount-proc", "true"], capture_output=True)
    return probe.returncode == 0


needs_namespaces = pytest.mark.skipif(
    not _unshare_works(),
    reason="UTS + PID namespaces are not available here (`unshare --uts --pid --fork --mount-proc` failed)",
)


class Sweep:
    """The jobs of a sweep, started directly (one host) or in host namespaces; every process it started is
    SIGKILLed on the way out."""

    def __init__(self, hub: LocalHub, repo_id: str, hosts: dict[str, list[Path]], *, namespaces: bool,
                 env: dict[str, str]):
        env = {**os.environ, **hub_env(hub), "REPO": repo_id, "PYTHONPATH": str(REPO_ROOT),
               "SWEEP_JOB": textwrap.dedent(SWEEP_JOB), **env}
        self.namespaces = namespaces
        self.logdirs = [logdir for logdirs in hosts.values() for logdir in logdirs]
        self.leaders: list[subprocess.Popen] = []
        for host, logdirs in hosts.items():
            if namespaces:
                command = ["unshare", "--uts", "--pid", "--fork", "--mount-proc", "--kill-child",
                           sys.executable, "-c", textwrap.dedent(HOST_INIT), host,
                           "[" + ", ".join(f'"{logdir}"' for logdir in logdirs) + "]"]
                self.leaders.append(subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL))
            else:
                for logdir in logdirs:
                    self.leaders.append(subprocess.Popen([sys.executable, "-c", env["SWEEP_JOB"]],
                                                         env={**env, "LOGDIR": str(logdir)}, stdout=subprocess.DEVNULL))

    def job_processes(self) -> list[psutil.Process]:
        """Every live trainer and uploader of the sweep (the namespaces' inits excluded: they are the machines)."""
        trainers = []
        for leader in self.leaders:
            if leader.poll() is not None:
                continue
            if not self.namespaces:
                trainers.append(psutil.Process(leader.pid))
                continue
            with contextlib.suppress(psutil.Error):
                trainers += [child for init in psutil.Process(leader.pid).children() for child in init.children()]
        return [*trainers, *(p for logdir in self.logdirs for p in uploader_processes(logdir))]

    def preempt(self) -> float | None:
        """SIGTERM to every process of every job at once, SIGKILL to what is left KILL_AFTER_S later (and to the
        hosts). Returns the seconds until all had exited, ``None`` when the SIGKILL was needed."""
        processes = self.job_processes()
        start = time.monotonic()
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGTERM)
        took = None
        while time.monotonic() - start < KILL_AFTER_S:
            if all(pid_gone(process.pid) for process in processes):
                took = time.monotonic() - start
                break
            time.sleep(0.05)
        self.kill()
        return took

    def kill(self) -> None:
        for process in self.job_processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGKILL)
        for leader in self.leaders:
            leader.kill()
            leader.wait(10)

    def __enter__(self) -> Sweep:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()


def _run_sweep_then_lose_the_nodes(tmp_path: Path, hub: LocalHub, repo_id: str, hosts: dict[str, list[Path]], *,
                                   namespaces: bool, shared: bool) -> dict[str, set[tuple]]:
    """Run the sweep, preempt it, then delete every logdir (the nodes are gone). Returns the events each job
    logged (what reached the OS), by its folder in the repo."""
    env = {"HF_SUMMARY_SHARED_PUSHES": "1" if shared else "0", "HF_SUMMARY_RUNTIME_DIR": str(tmp_path / "runtime")}
    with Sweep(hub, repo_id, hosts, namespaces=namespaces, env=env) as sweep:
        wait_until(lambda: all(uploader_processes(logdir) for logdir in sweep.logdirs), 120,
                   message="every job's uploader to start")
        time.sleep(LOG_FOR_S)
        sweep.preempt()
        wait_until(lambda: not any(uploader_processes(logdir) for logdir in sweep.logdirs), 15,
                   message="every uploader to be gone")
    logged = {f"tensorboard/{logdir.name}": event_keys(logdir) for logdir in sweep.logdirs}
    assert all(logged.values()), "a job logged nothing"
    for logdir in sweep.logdirs:
        shutil.rmtree(logdir)
    return logged


def _settle(hub: LocalHub, repo_id: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hf_summary", "settle", repo_id], cwd=cwd,
                          env={**os.environ, **hub_env(hub), "PYTHONPATH": str(REPO_ROOT)},
                          capture_output=True, text=True, timeout=300)


def _assert_settled(tmp_path: Path, hub: LocalHub, repo_id: str, logged: dict[str, set[tuple]]) -> None:
    """While the budget is spent, `hf-summary settle REPO` (from a fresh directory) says so and removes nothing;
    once the Hub takes commits again (here: restarted with a larger budget, as an hour later), it puts every
    logged event in the repo, exactly once, and empties the bucket."""
    fresh = tmp_path / "elsewhere"
    fresh.mkdir()
    spent = _settle(hub, repo_id, fresh)
    assert spent.returncode == 1 and "commit budget" in spent.stdout + spent.stderr, spent.stdout + spent.stderr
    hub.stop()
    hub.commit_limit = 1000
    hub.start()
    settled = _settle(hub, repo_id, fresh)
    assert settled.returncode == 0, settled.stdout + settled.stderr
    assert "Removed:" in settled.stdout, settled.stdout  # the final pushes were parked, and settled now
    _assert_on_hub(tmp_path, hub, repo_id, logged)
    again = _settle(hub, repo_id, fresh)  # nothing left: no commit, and the bucket holds nothing more
    assert again.returncode == 0 and "nothing to settle" in again.stdout, again.stdout + again.stderr
    assert not [entry for entry in api(hub).list_bucket_tree(overflow_bucket(repo_id), recursive=True)
                if entry.type == "file"]


def _assert_on_hub(tmp_path: Path, hub: LocalHub, repo_id: str, logged: dict[str, set[tuple]]) -> None:
    repo = download_repo(hub.endpoint, hub.token(), repo_id, tmp_path / f"repo-{time.monotonic_ns()}")
    on_hub = {folder: event_keys(repo / folder) for folder in logged}
    lost = {folder: len(events - on_hub[folder]) for folder, events in logged.items()}
    assert sum(lost.values()) == 0, f"events lost per job: {lost}"
    assert on_hub == logged


def test_a_preempted_sweep_on_a_spent_commit_budget_loses_nothing(tmp_path, repo_id):
    """Each job pushing on its own (as with huggingface_hub's writer): the budget is spent in seconds, and every
    final push is refused."""
    with LocalHub(commit_limit=COMMIT_LIMIT) as hub:
        hosts = {"node": [tmp_path / f"job{k}" for k in range(JOBS)]}
        logged = _run_sweep_then_lose_the_nodes(tmp_path, hub, repo_id, hosts, namespaces=False, shared=False)
        _assert_settled(tmp_path, hub, repo_id, logged)


def test_a_sweep_sharing_its_pushes_stays_within_the_budget(tmp_path, repo_id):
    """The same sweep with the host's jobs sharing their pushes: one commit per tick between them fits the
    budget, so the final push is committed and nothing needs settling."""
    with LocalHub(commit_limit=COMMIT_LIMIT) as hub:
        hosts = {"node": [tmp_path / f"job{k}" for k in range(JOBS)]}
        logged = _run_sweep_then_lose_the_nodes(tmp_path, hub, repo_id, hosts, namespaces=False, shared=True)
        _assert_on_hub(tmp_path, hub, repo_id, logged)
        assert "nothing to settle" in _settle(hub, repo_id, tmp_path).stdout


@needs_namespaces
def test_a_sweep_over_two_hosts_loses_nothing(tmp_path, repo_id):
    """Two hosts, four jobs each, sharing pushes within each host; a budget two hosts' shared ticks still spend
    (so their final pushes are parked, then settled)."""
    with LocalHub(commit_limit=SHARED_COMMIT_LIMIT) as hub:
        hosts = {host: [tmp_path / host / f"job{host}{k}" for k in range(JOBS // 2)] for host in ("nodea", "nodeb")}
        logged = _run_sweep_then_lose_the_nodes(tmp_path, hub, repo_id, hosts, namespaces=True, shared=True)
        _assert_settled(tmp_path, hub, repo_id, logged)
