"""Full-disk benchmark: the same full-disk episode for the three writers side by side.

Usage (root: each writer's logdir is a tmpfs of its own)::

    python scripts/bench_disk_full.py                      # 5 s, then 10 s full, then 5 s: ~2 minutes
    python scripts/bench_disk_full.py --before-s 1 --full-s 2 --after-s 1 --json disk_full.json

Each trainer logs a scalar per step and a 2,000-value histogram every 10 steps (~190 steps/s) into a logdir on a
6 MB tmpfs. After `--before-s` a ballast file takes every free byte of it; `--full-s` later the ballast is
deleted; `--after-s` later the trainer calls `close()`. An exception from `add_*` is counted and the loop goes
on (a real training loop would have died at the first). Figures: exceptions raised into the loop, acknowledged
events (`add_*` returned) that are not on the Hub after `close()` (tensorboardX: not in its local files), the
longest `add_*` call, whether the trainer survived (exited normally with its report) and whether it hung
(still running `--hang-s` after its loop should have ended; it is then killed).
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
import time
from collections import Counter
from pathlib import Path

from benchkit.output import emit
from benchkit.trainer import REPO_ROOT, trainer_env

WRITERS = ("ours", "tensorboardX", "huggingface_hub")
TMPFS_SIZE = "6m"
HISTOGRAM_EVERY = 10
HISTOGRAM_VALUES = 2000
STEP_PAUSE_S = 0.004  # with the logging itself: ~190 steps/s
PROGRESS_S = 0.5


# ---------------------------------------------------------------- the trainer (a process of its own)


def trainer(config: dict) -> None:
    """Log until `config["duration_s"]` passed, counting what `add_*` raised; close. A progress line (JSON) every
    `PROGRESS_S`, so that a trainer that hangs still tells how far it got; the last one, after `close()`, also
    lists the acknowledged events."""
    import numpy as np
    from bench_workers import close_writer, open_writer

    kind = config["writer"]
    writer = open_writer(kind, config)
    rng = np.random.default_rng(0)
    acknowledged: list[tuple[str, int]] = []
    raised: Counter = Counter()
    longest = 0.0

    def call(tag: str, step: int, method, *args) -> None:
        nonlocal longest
        started = time.perf_counter()
        try:
            method(tag, *args, step)
            acknowledged.append((tag, step))
        except Exception as exc:  # a real loop dies here; the benchmark counts and goes on
            raised[f"{type(exc).__name__}: {exc}"[:120]] += 1
        longest = max(longest, time.perf_counter() - started)

    def progress(**extra) -> None:
        print(json.dumps({"acknowledged_count": len(acknowledged), "raised": dict(raised), "longest_add_s": longest,
                          **extra}), flush=True)

    print("ready", flush=True)
    deadline = time.monotonic() + config["duration_s"]
    next_progress = time.monotonic() + PROGRESS_S
    step = 0
    while time.monotonic() < deadline:
        call("loss", step, writer.add_scalar, float(step))
        if step % HISTOGRAM_EVERY == 0:
            call("weights", step, writer.add_histogram, rng.normal(size=HISTOGRAM_VALUES))
        step += 1
        time.sleep(STEP_PAUSE_S)
        if time.monotonic() >= next_progress:
            progress()
            next_progress += PROGRESS_S
    progress(closing=True)
    close_error = None
    try:
        close_writer(kind, writer)
    except Exception as exc:
        close_error = f"{type(exc).__name__}: {exc}"[:200]
    progress(acknowledged=acknowledged, close_error=close_error)


# ---------------------------------------------------------------- the harness


def _fill(path: Path) -> None:
    """Take every free byte of `path`'s tmpfs: megabytes, then pages (a tmpfs allocates whole pages)."""
    for block in ("1M", "4k"):
        subprocess.run(["dd", "if=/dev/zero", f"of={path}", f"bs={block}", "oflag=append", "conv=notrunc"],
                       capture_output=True)


@contextlib.contextmanager
def _tmpfs(path: Path):
    """A fresh tmpfs of `TMPFS_SIZE` at `path`, unmounted after (lazily: a trainer that hung was killed)."""
    path.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(path)], check=True,
                   capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], capture_output=True)


def _events(root: Path) -> Counter:
    """(tag, step) -> how many times the event files under `root` hold it."""
    from hf_summary.verify import iter_events

    counts: Counter = Counter()
    for _, event in iter_events(root):
        for value in event.summary.value:
            counts[(value.tag, event.step)] += 1
    return counts


def _on_hub(hub, repo_id: str, dest: Path) -> Counter:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.endpoint, token=hub.token())
    if not api.repo_exists(repo_id):
        return Counter()
    for name in api.list_repo_files(repo_id):
        if "tfevents" in name:
            api.hf_hub_download(repo_id, name, local_dir=dest)
    return _events(dest)


