"""Benchmark hf-summary's `HFSummaryWriter` against tensorboardX's `SummaryWriter` (local only) and
`huggingface_hub.HFSummaryWriter`, both Hub writers pushing to the project's local Hub.

Usage::

    python scripts/bench.py                  # full run, ~10-15 minutes on 2 cores
    python scripts/bench.py --quick          # smaller sizes, under 2 minutes
    python scripts/bench.py --smoke          # every scenario at minimal size (used by tests/test_bench_smoke.py)
    python scripts/bench.py --only logging_cost,startup_s --json results.json --markdown results.md

Scenarios (JSON keys): `logging_cost`, `interference`, `amplification`, `crash_loss`,
`time_to_hub_s`, `startup_s`, `memory_mb`. Every measurement runs in a fresh trainer process
(`scripts/bench_workers.py`) with `HF_ENDPOINT`/`HF_TOKEN`/`HF_HUB_DISABLE_XET` in its environment,
because huggingface_hub reads them at import time. Writers are interleaved (A B C, B C A, C A B,
...) over several rounds and the medians are reported (per-round figures are in the JSON's `raw`). The
local Hub answers as the Hub does and the clients' Xet is off, so binary event files go up by basic LFS
(raw upload bytes; `scripts/bench_xet.py` measures the Xet path);
amplification is also measured in the regular-only mode (base64 commit bodies) in full runs.

Every process started here (local Hubs, trainers and their uploader children) is tracked by PID and create
time and ended by its own PID on exit, Ctrl-C or SIGTERM; temporary directories are removed. The harness is
`scripts/benchkit/`; each scenario is a module of `scripts/bench_scenarios/`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))
sys.path.insert(1, str(SCRIPTS.parent))
# huggingface_hub (imported through hf_summary) reads these at import time; the bench only downloads with it.
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from bench_scenarios import amplification, crash, interference, logging_cost, startup  # noqa: E402
from bench_workers import WRITERS  # noqa: E402
from benchkit.harness import Bench, machine_facts  # noqa: E402
from benchkit.output import Row, render_rows  # noqa: E402

SCENARIOS = (
    "logging_cost", "interference", "amplification", "crash_loss", "time_to_hub_s", "startup_s", "memory_mb",
)


@dataclass(frozen=True)
class Profile:
    """Sizes of one run. `full` is the default; `quick` < 2 min; `smoke` is the test's minimal run."""

    name: str
    rounds: int = 3
    n_scalars: int = 50_000
    n_mixed: int = 1_000
    n_kinds: int = 20_000  # add_scalar calls per kind of value (float, numpy, tensor...) and run
    interference_rounds: int = 5
    interference_s: float = 8.0
    interference_baseline_s: float = 4.0  # before and again after the logged phase
    interference_warmup_steps: int = 200
    interference_commit_every: float = 0.05  # minutes
    interference_bandwidth_bps: int = 50_000
    histogram_every: int = 50
    amplification_rounds: int = 2
    amplification_commits: int = 30
    amplification_commit_every: float = 0.01  # minutes
    amplification_steps_per_s: float = 40.0
    amplification_regular_rounds: int = 1  # 0: skip the regular-mode (base64) measurement
    crash_rounds: int = 3
    crash_commit_every: float = 0.05
    crash_kill_window_s: tuple[float, float] = (3.0, 8.0)
    crash_quiet_s: float = 3.0  # no live process of the run and no new commit for this long: nothing more can come
    calibrate: bool = True  # size the training step to ~5 ms (smoke: a fixed, smaller step)
    startup_rounds: int = 5


PROFILES = {
    "full": Profile("full"),
    "quick": Profile(
        "quick", rounds=1, n_scalars=20_000, n_mixed=200, n_kinds=5_000, interference_rounds=1, interference_s=4.0,
        interference_baseline_s=1.5, interference_warmup_steps=50, interference_commit_every=0.04,
        amplification_rounds=1, amplification_commit_every=0.004, amplification_steps_per_s=60.0,
        amplification_regular_rounds=0,
        crash_rounds=1, crash_kill_window_s=(1.0, 2.5), startup_rounds=1,
    ),
    "smoke": Profile(
        "smoke", rounds=1, n_scalars=2_000, n_mixed=20, n_kinds=200, interference_rounds=1, interference_s=1.5,
        interference_baseline_s=0.5,
        interference_commit_every=0.01, interference_warmup_steps=20,
        amplification_rounds=1, amplification_commits=1, amplification_commit_every=0.004,
        amplification_regular_rounds=0, crash_rounds=1, crash_commit_every=0.01, crash_kill_window_s=(0.5, 1.0),
        crash_quiet_s=1.0, startup_rounds=1, calibrate=False,
    ),
}


# result key -> the rows it gives, in the table's order
ROW_BUILDERS: dict[str, Callable[[dict], list[Row]]] = {
    "logging_cost": logging_cost.rows,
    "interference": interference.rows,
    "amplification": amplification.rows,
    "crash_loss": crash.rows,
    "time_to_hub_s": crash.time_rows,
    "startup_s": startup.rows,
    "memory_mb": interference.memory_rows,
}
# result key -> (scenario numbers in the table, the workload line)
WORKLOADS: dict[str, tuple[str, Callable[[Any, dict], str]]] = {
    "logging_cost": ("1", logging_cost.workload),
    "interference": ("2, 7", interference.workload),
    "amplification": ("3", amplification.workload),
    "crash_loss": ("4, 5", crash.workload),
    "startup_s": ("6", startup.workload),
}

