"""Benchmark `add_latency`: how long each `add_scalar` / `add_scalars` call keeps the training thread, over a
paced run with rolls and pushes going on, for no writer (the loop and the machine alone), tensorboardX's
`SummaryWriter`, torch's (`torch.utils.tensorboard`, where torch is installed), hf-summary's `HFSummaryWriter`
rolling every `--tick-s` (and the same without a roll during the run), side by side in one run. Each logs Python
floats; tensorboardX, torch and ours also log each other kind of value of `--values` (a numpy scalar, a 0-d numpy
array, 0-d float32 and bfloat16 tensors: `scripts/benchkit/values.py`) in runs of their own.

Per writer, the median over rounds of p50 / p99 / p99.9 / max (µs) of every call (the first step of the run
excluded: it opens the first file), the calls over 1 ms and 5 ms, and, for the calls over `--slow-us`, where they
come from: the share that overlapped a garbage collection (any thread's, seen by a `gc.callbacks` hook), that
came within `NEAR_ROLL_MS` of a segment being sealed (hf-summary only: the journal's `sealed_at`), and the share
of their time the training thread spent off the CPU (waiting for the GIL, or descheduled: `thread_time` against
the wall clock). Ratios against tensorboardX and against no writer are printed alongside.

Usage::

    python scripts/bench_add_latency.py                      # 3 rounds of 20 s per writer, a roll every 0.25 s
    python scripts/bench_add_latency.py --rounds 1 --duration-s 3 --json out.json

Each trainer is a fresh interpreter (`--worker`) with `HF_ENDPOINT`/`HF_TOKEN`/`HF_HUB_DISABLE_XET` set
before huggingface_hub is imported; writers are interleaved over rounds (A B C, B C A, ...); hf-summary pushes to
the local Hub. Nothing in the timed process runs but the loop and the writer's own threads. Every process started
here is ended by its own pid.
"""

from __future__ import annotations

import argparse
import array
import json
import subprocess
import sys
import tempfile
import time
import uuid
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from benchkit.gcpauses import GCPauses, longest, overlaps
from benchkit.output import emit
from benchkit.stats import median, percentile, spread
from benchkit.trainer import trainer_env
from benchkit.values import KINDS, LABELS, available_kinds, maker

SCRIPTS = Path(__file__).resolve().parent
REPO_ROOT = SCRIPTS.parent
WRITERS = ("none", "tensorboardX", "torch", "ours", "ours_no_roll") if find_spec("torch") else (
    "none", "tensorboardX", "ours", "ours_no_roll")
KIND_WRITERS = ("tensorboardX", "torch", "ours")  # the writers timed with the other kinds of value than float
REFUSED = {"tensorboardX/bfloat16"}  # tensorboardX's conversion has no bfloat16: it raises
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
    if kind == "torch":
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(config["logdir"])
    from hf_summary import HFSummaryWriter

    minutes = NO_ROLL_MINUTES if kind == "ours_no_roll" else config["tick_s"] / 60
    return HFSummaryWriter(config["repo_id"], logdir=config["logdir"], commit_every=minutes)


def worker(config: dict[str, Any]) -> dict[str, Any]:
    """The paced loop: each step calls `add_scalar` per tag and one `add_scalars`, each call timed alone."""
    import tensorboardX  # noqa: F401  (every variant pays the same imports, torch included when installed)

    kind = config["writer"]
    writer = _open(kind, config)
    wall_offset_ns = time.time_ns() - time.perf_counter_ns()
    starts, walls, cpus, kinds = array.array("q"), array.array("q"), array.array("q"), array.array("b")
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    add_scalar, add_scalars = writer.add_scalar, writer.add_scalars
    value = maker(config.get("value", "float"))
    period = 1.0 / config["steps_per_s"]
    start = time.monotonic()
    step = 0
    with GCPauses() as gc_pauses:
        while time.monotonic() - start < config["duration_s"]:
            for tag in SCALAR_TAGS:
                scalar = value(1.0 / (step + 1))
                c0 = cpu_clock()
                t0 = clock()
                add_scalar(tag, scalar, step)
                t1 = clock()
                c1 = cpu_clock()
                starts.append(t0), walls.append(t1 - t0), cpus.append(c1 - c0), kinds.append(0)
            pair = {"a": value(step * 0.5), "b": value(-step * 0.5)}
            c0 = cpu_clock()
            t0 = clock()
            add_scalars("pair", pair, step)
            t1 = clock()
            c1 = cpu_clock()
            starts.append(t0), walls.append(t1 - t0), cpus.append(c1 - c0), kinds.append(1)
            step += 1
            time.sleep(max(0.0, start + step * period - time.monotonic()))
    if kind != "none":
        writer.close()
    seals: list[int] = []
    if kind.startswith("ours"):
        from hf_summary.journal import Journal

        with Journal(Path(config["logdir"]), create=False) as journal:
            seals = [int(row.sealed_at * 1e9) - wall_offset_ns for row in journal.segments() if row.sealed_at]
    per_step = len(SCALAR_TAGS) + 1
    return {"steps": step, "starts": starts[per_step:].tolist(), "walls": walls[per_step:].tolist(),
            "cpus": cpus[per_step:].tolist(), "kinds": kinds[per_step:].tolist(), "gc_spans": gc_pauses.spans(),
            "seals": sorted(seals)}


# ---------------------------------------------------------------- the parent


def _near(t: int, points: list[int], window_ns: float) -> bool:
    return any(abs(t - p) <= window_ns for p in points)


