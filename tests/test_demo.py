"""`hf-summary demo` runs offline: with no Hub configured it starts the local Hub and checks every event."""

from __future__ import annotations

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
