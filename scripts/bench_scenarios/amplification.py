"""Scenario 3, upload amplification: the bytes the Hub received per event byte logged, over a run of many
commits (LFS, and the regular mode's base64 bodies)."""

from __future__ import annotations

import sys
from typing import Any

from benchkit.harness import HUB_WRITERS, Bench, divide, interleaved, per_writer, wait_until
from benchkit.hub import repo_commits
from benchkit.output import Row, check


def _amplification_run(bench: Bench, writer: str, lfs: bool) -> dict:
    p = bench.profile
    hub = bench.hub(lfs)
    received_before = hub.stats()["bytes_received"]
    with bench.worker(
        "amplification", writer, lfs=lfs, finish_timeout=300, commit_every=p.amplification_commit_every,
        steps_per_s=p.amplification_steps_per_s,
    ) as process:
        repo_id = process.config["repo_id"]
        process.expect("ready", 120)
        start = repo_commits(hub, repo_id)
        budget = p.amplification_commits * p.amplification_commit_every * 60 * 6 + 60
        reached = wait_until(
            lambda: repo_commits(hub, repo_id) - start >= p.amplification_commits or not process.alive(), budget)
        process.send("stop")
        closed = process.expect("closed", 600)
    commits = repo_commits(hub, repo_id)
    if not reached:
        print(f"  amplification/{writer}: only {commits - start} commits in {budget:.0f} s", file=sys.stderr)
    received = hub.stats()["bytes_received"] - received_before
    return {"ratio": received / closed["event_bytes"], "commits": commits, "received_mb": received / 1e6,
            "event_mb": closed["event_bytes"] / 1e6}


def run(bench: Bench) -> dict:
    p = bench.profile
    result: dict[str, Any] = {"min_commits": p.amplification_commits,
                              "commit_every_s": p.amplification_commit_every * 60}
    for mode, rounds in (("lfs", p.amplification_rounds), ("regular", p.amplification_regular_rounds)):
        if not rounds:
            continue
        samples = interleaved(bench, f"amplification ({mode})", HUB_WRITERS, rounds,
                               lambda b, w, lfs=mode == "lfs": _amplification_run(b, w, lfs))
        result[f"amplification_{mode}"] = per_writer(samples, lambda s: s["ratio"])
        result[f"commits_{mode}"] = per_writer(samples, lambda s: s["commits"])
        result[f"event_mb_{mode}"] = per_writer(samples, lambda s: s["event_mb"])
        result[f"received_mb_{mode}"] = per_writer(samples, lambda s: s["received_mb"])
        values = result[f"amplification_{mode}"]
        result[f"ratio_{mode}_huggingface_hub_vs_ours"] = divide(values["huggingface_hub"], values["ours"])
    return result


def rows(r: dict) -> list[Row]:
    a = r["amplification"]
    rows = [
        Row("3. upload amplification", "bytes received by the Hub / event bytes (LFS, raw uploads)",
            a["amplification_lfs"], "×", 3, "ours ≤ 1.05×", check(a["amplification_lfs"]["ours"], lambda x: x <= 1.05),
            notes={"tensorboardX": "local only"}),
        Row("", "commits (LFS run)", a["commits_lfs"], "", 0, notes={"tensorboardX": "—"}),
        Row("", "event data logged (LFS run)", a["event_mb_lfs"], " MB", 1, notes={"tensorboardX": "—"}),
    ]
    if "amplification_regular" in a:
        rows.append(Row("", "bytes received / event bytes (regular mode, base64 bodies)", a["amplification_regular"],
                        "×", 3, notes={"tensorboardX": "local only"}))
    return rows


def workload(p, results: dict) -> str:
    return (
        f"{p.amplification_rounds} round(s) (LFS) and {p.amplification_regular_rounds} (regular): "
        f"{p.amplification_steps_per_s:g} mixed steps/s until the repo got {p.amplification_commits} more commits "
        f"(commit every {p.amplification_commit_every * 60:g} s), then `close()` and final push."
    )
