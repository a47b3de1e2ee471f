"""Benchmark ``add_latency``: how long each ``add_scalar`` / ``add_scalars`` call keeps the training thread, over a
paced run with rolls and pushes going on, for no writer (the loop and the machine alone), tensorboardX's
``SummaryWriter``, hf-summary's ``HFSummaryWriter`` rolling every ``--tick-s`` (and the same without a roll during the
run), side by side in one run.

Per writer, the median over rounds of p50 / p99 / p99.9 / max (µs) of every call (the first step of the run
excluded: it opens the first file), the calls over 1 ms and 5 ms, and, for the calls over ``--slow-us``, where they
come from: the share that overlapped a garbage collection (any thread's, seen by a ``gc.callbacks`` hook), that
came within ``NEAR_ROLL_MS`` of a segment being sealed (hf-summary only: the journal's ``sealed_at``), and the share
of their time the training thread spent off the CPU (waiting for the GIL, or descheduled: ``thread_time`` against
the wall clock). Ratios against tensorboardX and against no writer are printed alongside.

Usage::

    python scripts/bench_add_latency.py                      # 3 rounds of 20 s per writer, a roll every 0.25 s
    python scripts/bench_add_latency.py --rounds 1 --duration-s 3 --json out.json

Each trainer is a fresh interpreter (``--worker``) with ``HF_ENDPOINT``/``HF_TOKEN``/``HF_HUB_DISABLE_XET`` set
before huggingface_hub is imported; writers are interleaved over rounds (A B C, B C A, ...); hf-summary pushes to
the local Hub. Nothing in the timed process runs but the loop and the writer's own threads. Every process started
here is ended by its own pid.
"""

from __future__ import annotations

import argparse
import array
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench_output import emit
from bench_trainer import trainer_env

SCRIPTS = Path(__file__).resolve().parent
REPO_ROOT = SCRIPTS.parent
WRITERS = ("none", "tensorboardX", "ours", "ours_no_roll")
SCALAR_TAGS = ("train/loss", "train/lr", "train/grad_norm")
NEAR_ROLL_MS = 20.0
NO_ROLL_MINUTES = 60.0
PERCENTILES = (("p50", 0.5), ("p99", 0.99), ("p99_9", 0.999))


# ---------------------------------------------------------------- the trainer (a fresh interpreter)


class _NoWriter:
    """The loop without a writer: what the machine and the timing cost on their own."""

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        pass

    def add_scalars(self, main_tag: str, values: dict, step: int) -> None:
        pass


def _open(kind: str, config: dict[str, Any]) -> Any:
    if kind == "none":
        return _NoWriter()
    if kind == "tensorboardX":
        from tensorboardX import SummaryWriter

        return SummaryWriter(logdir=config["logdir"])
    from hf_summary import HFSummaryWriter

    minutes = NO_ROLL_MINUTES if kind == "ours_no_roll" else config["tick_s"] / 60
    return HFSummaryWriter(config["repo_id"], logdir=config["logdir"], commit_every=minutes)


