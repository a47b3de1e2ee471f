"""Sweep benchmark: N jobs log into one repo (a folder each) on a Hub whose commit budget is scaled down, then
the whole partition is preempted (SIGTERM to every process of every job, SIGKILL 10 s later) and the nodes are
gone; ours (the jobs of the one node sharing their pushes), ours with each job pushing on its own (as jobs on
separate nodes do: the overflow bucket takes the refused final pushes) and huggingface_hub's
`HFSummaryWriter`, side by side.

Usage::

    python scripts/bench_sweep.py                       # 8 and 32 jobs, a 40-commit budget, ~10 minutes
    python scripts/bench_sweep.py --jobs 8 --budget 40 --json sweep.json
    python scripts/bench_sweep.py --smoke               # 2 jobs, 5 s of logging

Each job logs a scalar about every 10 ms at `commit_every=0.05` (minutes: a 3 s tick) and prints the step
and time it acknowledged. Figures per writer and number of jobs: commits the repo took, events on the Hub
right after the SIGKILL, events on the Hub later (ours: after `hf-summary settle REPO`, run from elsewhere
once the budget is back; huggingface_hub's writer has nothing to finish later), and the seconds of logging
at risk per job (from the newest event of the job on the Hub to its last acknowledged step; worst job).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import psutil
from benchkit.output import emit
from benchkit.stop import stop_like_a_scheduler
from huggingface_hub import HfApi
from huggingface_hub.utils import disable_progress_bars

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from hf_summary.localhub.testing import LocalHub  # noqa: E402
from hf_summary.verify import iter_events  # noqa: E402

# "ours_alone": ours with each job pushing on its own (HF_SUMMARY_SHARED_PUSHES=0), as jobs on separate nodes do
WRITERS = ("ours", "ours_alone", "huggingface_hub")
KILL_AFTER_S = 10.0
REPO_ID = "alice/sweep"

JOB = """
    import json, os, time
    name, writer_kind = os.environ["JOB_NAME"], os.environ["WRITER"]
    if writer_kind.startswith("ours"):
        from hf_summary import HFSummaryWriter
        writer = HFSummaryWriter(os.environ["REPO"], logdir=os.environ["LOGDIR"], commit_every=0.05)
    else:
        from huggingface_hub import HFSummaryWriter
        writer = HFSummaryWriter(repo_id=os.environ["REPO"], logdir=os.environ["LOGDIR"], commit_every=0.05,
                                 path_in_repo=f"tensorboard/{name}")
    print(json.dumps({"ready": True}), flush=True)
    step, said = 0, 0.0
    while True:
        writer.add_scalar("loss", 1.0 / (step + 1), step)
        now = time.time()
        if now - said > 0.2:
            print(json.dumps({"step": step, "t": now}), flush=True)
            said = now
        step += 1
        time.sleep(0.01)
