"""Preemption benchmark: a job-wide SIGTERM (SLURM's `scancel` or time limit, systemd at a spot VM's
shutdown: every process of the job), then SIGKILL 10 s later, for the three writers side by side.

Usage::

    python scripts/bench_preemption.py              # 5 interleaved rounds, ~3 minutes on 2 cores
    python scripts/bench_preemption.py --rounds 1 --json preemption.json

Each round starts a trainer (`scripts/bench_workers.py`'s `crash` scenario: a scalar every ~2 ms and a
histogram every 10 steps, at the default `commit_every` of 5 minutes, so nothing is pushed before the stop),
lets it log for 1-3 s (random), SIGTERMs the trainer and every process it started at once, and SIGKILLs what
is left after 10 s. Figures: acknowledged events not on the Hub 30 s after the SIGTERM (tensorboardX: not in
its local file), and seconds from the SIGTERM until the Hub's commit holding every one of them. The local Hub
runs in basic-LFS mode, as in `bench.py`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

import psutil
from bench import PROFILES as BENCH_PROFILES  # first: puts this checkout on sys.path
from bench_scenarios.crash import HubWatch, watch_hub
from bench_workers import WRITERS
from benchkit.harness import Bench, Worker, interleaved, per_writer
from benchkit.hub import scalar_steps
from benchkit.stats import max_or_none
from benchkit.stop import stop_like_a_scheduler

KILL_AFTER_S = 10.0
LOG_FOR_S = (1.0, 3.0)
TARGET_S = 2.0


def _stop_job(process: Worker) -> tuple[float, float]:
    """SIGTERM the trainer and its descendants together; SIGKILL what still runs after KILL_AFTER_S.
    Returns when the SIGTERM was sent (monotonic, wall clock)."""
    job = [process.process, *process.descendants]
    with contextlib.suppress(psutil.Error):
        job += [p for p in process.process.children(recursive=True) if p not in job]
    sent = (time.monotonic(), time.time())
    stop_like_a_scheduler(job, KILL_AFTER_S)
    process.proc.wait()
    return sent


def _round(bench: Bench, writer: str) -> dict:
    with bench.worker("crash", writer, finish_timeout=30, commit_every=5, pause_s=0.002) as process:
        process.expect("ready", 120)
        time.sleep(bench.rng.uniform(*LOG_FOR_S))
        sent = _stop_job(process)
        time.sleep(0.2)  # the reader thread takes the last acknowledgements off the pipe
        acknowledged = process.last_step + 1
        if writer == "tensorboardX":
            watch = HubWatch(len(set(range(acknowledged)) - scalar_steps(Path(process.config["logdir"]))))
        else:
            watch = watch_hub(bench, process, acknowledged, sent)
    return {"acknowledged": acknowledged, "lost": watch.missing, "seconds": watch.seconds}


def run(rounds: int, seed: int) -> dict:
    with contextlib.ExitStack() as stack:
        bench = Bench(BENCH_PROFILES["full"], stack, seed)
        samples = interleaved(bench, "preemption", WRITERS, rounds, _round)
        return {
            "lost_events": per_writer(samples, lambda s: s["lost"]),
            "lost_events_max": per_writer(samples, lambda s: s["lost"], max_or_none),
            "acknowledged_events": per_writer(samples, lambda s: s["acknowledged"]),
            "seconds_to_hub": per_writer(samples, lambda s: s["seconds"]),
            "seconds_to_hub_max": per_writer(
                samples, lambda s: s["seconds"], lambda v: None if None in v or not v else max(v)
            ),
            "rounds": rounds,
            "errors": bench.errors,
            "raw": bench.raw,
        }


def render(results: dict) -> str:
    def cell(value, unit=""):
        return "never" if value is None else f"{value:.2f}{unit}" if isinstance(value, float) else f"{value}{unit}"

    lost, seconds = results["lost_events_max"], results["seconds_to_hub_max"]
    met_lost = lost["ours"] == 0
    met_time = seconds["ours"] is not None and seconds["ours"] <= TARGET_S
    rows = [
        "| figure | hf-summary (ours) | tensorboardX | huggingface_hub | target | met |",
        "|---|--:|--:|--:|---|:-:|",
        f"| acknowledged events lost (worst of {results['rounds']}) | {lost['ours']} | {lost['tensorboardX']} | "
        f"{lost['huggingface_hub']} | ours 0 | {'✅' if met_lost else '❌'} |",
        f"| … out of (median) | {results['acknowledged_events']['ours']} | "
        f"{results['acknowledged_events']['tensorboardX']} | {results['acknowledged_events']['huggingface_hub']} | | |",
        f"| seconds from SIGTERM until the Hub holds every event (worst) | {cell(seconds['ours'], ' s')} | "
        f"local only | {cell(seconds['huggingface_hub'], ' s')} | ours ≤ {TARGET_S:g} s | {'✅' if met_time else '❌'} |",
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random stop moments")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    started = time.monotonic()
    results = run(args.rounds, seed)
    print(f"\nhf-summary preemption benchmark (seed {seed}): job-wide SIGTERM, SIGKILL after {KILL_AFTER_S:g} s\n")
    print(render(results))
    print(f"\nThe run took {time.monotonic() - started:.0f} s.")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if results["errors"]:
        print(f"\nerrors: {json.dumps(results['errors'], indent=2)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
