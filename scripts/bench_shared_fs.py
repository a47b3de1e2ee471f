"""Benchmark: a logdir on a shared filesystem, side by side with the same work on a local disk.

The shared filesystem is emulated as in the tests (tests/twohosts.py): two bindfs (FUSE) mounts of one directory,
each used from its own UTS + PID namespace ("node-one", where the runs are written, and "login-two", where they
are synced and looked at), with locks kept to each mount (Lustre `localflock`, NFS `nolock`). The local side
does the same work on a local directory, from one host.

Figures, local and shared side by side with the ratio shared / local:

- `sync PARENT` of `--runs` closed offline runs (3 sealed segments each, written by real offline writers on
  node-one, all to one repo: a sweep's), from login-two: seconds, requests the Hub received, commits (the runs
  share them: one per batch of at most 100 files, plus the repo's creation and its card tag); then the same sync
  again, with nothing new to push;
- `status PARENT` over `--status-runs` runs (copies of the synced ones), a fresh process from login-two:
  seconds, median of `--reps` (target: at most 2 s on the shared side);
- one online writer on node-one: the p99 of `add_scalar` over `--steps` steps, and the seconds of the blocking
  push of what it logged (`push_to_hub(blocking=True)`).

Usage::

    python scripts/bench_shared_fs.py                         # 200 runs, status over 1,000 (several minutes)
    python scripts/bench_shared_fs.py --runs 4 --status-runs 8 --steps 300 --reps 1 --json out.json   # a quick look

Needs root, /dev/fuse, bindfs and unshare (as the two-host tests); says why and exits 2 without them. Every process
started here is ended by its own pid (or with its host's namespace), and the mounts are unmounted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
REPO_ROOT = SCRIPTS.parent
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "tests"), str(SCRIPTS)]

from benchkit.output import emit  # noqa: E402
from benchkit.stats import percentile  # noqa: E402
from twohosts import SKIP_REASON, two_hosts  # noqa: E402

from hf_summary.localhub.testing import LocalHub  # noqa: E402

STATUS_TARGET_S = 2.0

# Writes ARGV[3] closed offline runs under ARGV[1], each with 3 sealed segments of ARGV[4] steps in all, all to the
# repo ARGV[2] (each in a folder of its own), as a sweep's runs.
BUILD = """
    import os, sys
    from hf_summary import HFSummaryWriter
    parent, repo, count, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    for n in range(count):
        writer = HFSummaryWriter(repo, logdir=os.path.join(parent, f"run-{n:04d}"), commit_every=60,
                                 offline=True)
        for step in range(steps):
            writer.add_scalar("loss", step * 0.5, step)
            if step in (steps // 3, 2 * steps // 3):
                writer.push_to_hub(blocking=False)  # offline: seals the segment
        writer.close()
"""

# One online writer: add_scalar latencies (ns) over ARGV[2] steps, then a blocking push.
WRITER = """
    import json, os, sys, time
    from hf_summary import HFSummaryWriter
    writer = HFSummaryWriter(os.environ["REPO"], logdir=sys.argv[1], commit_every=60)
    latencies = []
    for step in range(int(sys.argv[2])):
        started = time.perf_counter_ns()
        writer.add_scalar("loss", step * 0.5, step)
        latencies.append(time.perf_counter_ns() - started)
    started = time.monotonic()
    pushed = writer.push_to_hub(blocking=True, timeout=600)
    push_s = time.monotonic() - started
    writer.close()
    print(json.dumps({"add_ns": latencies, "push_s": push_s, "ok": pushed}))
"""


def _run(argv: list[str], env: dict[str, str], host=None) -> subprocess.CompletedProcess:
    """`argv` to the end, on `host` (a tests/twohosts.py host) or here."""
    if host is not None:
        process = host.popen(*argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    else:
        process = subprocess.Popen(argv, env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env},
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=3600)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if process.returncode not in (0,):
        raise RuntimeError(f"{argv[:4]} exited {process.returncode}:\n{stdout[-2000:]}\n{stderr[-4000:]}")
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


def _timed_sync(hub: LocalHub, repo_id: str, parent: Path, env: dict[str, str], host) -> dict:
    before = hub.stats()
    started = time.monotonic()
    _run([sys.executable, "-m", "hf_summary", "sync", "--quiet", str(parent)], env, host)
    seconds = time.monotonic() - started
    after = hub.stats()

    def commits(stats: dict) -> int:  # of the runs' repo
        return stats["repos"].get(f"model/{repo_id}", {}).get("commits", 0)

    return {"seconds": seconds, "requests": after["requests"] - before["requests"],
            "commits": commits(after) - commits(before)}


def _side(hub: LocalHub, args: argparse.Namespace, root: Path, writer_host, reader_host) -> dict:
    """Every figure of one side: runs written under `root` from `writer_host`, read from `reader_host`
    (both None: here, on a local disk)."""
    repo_id = f"alice/shared-fs-bench-{uuid.uuid4().hex[:8]}"
    env = {"HF_ENDPOINT": hub.endpoint, "HF_TOKEN": hub.token("alice"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    written, read = (writer_host.path("runs"), reader_host.path("runs")) if writer_host else (root, root)
    _run([sys.executable, "-c", textwrap.dedent(BUILD), str(written), repo_id, str(args.runs), str(args.steps)],
         {**env, "HF_HUB_OFFLINE": "1"}, writer_host)
    figures = {"sync": _timed_sync(hub, repo_id, read, env, reader_host),
               "sync_again": _timed_sync(hub, repo_id, read, env, reader_host)}
    status_parent = root.parent / "status-runs"  # copies made on the backing directory: the mounts see them
    for n in range(args.status_runs):
        shutil.copytree(root / f"run-{n % args.runs:04d}", status_parent / f"run-{n:05d}", symlinks=True)
    status_read = reader_host.path("status-runs") if reader_host else status_parent
    seconds = []
    for _ in range(args.reps):
        started = time.monotonic()
        _run([sys.executable, "-m", "hf_summary", "status", str(status_read)], {}, reader_host)
        seconds.append(time.monotonic() - started)
    figures["status_s"] = statistics.median(seconds)
    logdir = writer_host.path("online") if writer_host else root.parent / "online"
    result = _run([sys.executable, "-c", textwrap.dedent(WRITER), str(logdir), str(args.steps)],
                  {**env, "REPO": repo_id}, writer_host)
    written = json.loads(result.stdout.strip().splitlines()[-1])
    figures["writer"] = {"add_p99_us": percentile(written["add_ns"], 0.99) / 1000, "push_s": written["push_s"],
                         "ok": written["ok"]}
    return figures


def run(args: argparse.Namespace) -> dict:
    with LocalHub() as hub, tempfile.TemporaryDirectory(prefix="hf-summary-bench-shared-fs-") as tmp:
        local_root = Path(tmp, "local", "runs")
        local_root.mkdir(parents=True)
        local = _side(hub, args, local_root, None, None)
        shared_dir = Path(tmp, "two-hosts")
        shared_dir.mkdir()
        with two_hosts(shared_dir, "local") as hosts:
            (hosts.backing / "runs").mkdir()
            shared = _side(hub, args, hosts.backing / "runs", hosts.one, hosts.two)
    return {"runs": args.runs, "status_runs": args.status_runs, "steps": args.steps, "local": local, "shared": shared}


def _ratio(shared: float, local: float) -> str:
    return f"{shared / local:.2f}×" if local else "n/a"


def render(results: dict) -> str:
    local, shared = results["local"], results["shared"]
    rows = ["| figure | local disk | shared (FUSE, other host) | shared / local |", "|---|--:|--:|--:|"]
    for key, label in (("sync", f"sync of {results['runs']} runs"), ("sync_again", "the same sync again")):
        for figure in ("seconds", "requests", "commits"):
            a, b = local[key][figure], shared[key][figure]
            cells = (f"{a:.2f} s", f"{b:.2f} s") if figure == "seconds" else (a, b)
            rows.append(f"| {label}: {figure} | {cells[0]} | {cells[1]} | {_ratio(b, a)} |")
    met = "✅" if shared["status_s"] <= STATUS_TARGET_S else "❌"
    rows.append(f"| status over {results['status_runs']} runs (target ≤ {STATUS_TARGET_S:g} s: {met}) | "
                f"{local['status_s']:.2f} s | {shared['status_s']:.2f} s | {_ratio(shared['status_s'], local['status_s'])} |")
    for figure, label, unit in (("add_p99_us", "writer: add_scalar p99", " µs"), ("push_s", "writer: push", " s")):
        a, b = local["writer"][figure], shared["writer"][figure]
        rows.append(f"| {label} ({results['steps']} steps) | {a:.2f}{unit} | {b:.2f}{unit} | {_ratio(b, a)} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200, help="runs synced (default 200)")
    parser.add_argument("--status-runs", type=int, default=1000, help="runs under the parent of status (default 1000)")
    parser.add_argument("--steps", type=int, default=3000, help="steps per run, and of the writer (default 3000)")
    parser.add_argument("--reps", type=int, default=3, help="status runs, of which the median (default 3)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    if SKIP_REASON is not None:
        print(f"bench_shared_fs: two emulated hosts: {SKIP_REASON}", file=sys.stderr)
        return 2
    started = time.monotonic()
    results = run(args)
    errors = [side for side in ("local", "shared") if not results[side]["writer"]["ok"]]
    results["errors"] = errors
    print(f"hf-summary on a shared filesystem (emulated; the run took {time.monotonic() - started:.0f} s)\n")
    emit(render(results), results, json_path=args.json, markdown_path=args.markdown)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