def worker(config: dict[str, Any]) -> dict[str, Any]:
    """The paced loop: each step calls ``add_scalar`` per tag and one ``add_scalars``, each call timed alone."""
    import tensorboardX  # noqa: F401  (every variant pays the same imports, torch included when installed)

    kind = config["writer"]
    writer = _open(kind, config)
    gc_spans = array.array("q")  # start, end (perf_counter ns) of each collection, any thread
    gc_started: list[int] = []

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            gc_started.append(time.perf_counter_ns())
        elif gc_started:
            gc_spans.extend((gc_started.pop(), time.perf_counter_ns()))

    gc.callbacks.append(on_gc)
    wall_offset_ns = time.time_ns() - time.perf_counter_ns()
    starts, walls, cpus, kinds = array.array("q"), array.array("q"), array.array("q"), array.array("b")
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    add_scalar, add_scalars = writer.add_scalar, writer.add_scalars
    period = 1.0 / config["steps_per_s"]
    start = time.monotonic()
    step = 0
    while time.monotonic() - start < config["duration_s"]:
        for tag in SCALAR_TAGS:
            c0 = cpu_clock()
            t0 = clock()
            add_scalar(tag, 1.0 / (step + 1), step)
            t1 = clock()
            c1 = cpu_clock()
            starts.append(t0), walls.append(t1 - t0), cpus.append(c1 - c0), kinds.append(0)
        c0 = cpu_clock()
        t0 = clock()
        add_scalars("pair", {"a": step * 0.5, "b": -step * 0.5}, step)
        t1 = clock()
        c1 = cpu_clock()
        starts.append(t0), walls.append(t1 - t0), cpus.append(c1 - c0), kinds.append(1)
        step += 1
        time.sleep(max(0.0, start + step * period - time.monotonic()))
    gc.callbacks.remove(on_gc)
    if kind != "none":
        writer.close()
    seals: list[int] = []
    if kind.startswith("ours"):
        from hf_summary.journal import Journal

        with Journal(Path(config["logdir"]), create=False) as journal:
            seals = [int(row.sealed_at * 1e9) - wall_offset_ns for row in journal.segments() if row.sealed_at]
    per_step = len(SCALAR_TAGS) + 1
    return {"steps": step, "starts": starts[per_step:].tolist(), "walls": walls[per_step:].tolist(),
            "cpus": cpus[per_step:].tolist(), "kinds": kinds[per_step:].tolist(), "gc_spans": gc_spans.tolist(),
            "seals": sorted(seals)}


# ---------------------------------------------------------------- the parent


def _percentile(ordered: list[int], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e3


def _overlaps(start: int, end: int, spans: list[int]) -> bool:
    return any(a < end and start < b for a, b in zip(spans[::2], spans[1::2], strict=True))


def _near(t: int, points: list[int], window_ns: float) -> bool:
    return any(abs(t - p) <= window_ns for p in points)


def summarise(raw: dict[str, Any], slow_us: float) -> dict[str, Any]:
    """Figures of one run: per method (and all calls) the percentiles, and where the slow calls come from."""
    spans = raw["gc_spans"]
    out: dict[str, Any] = {"steps": raw["steps"], "gc_collections": len(spans) // 2,
                           "gc_max_us": max((b - a for a, b in zip(spans[::2], spans[1::2], strict=True)), default=0) / 1e3}
    calls = list(zip(raw["starts"], raw["walls"], raw["cpus"], raw["kinds"], strict=True))
    for name, selected in (("all", calls), ("add_scalar", [c for c in calls if c[3] == 0]),
                           ("add_scalars", [c for c in calls if c[3] == 1])):
        ordered = sorted(wall for _, wall, _, _ in selected)
        figures = {key: _percentile(ordered, q) for key, q in PERCENTILES}
        figures["max"] = ordered[-1] / 1e3
        figures["over_1ms"] = sum(1 for wall in ordered if wall > 1_000_000)
        figures["over_5ms"] = sum(1 for wall in ordered if wall > 5_000_000)
        out[name] = figures
    slow = [c for c in calls if c[1] > slow_us * 1e3]
    total = sum(wall for _, wall, _, _ in slow)
    out["slow_calls"] = len(slow)
    out["slow_in_gc"] = sum(1 for t, wall, _, _ in slow if _overlaps(t, t + wall, raw["gc_spans"]))
    out["slow_near_roll"] = sum(1 for t, _, _, _ in slow if _near(t, raw["seals"], NEAR_ROLL_MS * 1e6))
    out["slow_off_cpu_share"] = sum(max(0, wall - cpu) for _, wall, cpu, _ in slow) / total if total else None
    out["rolls"] = len(raw["seals"])
    return out


def run_worker(hub: Any, kind: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    name = f"{kind}-{uuid.uuid4().hex[:6]}"
    config = {"writer": kind, "logdir": str(tmp / name), "repo_id": f"alice/add-latency-{name.replace('_', '-')}",
              "tick_s": args.tick_s, "steps_per_s": args.steps_per_s, "duration_s": args.duration_s}
    env = trainer_env(hub)
    out_path = tmp / f"{name}.json"
    process = subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(config), "--out", str(out_path)],
                               env=env)
    try:
        status = process.wait(args.duration_s * 5 + 300)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if status != 0:
        raise RuntimeError(f"the {kind} trainer exited with status {status}")
    return summarise(json.loads(out_path.read_text()), args.slow_us)


