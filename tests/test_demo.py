"""`hf-summary demo` runs offline: with no Hub configured it starts the local Hub and checks every event."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers import REPO_ROOT


def test_demo_with_no_hub_configured_uses_the_local_hub(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HF_ENDPOINT", "HUGGING_FACE_HUB_TOKEN")}
    env.update(HF_HOME=str(tmp_path / "hf_home"), PYTHONPATH=str(REPO_ROOT))
    result = subprocess.run(
        [sys.executable, "-m", "hf_summary", "demo", "--steps", "40"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No Hub configured: started the local Hub at http://127.0.0.1:" in result.stdout
    assert "OK: every logged event is on the Hub" in result.stdout
    logged = [line for line in result.stdout.splitlines() if line.startswith("Events logged:")]
    assert logged and logged[0].split(";")[0].split(":")[1].strip() != "0"


DEMO_STEPS = """
import json
from pathlib import Path

from helpers import visible_steps
from hf_summary.demo import run_demo
from hf_summary.verify import iter_events


def steps_per_tag(result):
    run = result.workdir / "from-hub" / "tensorboard" / "demo-run"
    tags = {(name, value.tag) for name, event in iter_events(run) for value in event.summary.value}
    print(json.dumps({f"{name}:{tag}": visible_steps(run, name, tag) for name, tag in sorted(tags)}))


run_demo(steps=30, say=lambda line: None, then=steps_per_tag)
"""


def test_demo_run_continues_its_steps_one_series_per_tag(tmp_path):
    """The second phase continues the first one's steps: every tag is one series, no step logged twice."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HF_ENDPOINT", "HUGGING_FACE_HUB_TOKEN")}
    env.update(HF_HOME=str(tmp_path / "hf_home"), PYTHONPATH=os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "tests")]))
    result = subprocess.run(
        [sys.executable, "-c", DEMO_STEPS], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    steps = json.loads(result.stdout.splitlines()[-1])
    assert steps[":train/loss"] == steps[":train/weight_norm"] == list(range(60))
    assert steps[":weights"] == steps[":weights_image"] == list(range(0, 60, 20))
    assert steps[":summary/text_summary"] == [29, 59]
