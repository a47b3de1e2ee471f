"""Scenario 6, start-up: the writer's import (numpy and torch loaded first), and its constructor with the Hub up
and down."""

from __future__ import annotations

from importlib.util import find_spec

from bench_workers import WRITERS
from benchkit.harness import HUB_WRITERS, Bench, interleaved, per_writer
from benchkit.hub import closed_port_endpoint
from benchkit.output import Row, check
from benchkit.stats import median


def _startup_run(bench: Bench, writer: str, endpoint: str | None) -> dict:
    with bench.worker("startup", writer, endpoint=endpoint, commit_every=5) as process:
        return process.expect("result", 120)


def run(bench: Bench) -> dict:
    """Constructor latency with the Hub up and down, interleaved. tensorboardX never contacts a Hub, so it is
    only measured once per round."""
    p = bench.profile
    down = closed_port_endpoint()
    variants = (*WRITERS, *(f"{writer}/down" for writer in HUB_WRITERS))
    samples = interleaved(bench, "startup", variants, p.startup_rounds,
                           lambda b, v: _startup_run(b, v.split("/")[0], down if v.endswith("/down") else None))
    up = {writer: samples[writer] for writer in WRITERS}
    down_samples = {writer: samples.get(f"{writer}/down", []) for writer in WRITERS}
    return {
        "import_s": per_writer(up, lambda s: s["import_s"]),
        "import_rss_mb": per_writer(up, lambda s: s["import_rss_mb"]),
        "torch_import_s": median([s["torch_import_s"] for runs in up.values() for s in runs]),
        "constructor_hub_up_s": per_writer(up, lambda s: s["constructor_s"]),
        "constructor_hub_down_s": per_writer(down_samples, lambda s: s["constructor_s"]),
        "notes": {
            variant: runs[0]["error"] for variant, runs in samples.items() if runs and runs[0]["error"]
        },
    }


IMPORT_CONTEXT = "numpy and torch already imported" if find_spec("torch") else "numpy already imported"


def rows(r: dict) -> list[Row]:
    s = r["startup_s"]
    down_note = {"tensorboardX": "no Hub", **{w: "raises" for w in HUB_WRITERS if f"{w}/down" in s["notes"]}}
    return [
        Row("6. start-up", f"import of the writer ({IMPORT_CONTEXT}) ⁴", s["import_s"], " s", 2),
        Row("", "… resident memory it adds", s["import_rss_mb"], " MB", 0),
        Row("", "constructor, Hub up", s["constructor_hub_up_s"], " s", 3, "ours ≤ 0.5 s",
            check(s["constructor_hub_up_s"]["ours"], lambda x: x <= 0.5)),
        Row("", "constructor, Hub down (port closed)", s["constructor_hub_down_s"], " s", 3, "ours ≤ 3 s",
            check(s["constructor_hub_down_s"]["ours"], lambda x: x <= 3), notes=down_note),
    ]


def workload(p, results: dict) -> str:
    return f"{p.startup_rounds} round(s), each in a fresh process."