"""


class Job:
    """One job process; a thread keeps its last acknowledged (step, time)."""

    def __init__(self, writer: str, name: str, root: Path, env: dict[str, str]):
        self.name = name
        self.ready = threading.Event()
        self.last: tuple[int, float] = (-1, 0.0)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(JOB)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, env={**env, "WRITER": writer, "JOB_NAME": name, "LOGDIR": str(root / name),
                            "HF_SUMMARY_SHARED_PUSHES": "0" if writer == "ours_alone" else "1"},
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            message = json.loads(line)
            if message.get("ready"):
                self.ready.set()
            else:
                self.last = (message["step"], message["t"])

    def processes(self) -> list[psutil.Process]:
        with contextlib.suppress(psutil.Error):
            parent = psutil.Process(self.proc.pid)
            return [parent, *parent.children(recursive=True)]
        return []


def _preempt(jobs: list[Job]) -> None:
    """SIGTERM to every process of every job at once; SIGKILL to what is left KILL_AFTER_S later."""
    stop_like_a_scheduler([process for job in jobs for process in job.processes()], KILL_AFTER_S)
    for job in jobs:
        job.proc.wait()


def _hub_steps(hub: LocalHub, dest: Path) -> dict[str, dict[int, float]]:
    """Job name -> {step: wall time} of the `loss` events the repo holds."""
    api = HfApi(endpoint=hub.endpoint, token=hub.token())
    if not api.repo_exists(REPO_ID):
        return {}
    api.snapshot_download(REPO_ID, local_dir=dest)
    found: dict[str, dict[int, float]] = {}
    root = dest / "tensorboard"
    for folder in (root.iterdir() if root.is_dir() else []):
        found[folder.name] = {event.step: event.wall_time for _, event in iter_events(folder)
                              if any(value.tag == "loss" for value in event.summary.value)}
    shutil.rmtree(dest, ignore_errors=True)
    return found


def _at_risk_s(jobs: list[Job], on_hub: dict[str, dict[int, float]], started: float) -> float:
    """Worst job: seconds from its newest event on the Hub (its start, if none) to its last acknowledged step."""
    worst = 0.0
    for job in jobs:
        steps = on_hub.get(job.name, {})
        newest = max(steps.values(), default=started)
        worst = max(worst, job.last[1] - newest)
    return round(worst, 2)


def _round(writer: str, jobs_count: int, budget: int, log_for_s: float, work: Path) -> dict:
    with LocalHub(commit_limit=budget) as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": hub.token(), "REPO": REPO_ID,
               "PYTHONPATH": str(REPO_ROOT), "HF_HUB_DISABLE_TELEMETRY": "1",
               "HF_SUMMARY_RUNTIME_DIR": str(work / "runtime"), "HF_HOME": str(work / "hf_home")}
        root = work / "logs"
        jobs = [Job(writer, f"job{k}", root, env) for k in range(jobs_count)]
        try:
            for job in jobs:
                if not job.ready.wait(180):
                    raise RuntimeError(f"{writer} {job.name} did not start")
            started = time.time()
            time.sleep(log_for_s)
            _preempt(jobs)
        finally:
            for job in jobs:
                if job.proc.poll() is None:
                    job.proc.kill()
                    job.proc.wait()
        shutil.rmtree(root)  # the nodes and their disks are gone
        acknowledged = sum(job.last[0] + 1 for job in jobs)
        before = _hub_steps(hub, work / "before")
        commits = len(HfApi(endpoint=hub.endpoint, token=hub.token()).list_repo_commits(REPO_ID))
        hub.stop()
        hub.commit_limit = 100 * budget  # later: the budget is back
        hub.start()
        if writer.startswith("ours"):
            subprocess.run([sys.executable, "-m", "hf_summary", "settle", REPO_ID], cwd=work, env=env,
                           capture_output=True, timeout=600, check=True)
        after = _hub_steps(hub, work / "after")
    return {
        "acknowledged_events": acknowledged,
        "commits": commits,
        "events_on_hub_before_sigkill": sum(len(steps) for steps in before.values()),
        "events_on_hub_later": sum(len(steps) for steps in after.values()),
        "seconds_at_risk_per_job": _at_risk_s(jobs, before, started),
        "seconds_lost_per_job": _at_risk_s(jobs, after, started),
    }


def run(jobs_counts: list[int], budget: int, log_for_s: float) -> dict:
    results: dict = {"budget_per_hour": budget, "log_for_s": log_for_s, "rounds": {}}
    for jobs_count in jobs_counts:
        for writer in WRITERS:
            with tempfile.TemporaryDirectory(prefix="bench-sweep-") as work:
                results["rounds"][f"{writer}/{jobs_count}"] = _round(writer, jobs_count, budget, log_for_s,
                                                                     Path(work))
    return results


def render(results: dict, jobs_counts: list[int]) -> str:
    rows = [f"Sweep: jobs logging {results['log_for_s']:g} s into one repo, a budget of "
            f"{results['budget_per_hour']} commits per hour, SIGTERM to every job then SIGKILL after "
            f"{KILL_AFTER_S:g} s, nodes lost", "",
            "| jobs | writer | commits | acknowledged events | on the Hub before SIGKILL | on the Hub later | "
            "s at risk (worst job) | s lost (worst job) |", "|--:|---|--:|--:|--:|--:|--:|--:|"]
    for jobs_count in jobs_counts:
        for writer in WRITERS:
            r = results["rounds"][f"{writer}/{jobs_count}"]
            rows.append(f"| {jobs_count} | {writer} | {r['commits']} | {r['acknowledged_events']} | "
                        f"{r['events_on_hub_before_sigkill']} | {r['events_on_hub_later']} | "
                        f"{r['seconds_at_risk_per_job']} | {r['seconds_lost_per_job']} |")
        ours, theirs = results["rounds"][f"ours/{jobs_count}"], results["rounds"][f"huggingface_hub/{jobs_count}"]
        kept = ours["events_on_hub_later"] / max(1, theirs["events_on_hub_later"])
        rows.append(f"| {jobs_count} | ratio ours / huggingface_hub | | | | {kept:.2f}× | | |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    disable_progress_bars()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, nargs="+", default=[8, 32], help="numbers of jobs (default 8 32)")
    parser.add_argument("--budget", type=int, default=40, help="commits per rolling hour (default 40)")
    parser.add_argument("--log-for", type=float, default=25.0, help="seconds of logging before the SIGTERM")
    parser.add_argument("--smoke", action="store_true", help="2 jobs, 5 s of logging: checks that it runs")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    jobs_counts, log_for = ([2], 5.0) if args.smoke else (args.jobs, args.log_for)
    results = run(jobs_counts, args.budget, log_for)
    emit(render(results, jobs_counts), results, json_path=args.json, markdown_path=args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
