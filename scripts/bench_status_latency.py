"""Benchmark: `hf-summary status PARENT` over many runs on a filesystem whose every call is a round trip to a
server, as on NFS, Lustre or GPFS seen from a login node.

The filesystem is a FUSE passthrough that waits `--latency-ms` in each lookup, open, read, directory listing and
close (tests/faultfs.py), over `--runs` closed offline runs (copies of one real run). `status` reads the runs
one at a time (`HF_SUMMARY_READERS=1`: what it does where the work is the CPU's) and as it chooses by itself
(`READERS` at a time, once its first reads showed that they wait on the filesystem), side by side, median of
`--reps`; the ratio is one-at-a-time / at-once. Each side checks that the output lists every run.

Usage::

    python scripts/bench_status_latency.py                                  # 1,000 runs, 0.5 ms a call
    python scripts/bench_status_latency.py --runs 50 --reps 1 --json out.json   # a quick look

Needs root, /dev/fuse, fusermount and mfusepy (as the fault-injection tests); says why and exits 2 without them.
The mount is unmounted and its process ended, whatever happens.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
REPO_ROOT = SCRIPTS.parent
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "tests"), str(SCRIPTS)]

from benchkit.output import emit  # noqa: E402
from storage_kit import FaultFSUnavailable, mounted_fault_fs  # noqa: E402

from hf_summary.runs import READERS, READERS_ENV  # noqa: E402

# One closed offline run at ARGV[1], with 3 sealed segments.
BUILD = """
    import sys
    from hf_summary import HFSummaryWriter
    writer = HFSummaryWriter("alice/status-latency", logdir=sys.argv[1], commit_every=60, offline=True)
    for step in range(300):
        writer.add_scalar("loss", step * 0.5, step)
        if step in (100, 200):
            writer.push_to_hub(blocking=False)  # offline: seals the segment
    writer.close()
"""
SLOW_OPS = ["getattr", "open", "read", "readdir", "release", "flush", "access"]


def _status_seconds(parent: Path, runs: int, *, one_at_a_time: bool) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    if one_at_a_time:
        env[READERS_ENV] = "1"
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "hf_summary", "status", str(parent)], env=env,
                            capture_output=True, text=True, timeout=3600)
    seconds = time.monotonic() - started
    listed = result.stdout.count(str(parent))
    if result.returncode != 0 or listed != runs:
        raise RuntimeError(f"status exited {result.returncode} and listed {listed} of {runs} runs:\n"
                           f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return seconds


def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="hf-summary-bench-status-latency-") as tmp:
        base = Path(tmp)
        model = base / "model"
        subprocess.run([sys.executable, "-c", textwrap.dedent(BUILD), str(model)], check=True, timeout=600,
                       capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"})
        for n in range(args.runs):
            shutil.copytree(model, base / "fs" / "root" / f"run-{n:05d}", symlinks=True)
        with mounted_fault_fs(base / "fs") as fs:
            fs.fail(SLOW_OPS, "*", 0, delay_s=args.latency_ms / 1000)
            seconds: dict[str, list[float]] = {"one": [], "readers": []}
            for _ in range(args.reps):  # alternated, so that both sides see the same machine
                seconds["one"].append(_status_seconds(fs.mount, args.runs, one_at_a_time=True))
                seconds["readers"].append(_status_seconds(fs.mount, args.runs, one_at_a_time=False))
    return {"runs": args.runs, "latency_ms": args.latency_ms, "readers": READERS, "reps": args.reps,
            "one_at_a_time_s": statistics.median(seconds["one"]), "at_once_s": statistics.median(seconds["readers"])}


def render(results: dict) -> str:
    one, at_once = results["one_at_a_time_s"], results["at_once_s"]
    return (f"| status over {results['runs']} runs, {results['latency_ms']:g} ms a call | one at a time | "
            f"{results['readers']} at once | ratio |\n|---|--:|--:|--:|\n"
            f"| seconds (median of {results['reps']}) | {one:.2f} s | {at_once:.2f} s | {one / at_once:.2f}× |\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000, help="runs under the parent (default 1000)")
    parser.add_argument("--latency-ms", type=float, default=0.5, help="wait in each call (default 0.5 ms)")
    parser.add_argument("--reps", type=int, default=3, help="status runs per side, of which the median (default 3)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        results = run(args)
    except FaultFSUnavailable as exc:
        print(f"bench_status_latency: {exc}", file=sys.stderr)
        return 2
    print(f"hf-summary status on a slow filesystem (the run took {time.monotonic() - started:.0f} s)\n")
    emit(render(results), results, json_path=args.json, markdown_path=args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
