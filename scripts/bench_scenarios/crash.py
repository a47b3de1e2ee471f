"""Scenarios 4 and 5, crash loss and time to the Hub: SIGKILL the trainer at a random moment; the events it had
acknowledged that never reach the Hub within 30 s, and how long the last of them took."""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench_workers import WRITERS
from benchkit.harness import POLL_S, Bench, BenchError, Worker, interleaved, per_writer, wait_until
from benchkit.hub import commit_time, hub_steps, repo_commits, scalar_steps
from benchkit.output import Row, check
from benchkit.stats import max_or_none

CRASH_WAIT_S = 30.0  # the spec: events must reach the Hub within 30 s of the kill, without a restart



@dataclass
class HubWatch:
    """What the repo showed after the kill: steps missing, and when the last of them arrived (None: never)."""

    missing: int
    seconds: float | None = None  # from the kill to the Hub's timestamp of the commit completing the steps
    seconds_polled: float | None = None  # from the kill to the bench's poll that first saw that commit


def watch_hub(bench: Bench, process: Worker, acknowledged: int, killed_at: tuple[float, float]) -> HubWatch:
    """Poll the repo until it holds every acknowledged step, the 30 s deadline passes, or nothing can change
    any more (no process of the run alive and no new commit for the profile's `crash_quiet_s`).

    A download is trusted only if the commit count did not move while it ran; the commit completing the
    steps is then the newest one, and its timestamp (same machine, same clock) gives the time to the Hub."""
    hub, repo_id = bench.hub(), process.config["repo_id"]
    expected = set(range(acknowledged))
    verified, last_change, missing = -1, killed_at[0], acknowledged
    while True:
        seen_at = time.monotonic()
        commits = repo_commits(hub, repo_id)
        if commits != verified:
            present = hub_steps(hub, repo_id, bench.tmp / "downloads" / uuid.uuid4().hex)
            if repo_commits(hub, repo_id) == commits:
                verified, last_change, missing = commits, seen_at, len(expected - present)
                if not missing:
                    landed = commit_time(hub, repo_id, commits)
                    return HubWatch(0, landed - killed_at[1], seen_at - killed_at[0])
        now = time.monotonic()
        quiet = not process.alive() and now - last_change >= bench.profile.crash_quiet_s
        if now - killed_at[0] >= CRASH_WAIT_S or quiet:
            return HubWatch(missing)
        time.sleep(POLL_S)


def _crash_run(bench: Bench, writer: str) -> dict:
    p = bench.profile
    with bench.worker("crash", writer, finish_timeout=60, commit_every=p.crash_commit_every,
                      pause_s=0.002) as process:
        process.expect("ready", 120)
        if not wait_until(lambda: process.last_step >= 0 or process.proc.poll() is not None, 60):
            raise BenchError(f"{process} logged nothing{process.stderr_tail()}")
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.proc.wait(bench.rng.uniform(*p.crash_kill_window_s))  # returns early only if it died
            raise BenchError(f"{process} died before the kill{process.stderr_tail()}")
        killed_at = process.kill()
        acknowledged = process.last_step + 1
        if writer == "tensorboardX":  # local only: what never reached the disk
            watch = HubWatch(len(set(range(acknowledged)) - scalar_steps(Path(process.config["logdir"]))))
        else:
            watch = watch_hub(bench, process, acknowledged, killed_at)
    return {"acknowledged": acknowledged, "lost": watch.missing, "seconds": watch.seconds,
            "seconds_polled": watch.seconds_polled}


def run(bench: Bench) -> tuple[dict, dict]:
    p = bench.profile
    samples = interleaved(bench, "crash", WRITERS, p.crash_rounds, _crash_run)
    crash_loss = {
        "lost_events": per_writer(samples, lambda s: s["lost"]),
        "lost_events_max": per_writer(samples, lambda s: s["lost"], max_or_none),
        "acknowledged_events": per_writer(samples, lambda s: s["acknowledged"]),
        "lost_fraction": per_writer(samples, lambda s: s["lost"] / s["acknowledged"]),
        "rounds": p.crash_rounds,
    }
    worst = lambda v: None if None in v or not v else max(v)  # noqa: E731 - never, if any round never got there
    time_to_hub = {
        "seconds": per_writer(samples, lambda s: s["seconds"]),
        "seconds_max": per_writer(samples, lambda s: s["seconds"], worst),
        "seconds_polled_max": per_writer(samples, lambda s: s["seconds_polled"], worst),
    }
    return crash_loss, time_to_hub


def rows(r: dict) -> list[Row]:
    c = r["crash_loss"]
    return [
        Row("4. crash loss", f"acknowledged events not on the Hub 30 s after SIGKILL (worst of {c['rounds']})",
            c["lost_events_max"], "", 0, "ours 0", check(c["lost_events_max"]["ours"], lambda x: x == 0)),
        Row("", "… as a fraction of the acknowledged events (median) ²", c["lost_fraction"], "", 3),
    ]


def time_rows(r: dict) -> list[Row]:
    t = r["time_to_hub_s"]
    never = {"tensorboardX": "local only", "huggingface_hub": "never"}
    return [
        Row("5. time to Hub after SIGKILL", "seconds from the kill to the Hub's commit holding every logged event "
            "(worst)", t["seconds_max"], " s", 2, "ours ≤ 10 s", check(t["seconds_max"]["ours"], lambda x: x <= 10),
            notes=never),
        Row("", "… until the bench's download saw it (poll every 0.1 s + download)", t["seconds_polled_max"], " s", 2,
            notes=never),
    ]


def workload(p, results: dict) -> str:
    return (
        f"{p.crash_rounds} round(s): a scalar (+ a histogram every 10 steps) every ~2 ms, commit "
        f"every {p.crash_commit_every * 60:g} s, SIGKILL after {p.crash_kill_window_s[0]:g}-"
        f"{p.crash_kill_window_s[1]:g} s (random); repo files downloaded and scanned record by record."
    )
