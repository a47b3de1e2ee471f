"""Scenarios 2 and 7, training interference and memory: the step time of a ~5 ms training loop with logging
against without, in one process, while the Hub is throttled; the trainer's and the uploader's peak RSS."""

from __future__ import annotations

from bench_workers import WRITERS
from benchkit.harness import HUB_WRITERS, Bench, BenchError, interleaved, per_writer, wait_until
from benchkit.hub import repo_commits
from benchkit.output import Row, check, fmt
from benchkit.stats import max_or_none, median, percentile


def _interference_run(bench: Bench, writer: str) -> dict:
    """One run (see `scenario_interference`): the Hub is throttled throughout; `go` once a Hub writer's
    first push landed."""
    p = bench.profile
    hub = bench.hub()
    with bench.worker(
        "interference", writer, finish_timeout=300, reps=bench.reps, duration_s=p.interference_s,
        baseline_s=p.interference_baseline_s, histogram_every=p.histogram_every,
        commit_every=p.interference_commit_every, warmup_steps=p.interference_warmup_steps,
    ) as process:
        repo_id = process.config["repo_id"]
        process.expect("ready", 120)
        hub.set_faults([], bandwidth_bps=p.interference_bandwidth_bps)
        try:
            process.expect("opened", p.interference_baseline_s + 120)
            start = repo_commits(hub, repo_id)
            if writer in HUB_WRITERS and not wait_until(lambda: repo_commits(hub, repo_id) > start, 120):
                raise BenchError(f"{process}: no push within 120 s{process.stderr_tail()}")
            process.send("go")
            process.expect("measuring", 120)
            before = repo_commits(hub, repo_id)
            process.expect("logged", p.interference_s + 120)
            commits = repo_commits(hub, repo_id) - before
        finally:
            hub.clear_faults()
        process.send("close")
        done = process.expect("done", p.interference_baseline_s + 600)
    logged, baseline = done["logged_ms"], done["before_ms"] + done["after_ms"]
    return {
        "p50": percentile(logged, 50), "p99": percentile(logged, 99), "max": max(logged), "steps": len(logged),
        "baseline_p50": percentile(baseline, 50), "baseline_p99": percentile(baseline, 99),
        "commits": commits if writer in HUB_WRITERS else None,
        "peak_rss_mb": done["peak_rss_with_mb"], "peak_rss_without_mb": done["peak_rss_without_mb"],
        "uploader_peak_rss_mb": process.descendant_peak_mb,
    }


def run(bench: Bench) -> tuple[dict, dict]:
    p = bench.profile
    samples = interleaved(bench, "interference", WRITERS, p.interference_rounds, _interference_run)
    runs = [s for writer_runs in samples.values() for s in writer_runs]
    interference = {
        "baseline_step_ms_p50": median([s["baseline_p50"] for s in runs]),
        "baseline_step_ms_p99": median([s["baseline_p99"] for s in runs]),
        "step_ms_p50": per_writer(samples, lambda s: s["p50"]),
        "step_ms_p99": per_writer(samples, lambda s: s["p99"]),
        "step_ms_max": per_writer(samples, lambda s: s["max"], max_or_none),
        "ratio_p50_vs_no_logging": per_writer(samples, lambda s: s["p50"] / s["baseline_p50"]),
        "ratio_p50_vs_no_logging_max": per_writer(samples, lambda s: s["p50"] / s["baseline_p50"], max_or_none),
        "ratio_p99_vs_no_logging": per_writer(samples, lambda s: s["p99"] / s["baseline_p99"]),
        "steps": per_writer(samples, lambda s: s["steps"]),
        "commits_during_run": per_writer(samples, lambda s: s["commits"]),
        "duration_s": p.interference_s,
        "baseline_s": 2 * p.interference_baseline_s,
        "hub_bandwidth_bps": p.interference_bandwidth_bps,
        "commit_every_s": p.interference_commit_every * 60,
    }
    memory = {
        "baseline_trainer_peak_rss_mb": median([s["peak_rss_without_mb"] for s in runs]),
        "trainer_peak_rss_mb": per_writer(samples, lambda s: s["peak_rss_mb"]),
        "trainer_added_peak_rss_mb": per_writer(samples, lambda s: s["peak_rss_mb"] - s["peak_rss_without_mb"]),
        "uploader_peak_rss_mb": per_writer(samples, lambda s: s["uploader_peak_rss_mb"]),
    }
    return interference, memory


def rows(r: dict) -> list[Row]:
    i = r["interference"]
    p50 = i["ratio_p50_vs_no_logging"]
    return [
        Row("2. training interference", "step time p50 with logging / without, same process (no logging: "
            f"{fmt(i['baseline_step_ms_p50'], 2, ' ms')}) ⁵", p50, "×", 3, "ours ≤ 1.03×",
            check(p50["ours"], lambda x: x <= 1.03)),
        Row("", "… worst round", i["ratio_p50_vs_no_logging_max"], "×", 3),
        Row("", f"step time p99 with logging / without (no logging: {fmt(i['baseline_step_ms_p99'], 2, ' ms')})",
            i["ratio_p99_vs_no_logging"], "×", 3),
        Row("", "step time p50 / p99 with logging", {
            w: f"{fmt(i['step_ms_p50'][w], 2, '')} / {fmt(i['step_ms_p99'][w], 2, ' ms')}" for w in WRITERS
        }),
        Row("", "commits during the timed phase", i["commits_during_run"], "", 0),
    ]


def memory_rows(r: dict) -> list[Row]:
    m = r["memory_mb"]
    return [
        Row("7. memory", f"trainer peak RSS added vs no logging (no logging: "
            f"{fmt(m['baseline_trainer_peak_rss_mb'], 0, ' MB')}) ³", m["trainer_added_peak_rss_mb"], " MB", 0),
        Row("", "uploader process peak RSS", m["uploader_peak_rss_mb"], " MB", 0,
            notes={"tensorboardX": "—", "huggingface_hub": "in-process thread"}),
    ]


def workload(p, results: dict) -> str:
    reps = results.get("interference", {}).get("train_step_reps")
    return (
        f"{p.interference_rounds} round(s) per writer of {p.interference_baseline_s:g} s without "
        f"logging, {p.interference_s:g} s with, {p.interference_baseline_s:g} s without: a single-threaded numpy "
        f"step (~5 ms; {reps} matmul+tanh reps) logging 2 scalars per step and a 1000-value histogram every "
        f"{p.histogram_every} steps, timed after a warm-up (≥ {p.interference_warmup_steps} steps, and until a Hub "
        f"writer's first push landed); commit every {p.interference_commit_every * 60:g} s; the Hub reads request "
        f"bodies at {p.interference_bandwidth_bps / 1000:g} kB/s."
    )
