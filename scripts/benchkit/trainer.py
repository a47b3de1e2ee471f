"""The environment of a benchmark's trainer process: the local Hub's endpoint and token set before
huggingface_hub is imported, basic LFS, no telemetry or progress bars, and this checkout importable."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent.parent


def trainer_env(hub: Any, user: str = "alice") -> dict[str, str]:
    return {
        **os.environ, "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": hub.token(user), "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