def _median(rounds: list[dict], *keys: str) -> float | None:
    values = []
    for result in rounds:
        value: Any = result
        for key in keys:
            value = value[key]
        if value is not None:
            values.append(value)
    return statistics.median(values) if values else None


def _spread(rounds: list[dict], *keys: str) -> str:
    values = []
    for result in rounds:
        value: Any = result
        for key in keys:
            value = value[key]
        values.append(value)
    return f"{min(values):.0f}–{max(values):.0f}" if len(values) > 1 else ""


def render(results: dict[str, list[dict]], args: argparse.Namespace) -> str:
    writers = [w for w in WRITERS if results.get(w)]
    head = (f"`add_latency`: {args.rounds} round(s) of {args.duration_s:.0f} s per writer, {args.steps_per_s:.0f} "
            f"steps/s, each step {len(SCALAR_TAGS)} `add_scalar` and one `add_scalars` of 2 tags; hf-summary rolls "
            f"every {args.tick_s} s (`ours`) or not during the run (`ours_no_roll`). Medians over rounds "
            "(min–max over rounds in brackets for p99 and max); µs.\n\n")
    lines = ["| figure | " + " | ".join(writers) + " |", "|---|" + "--:|" * len(writers)]
    for method in ("add_scalar", "add_scalars", "all"):
        for key in ("p50", "p99", "p99_9", "max", "over_1ms", "over_5ms"):
            cells = []
            for writer in writers:
                value = _median(results[writer], method, key)
                spread = _spread(results[writer], method, key) if key in ("p99", "max") else ""
                digits = 0 if key.startswith("over") or key == "max" else 1
                cells.append(f"{value:.{digits}f}" + (f" ({spread})" if spread else ""))
            lines.append(f"| `{method}` {key} | " + " | ".join(cells) + " |")
    for label, key in ((f"slow calls (> {args.slow_us:g} µs)", "slow_calls"), ("… overlapping a GC", "slow_in_gc"),
                       (f"… within {NEAR_ROLL_MS:.0f} ms of a seal", "slow_near_roll"),
                       ("… share of their time off the CPU", "slow_off_cpu_share"),
                       ("GC collections", "gc_collections"), ("longest GC (µs)", "gc_max_us"), ("rolls (segments sealed)", "rolls")):
        cells = []
        for writer in writers:
            value = _median(results[writer], key)
            cells.append("n/a" if value is None else (f"{value:.2f}" if isinstance(value, float) and value < 1
                                                      else f"{value:.0f}"))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    for baseline in ("tensorboardX", "none"):
        if "ours" in writers and baseline in writers:
            parts = []
            for key in ("p50", "p99", "max"):
                ours, theirs = _median(results["ours"], "add_scalar", key), _median(results[baseline], "add_scalar", key)
                parts.append(f"{key} {ours / theirs:.2f}×" if theirs else f"{key} n/a")
            lines.append(f"- `add_scalar`, ours / {baseline}: " + ", ".join(parts))
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration-s", type=float, default=20.0)
    parser.add_argument("--tick-s", type=float, default=0.25)
    parser.add_argument("--steps-per-s", type=float, default=500.0)
    parser.add_argument("--slow-us", type=float, default=200.0, help="a call slower than this is counted as slow")
    parser.add_argument("--only", choices=WRITERS, action="append")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        args.out.write_text(json.dumps(worker(json.loads(args.worker))))
        return 0
    sys.path.insert(0, str(REPO_ROOT))
    from hf_summary.localhub.testing import LocalHub

    writers = tuple(args.only or WRITERS)
    results: dict[str, list[dict]] = {writer: [] for writer in writers}
    with tempfile.TemporaryDirectory(prefix="bench-add-latency-") as tmp, LocalHub(commit_limit=10_000_000) as hub:
        for round_number in range(args.rounds):
            shift = round_number % len(writers)
            for kind in writers[shift:] + writers[:shift]:
                print(f"add_latency: round {round_number + 1}/{args.rounds}, {kind} ...", file=sys.stderr, flush=True)
                results[kind].append(run_worker(hub, kind, args, Path(tmp)))
    emit(render(results, args), results, json_path=args.json, markdown_path=args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