def one_writer(hub, work: Path, writer: str, args: argparse.Namespace) -> dict:
    """Run one trainer through the episode; its figures."""
    duration = args.before_s + args.full_s + args.after_s
    repo_id = f"alice/disk-full-{writer}-{os.getpid()}"
    with _tmpfs(work / writer) as fs:
        logdir = fs / "run"
        config = {"writer": writer, "logdir": str(logdir), "repo_id": repo_id, "commit_every": args.commit_every,
                  "duration_s": duration}
        proc = subprocess.Popen([sys.executable, __file__, "--trainer", json.dumps(config)], env=trainer_env(hub),
                                cwd=work, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            if proc.stdout.readline().strip() != "ready":
                proc.wait()
                return {"survived": False, "hung": False, "raised": None, "lost": None, "longest_add_s": None}
            time.sleep(args.before_s)
            ballast = fs / "ballast"
            _fill(ballast)
            time.sleep(args.full_s)
            ballast.unlink()
            hung = False
            try:
                out, _ = proc.communicate(timeout=args.after_s + args.hang_s)
            except subprocess.TimeoutExpired:
                hung = True
                proc.kill()
                out, _ = proc.communicate()
            lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
            last = lines[-1] if lines else {}
            survived = proc.returncode == 0 and "acknowledged" in last
            if writer == "tensorboardX":
                present = _events(logdir)
            else:
                present = _on_hub(hub, repo_id, work / f"{writer}-hub")
            if "acknowledged" in last:
                acknowledged = Counter(tuple(entry) for entry in last["acknowledged"])
                lost = sum((acknowledged - present).values())
            else:  # it never came back from close() (or add_*): by the counts of its last progress line
                lost = max(0, last.get("acknowledged_count", 0) - sum(present.values())) if last else None
            return {
                "survived": survived,
                "hung": hung,
                "raised": sum(last["raised"].values()) if last else None,
                "raised_kinds": last.get("raised"),
                "acknowledged": last.get("acknowledged_count"),
                "lost": lost,
                "duplicated": sum(1 for n in present.values() if n > 1),
                "longest_add_s": None if last.get("closing") is None and not survived else last.get("longest_add_s"),
                "stuck_in": None if survived else ("close()" if last.get("closing") else "add_*"),
                "close_error": last.get("close_error"),
            }
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def run(args: argparse.Namespace) -> dict:
    from hf_summary.localhub.testing import LocalHub

    work = Path(tempfile.mkdtemp(prefix="hf-summary-bench-disk-full-"))
    try:
        with LocalHub(commit_limit=10_000_000) as hub:  # the trainers run with HF_HUB_DISABLE_XET: basic LFS
            return {writer: one_writer(hub, work, writer, args) for writer in args.writers}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def render(results: dict, args: argparse.Namespace) -> str:
    def cell(value, unit: str = "") -> str:
        if value is None:
            return "never returned" if unit == "ms" else "n/a"
        if isinstance(value, bool):
            return "yes" if value else "no"
        return f"{value * 1000:.1f} ms" if unit == "ms" else str(value)

    writers = list(results)
    rows = [
        f"Full disk for {args.full_s:g} s (after {args.before_s:g} s, then {args.after_s:g} s more), "
        f"{TMPFS_SIZE} tmpfs, a scalar per step and a {HISTOGRAM_VALUES}-value histogram every {HISTOGRAM_EVERY}",
        "",
        "| figure | " + " | ".join(writers) + " |",
        "|---|" + "--:|" * len(writers),
    ]
    for label, key, unit in (
        ("exceptions raised into the loop", "raised", ""),
        ("acknowledged events", "acknowledged", ""),
        ("acknowledged events lost", "lost", ""),
        ("events on the Hub twice", "duplicated", ""),
        ("longest add_* call", "longest_add_s", "ms"),
        ("process survived", "survived", ""),
        ("process hung", "hung", ""),
        ("… hung in", "stuck_in", ""),
    ):
        rows.append(f"| {label} | " + " | ".join(cell(results[w].get(key), unit) for w in writers) + " |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before-s", type=float, default=5.0)
    parser.add_argument("--full-s", type=float, default=10.0)
    parser.add_argument("--after-s", type=float, default=5.0)
    parser.add_argument("--hang-s", type=float, default=60.0,
                        help="how long after its loop a trainer may take to close before it counts as hung")
    parser.add_argument("--commit-every", type=float, default=0.1, help="minutes, for both Hub writers")
    parser.add_argument("--writers", nargs="+", choices=WRITERS, default=list(WRITERS))
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--markdown", type=Path, help="also write the table to this Markdown file")
    parser.add_argument("--trainer", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.trainer:
        trainer(json.loads(args.trainer))
        return 0
    if os.geteuid() != 0 or shutil.which("mount") is None:
        print("bench_disk_full needs root and mount(8): each writer's logdir is a tmpfs of its own", file=sys.stderr)
        return 2
    results = run(args)
    emit(render(results, args), results, json_path=args.json, markdown_path=args.markdown)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT))
    sys.exit(main())