def summarise(raw: dict[str, Any], slow_us: float) -> dict[str, Any]:
    """Figures of one run: per method (and all calls) the percentiles, and where the slow calls come from."""
    out: dict[str, Any] = {"steps": raw["steps"], "gc_collections": len(raw["gc_spans"]),
                           "gc_max_us": longest(raw["gc_spans"]) / 1e3}
    calls = list(zip(raw["starts"], raw["walls"], raw["cpus"], raw["kinds"], strict=True))
    for name, selected in (("all", calls), ("add_scalar", [c for c in calls if c[3] == 0]),
                           ("add_scalars", [c for c in calls if c[3] == 1])):
        ordered = sorted(wall for _, wall, _, _ in selected)
        figures = {key: percentile(ordered, q) / 1e3 for key, q in PERCENTILES}
        figures["max"] = ordered[-1] / 1e3
        figures["over_1ms"] = sum(1 for wall in ordered if wall > 1_000_000)
        figures["over_5ms"] = sum(1 for wall in ordered if wall > 5_000_000)
        out[name] = figures
    slow = [c for c in calls if c[1] > slow_us * 1e3]
    total = sum(wall for _, wall, _, _ in slow)
    out["slow_calls"] = len(slow)
    out["slow_in_gc"] = sum(1 for t, wall, _, _ in slow if overlaps(t, t + wall, raw["gc_spans"]))
    out["slow_near_roll"] = sum(1 for t, _, _, _ in slow if _near(t, raw["seals"], NEAR_ROLL_MS * 1e6))
    out["slow_off_cpu_share"] = sum(max(0, wall - cpu) for _, wall, cpu, _ in slow) / total if total else None
    out["rolls"] = len(raw["seals"])
    return out


def run_worker(hub: Any, variant: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """One trainer: `variant` is a writer (logging floats) or `writer/kind` (`benchkit.values`)."""
    kind, _, value = variant.partition("/")
    name = f"{variant.replace('/', '-')}-{uuid.uuid4().hex[:6]}"
    config = {"writer": kind, "value": value or "float", "logdir": str(tmp / name),
              "repo_id": f"alice/add-latency-{name.replace('_', '-')}",
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


def _figures(rounds: list[dict], *keys: str) -> list[Any]:
    """The figure at `keys` of each round."""
    values = []
    for result in rounds:
        value: Any = result
        for key in keys:
            value = value[key]
        values.append(value)
    return values


def _median(rounds: list[dict], *keys: str) -> float | None:
    return median(_figures(rounds, *keys))


def _spread(rounds: list[dict], *keys: str) -> str:
    return spread(_figures(rounds, *keys))


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
    return head + "\n".join(lines) + "\n" + _render_kinds(results)


def _render_kinds(results: dict[str, list[dict]]) -> str:
    """`add_scalar`'s p50 and p99 per kind of value (the runs `writer/kind`), and the ratios to ours."""
    kinds = ["float", *sorted({v.partition("/")[2] for v in results if "/" in v}, key=KINDS.index)]
    writers = [w for w in KIND_WRITERS if results.get(w)]
    if len(kinds) < 2 or "ours" not in writers:
        return ""
    others = [w for w in writers if w != "ours"]
    lines = ["", "`add_scalar` per kind of value (p50 / p99, µs; ×: the other writer's p50 / ours):", "",
             "| value | " + " | ".join(writers) + " | " + " | ".join(f"{w} / ours" for w in others) + " |",
             "|---|" + "--:|" * (len(writers) + len(others))]
    for kind in kinds:
        p50 = {w: _median(results.get(w if kind == "float" else f"{w}/{kind}", []), "add_scalar", "p50")
               for w in writers}
        p99 = {w: _median(results.get(w if kind == "float" else f"{w}/{kind}", []), "add_scalar", "p99")
               for w in writers}
        cells = ["refused" if p50[w] is None else f"{p50[w]:.1f} / {p99[w]:.1f}" for w in writers]
        cells += ["n/a" if not (p50[w] and p50["ours"]) else f"{p50[w] / p50['ours']:.1f}×" for w in others]
        lines.append(f"| {LABELS[kind]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration-s", type=float, default=20.0)
    parser.add_argument("--tick-s", type=float, default=0.25)
    parser.add_argument("--steps-per-s", type=float, default=500.0)
    parser.add_argument("--slow-us", type=float, default=200.0, help="a call slower than this is counted as slow")
    parser.add_argument("--only", choices=WRITERS, action="append")
    parser.add_argument("--values", default=",".join(available_kinds()),
                        help=f"kinds of value to log, among {', '.join(available_kinds())} (default: all); "
                        f"the kinds but float are timed with {', '.join(KIND_WRITERS)} only")
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
    values = [kind for kind in args.values.split(",") if kind != "float"]
    variants = (*writers, *(f"{writer}/{kind}" for kind in values for writer in KIND_WRITERS
                            if writer in writers and f"{writer}/{kind}" not in REFUSED))
    results: dict[str, list[dict]] = {variant: [] for variant in variants}
    with tempfile.TemporaryDirectory(prefix="bench-add-latency-") as tmp, LocalHub(commit_limit=10_000_000) as hub:
        for round_number in range(args.rounds):
            shift = round_number % len(variants)
            for kind in variants[shift:] + variants[:shift]:
                print(f"add_latency: round {round_number + 1}/{args.rounds}, {kind} ...", file=sys.stderr, flush=True)
                results[kind].append(run_worker(hub, kind, args, Path(tmp)))
    emit(render(results, args), results, json_path=args.json, markdown_path=args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