FOOTNOTES = (
    "¹ tensorboardX and huggingface_hub buffer events in a queue and flush them at `close()`; hf-summary's "
    "`close()` also waits for the final push to the (local) Hub.",
    "² tensorboardX: acknowledged events missing from the local event file after the SIGKILL (it has no Hub).",
    "³ peak RSS after the logged phase minus peak RSS after the first no-logging phase of the same process, which "
    "imported numpy, torch (if installed) and all three writers' modules first: the cost of logging alone (imports: "
    "see 6.); huggingface_hub's upload thread lives in the trainer.",
    "⁴ a training script has numpy (and torch) loaded already; tensorboardX imports torch whenever it is installed.",
    "⁵ each run times the loop without a writer, then with one (uploads going on), then without again after "
    "`close()`, in one process; the figure is the median over rounds of the per-run ratio.",
)


def render_table(results: dict) -> str:
    rows = [row for key, build in ROW_BUILDERS.items() if key in results for row in build(results)]
    writers = ("ours", *WRITERS[:2])
    lines = render_rows(rows, writers, ("hf-summary (ours)", *WRITERS[:2]))
    kinds = [logging_cost.render_kinds(results["logging_cost"])] if "logging_cost" in results else []
    return "\n\n".join(["\n".join([*lines, "", *FOOTNOTES]), *kinds])


def render_workloads(profile: Profile, results: dict) -> str:
    """What each scenario ran, from the profile (so that the table can be read on its own)."""
    shown = [f"- Scenario {number}: {line(profile, results)}" for key, (number, line) in WORKLOADS.items()
             if key in results]
    return "Workloads:\n\n" + "\n".join(shown)


def render_header(machine: dict, profile: Profile, seed: int) -> str:
    packages = ", ".join(f"{k} {v}" for k, v in machine["packages"].items())
    return (
        f"hf-summary benchmark ({profile.name} run, seed {seed}), {machine['date']}\n\n"
        f"- Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, {machine['os']}; "
        f"load average at start {machine['load_average_at_start']}\n"
        f"- Python {machine['python']}; {packages}; repo at {machine['git_commit']}\n"
        f"- Local Hub (`hf_summary.localhub`) in basic-LFS mode on loopback; each figure is the median over "
        f"interleaved rounds, every run in a fresh process"
    )


# ---------------------------------------------------------------- main


def run_scenarios(bench: Bench, only: set[str]) -> dict:
    results: dict[str, Any] = {}
    if "logging_cost" in only:
        results["logging_cost"] = logging_cost.run(bench)
    if only & {"interference", "memory_mb"}:
        if bench.profile.calibrate:
            bench.calibrate()
        results["interference"], results["memory_mb"] = interference.run(bench)
        results["interference"]["train_step_reps"] = bench.reps
    if "amplification" in only:
        results["amplification"] = amplification.run(bench)
    if only & {"crash_loss", "time_to_hub_s"}:
        results["crash_loss"], results["time_to_hub_s"] = crash.run(bench)
    if "startup_s" in only:
        results["startup_s"] = startup.run(bench)
    return {key: value for key, value in results.items() if key in only}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller sizes and one round (< 2 minutes)")
    size.add_argument("--smoke", action="store_true", help="every scenario at minimal size (for the test suite)")
    parser.add_argument("--only", help=f"comma-separated scenarios among {', '.join(SCENARIOS)}")
    parser.add_argument("--rounds", type=int, help="override the number of interleaved rounds of every scenario")
    parser.add_argument("--seed", type=int, help="seed of the random kill moments (default: random)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--markdown", type=Path, help="also write the header, table and workloads to this file")
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else set(SCENARIOS)
    if only - set(SCENARIOS):
        parser.error(f"unknown scenario(s): {', '.join(sorted(only - set(SCENARIOS)))}")
    args.only = only
    return args


def _profile(args: argparse.Namespace) -> Profile:
    profile = PROFILES["smoke" if args.smoke else "quick" if args.quick else "full"]
    if args.rounds:
        profile = replace(profile, rounds=args.rounds, interference_rounds=args.rounds,
                          amplification_rounds=args.rounds, crash_rounds=args.rounds, startup_rounds=args.rounds)
    return profile


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    profile = _profile(args)
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    machine = machine_facts()
    load = machine["load_average_at_start"]
    print(f"hf-summary benchmark: {profile.name} run, seed {seed} (load average {load})", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        with contextlib.ExitStack() as stack:
            bench = Bench(profile, stack, seed)
            results = run_scenarios(bench, args.only)
            errors, raw = bench.errors, bench.raw
    except KeyboardInterrupt:
        print("\ninterrupted; every process and temp dir of the bench was cleaned up", file=sys.stderr)
        return 130
    elapsed = time.monotonic() - started
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    document = {"machine": machine, "profile": asdict(profile), "seed": seed, "elapsed_s": elapsed,
                **results, "errors": errors, "raw": raw}
    report = (f"{render_header(machine, profile, seed)}\n\n{render_table(results)}\n\n"
              f"{render_workloads(profile, results)}\n\nThe run took {elapsed:.0f} s.\n")
    print(f"\n{report}")
    if errors:
        print(f"\nerrors: {json.dumps(errors, indent=2)}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(report)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
