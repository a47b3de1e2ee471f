"""Fault soak, short variant: ``scripts/soak.py`` for ~45 s with a push every 3 s (the 10-minute run is
``python scripts/soak.py``, or ``pytest -m slow`` for a 3-minute one)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import REPO_ROOT

SOAK = REPO_ROOT / "scripts" / "soak.py"


def _soak(tmp_path, minutes: float, commit_every: float) -> dict:
    out = tmp_path / "soak.json"
    result = subprocess.run(
        [sys.executable, str(SOAK), "--minutes", str(minutes), "--commit-every", str(commit_every),
         "--json", str(out), "--quiet"],
        capture_output=True, text=True, timeout=minutes * 60 + 400,
    )
    assert out.exists(), f"the soak did not finish:\n{result.stdout}\n{result.stderr[-5000:]}"
    summary = json.loads(out.read_text())
    print(result.stdout)  # the summary table, shown with -s or on failure
    return summary


def _check(summary: dict) -> None:
    events, commits, trainer = summary["events"], summary["commits"], summary["trainer"]
    assert events["logged"] > 1000
    assert events["missing_on_hub"] == 0 and events["extra_on_hub"] == 0, events
    assert trainer["error_count"] == 0, trainer["errors"]
    assert summary["checks"]["every acknowledged scalar is in the logdir"]
    retries = max(summary["retries"]["failed_attempts_logged"], summary["retries"]["errors_in_journal_history"])
    assert commits["push_commits"] <= commits["ticks"] + retries, commits
    assert trainer["latency"]["all"]["max_ms"] < 1000, trainer["slowest"]  # the injected latency is 2000 ms
    assert trainer["latency"]["scalar"]["p99_ms"] < 50, trainer["latency"]
    assert summary["uploader"]["pids"] and len(summary["uploader"]["pids"]) == 1, summary["uploader"]
    assert summary["checks"]["uploader memory flat"], summary["uploader"]
    assert summary["checks"]["nothing pending at the end"]
    assert not summary["uploader"]["left_running"]
    assert summary["ok"], summary["checks"]


def test_short_soak_loses_nothing_and_never_blocks_the_trainer(tmp_path):
    summary = _soak(tmp_path, minutes=0.75, commit_every=0.05)
    _check(summary)
    assert summary["retries"]["failed_attempts_logged"] > 0  # the faults did reach the uploader


@pytest.mark.slow
def test_three_minute_soak(tmp_path):
    _check(_soak(tmp_path, minutes=3, commit_every=0.05))
