"""Scenario 1, logging cost: `add_scalar` calls per second until return (and including `close()`) on a
settled writer, then mixed steps; and the cost of one `add_scalar` call per kind of value a loop logs."""

from __future__ import annotations

from importlib.util import find_spec

from bench_workers import WRITERS
from benchkit.harness import Bench, interleaved, per_writer, ratios
from benchkit.output import Row, check, fmt
from benchkit.stats import divide, max_or_none, median
from benchkit.values import LABELS, available_kinds

# torch's own writer joins where torch is installed (for the per-kind figures; the table's columns stay)
KIND_WRITERS = ("ours", "tensorboardX", "torch", "huggingface_hub") if find_spec("torch") else (
    "ours", "tensorboardX", "huggingface_hub")


def _logging_run(bench: Bench, writer: str) -> dict:
    p = bench.profile
    with bench.worker("logging_cost", writer, n_scalars=p.n_scalars, n_mixed=p.n_mixed, n_kinds=p.n_kinds,
                      commit_every=5) as process:
        return process.expect("result", 600)


def run(bench: Bench) -> dict:
    p = bench.profile
    samples = interleaved(bench, "logging_cost", (*WRITERS, *(w for w in KIND_WRITERS if w not in WRITERS)),
                          p.rounds, _logging_run)
    figures = {
        "scalar_events_per_s": per_writer(samples, lambda r: p.n_scalars / r["scalar_s"]),
        "scalar_events_per_s_incl_close": per_writer(
            samples, lambda r: p.n_scalars / (r["scalar_s"] + r["scalar_close_s"])),
        "mixed_steps_per_s": per_writer(samples, lambda r: p.n_mixed / r["mixed_s"]),
        "mixed_steps_per_s_incl_close": per_writer(
            samples, lambda r: p.n_mixed / (r["mixed_s"] + r["mixed_close_s"])),
        "user_space_buffered_bytes": per_writer(
            samples, lambda r: max(r["scalar_buffered_bytes"], r["mixed_buffered_bytes"]), max_or_none),
    }
    return {**figures, **ratios(figures, "scalar_events_per_s", "scalar"),
            **ratios(figures, "mixed_steps_per_s", "mixed"), "n_scalars": p.n_scalars, "n_mixed_steps": p.n_mixed,
            "add_scalar_us_per_kind": _per_kind(samples), "n_kinds": p.n_kinds}


def _per_kind(samples: dict[str, list[dict]]) -> dict[str, dict[str, float | None]]:
    """`{kind: {writer: median µs per add_scalar call, ..., "ratio_tensorboardX_vs_ours": ...}}`."""
    figures = {}
    for kind in available_kinds():
        us = {writer: median([run["kinds_us"].get(kind) for run in samples.get(writer, [])])
              for writer in KIND_WRITERS}
        figures[kind] = {**us, **{f"ratio_{other}_vs_ours": divide(us[other], us["ours"])
                                  for other in KIND_WRITERS if other != "ours"}}
    return figures


def render_kinds(c: dict) -> str:
    """The per-kind table: µs per `add_scalar` call, and how many times ours each other writer takes."""
    per_kind = c["add_scalar_us_per_kind"]
    others = [w for w in KIND_WRITERS if w != "ours"]
    lines = [f"`add_scalar` per kind of value: µs per call on a settled writer, best of 3 runs of {c['n_kinds']:,} "
             "calls, median over rounds (×: the other writer's time / ours)", "",
             "| value | " + " | ".join(KIND_WRITERS) + " | " + " | ".join(f"{w} / ours" for w in others) + " |",
             "|---|" + "--:|" * (len(KIND_WRITERS) + len(others))]
    for kind, figures in per_kind.items():
        cells = [fmt(figures[w], 1, "", "refused") for w in KIND_WRITERS]
        cells += [fmt(figures[f"ratio_{w}_vs_ours"], 1, "×") for w in others]
        lines.append(f"| {LABELS[kind]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


PUSHED = {"ours": " (incl. Hub push)"}


def rows(r: dict) -> list[Row]:
    c = r["logging_cost"]
    ratio = c["ratio_scalar_ours_vs_tensorboardX"]
    return [
        Row("1. logging cost", f"`add_scalar` events/s until return ({c['n_scalars']:,} scalars)",
            c["scalar_events_per_s"], digits=0, target=f"≥ 10× tensorboardX (ours: {fmt(ratio, 2, '×')})",
            met=check(ratio, lambda x: x >= 10)),
        Row("", "`add_scalar` events/s incl. `close()` ¹", c["scalar_events_per_s_incl_close"], digits=0,
            suffix=PUSHED),
        Row("", f"mixed steps/s until return ({c['n_mixed_steps']:,} steps: 2 scalars, histogram, 32×32 image)",
            c["mixed_steps_per_s"], digits=0,
            target=f"ours {fmt(c['ratio_mixed_ours_vs_tensorboardX'], 2, '×')} tensorboardX"),
        Row("", "mixed steps/s incl. `close()` ¹", c["mixed_steps_per_s_incl_close"], digits=0, suffix=PUSHED),
        Row("", "bytes still in user space when `add_*` returned", c["user_space_buffered_bytes"], " B",
            target="ours 0", met=check(c["user_space_buffered_bytes"]["ours"], lambda x: x == 0)),
    ]


def workload(p, results: dict) -> str:
    return f"{p.rounds} round(s): {p.n_scalars:,} `add_scalar` calls, then {p.n_mixed:,} mixed steps on a new writer."
