"""Shared fixtures: a session-wide local Hub, clients for its users, unique repo ids, and a runner for
client code that must see environment variables at import time (HF_ENDPOINT, HF_HUB_DISABLE_XET)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import HfApi

from hf_summary.localhub.testing import LocalHub

CLIENT_TIMEOUT_S = 120


@pytest.fixture(scope="session", autouse=True)
def runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where the uploaders of this test session meet to share pushes (hf_summary/uploader/hostshare.py): a
    temporary folder, not the host's /tmp/hf-summary-<uid>. Every process the tests start inherits it."""
    folder = tmp_path_factory.mktemp("runtime")
    previous = os.environ.get("HF_SUMMARY_RUNTIME_DIR")
    os.environ["HF_SUMMARY_RUNTIME_DIR"] = str(folder)
    yield folder
    if previous is None:
        del os.environ["HF_SUMMARY_RUNTIME_DIR"]
    else:
        os.environ["HF_SUMMARY_RUNTIME_DIR"] = previous


@pytest.fixture(scope="session")
def local_hub() -> Iterator[LocalHub]:
    """A default local Hub shared by tests that don't change server-wide state (faults, restarts)."""
    with LocalHub() as hub:
        yield hub


@pytest.fixture(scope="session")
def http() -> Iterator[httpx2.Client]:
    """A plain HTTP client for requests the huggingface_hub client would never send."""
    with httpx2.Client(timeout=60) as client:
        yield client


@pytest.fixture
def api(local_hub: LocalHub) -> HfApi:
    return HfApi(endpoint=local_hub.endpoint, token=local_hub.token("alice"))


@pytest.fixture
def bob_api(local_hub: LocalHub) -> HfApi:
    return HfApi(endpoint=local_hub.endpoint, token=local_hub.token("bob"))


@pytest.fixture
def anon_api(local_hub: LocalHub) -> HfApi:
    return HfApi(endpoint=local_hub.endpoint, token=False)


@pytest.fixture
def repo_name(request: pytest.FixtureRequest) -> str:
    """A repo name unique to this test (and run): `<test name>-<random>`."""
    base = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name)[:60].strip("-")
    return f"{base}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def repo_id(repo_name: str) -> str:
    return f"alice/{repo_name}"


@pytest.fixture
def run_client(tmp_path: Path) -> Callable[..., object]:
    """Run `code` in a fresh Python with HF_ENDPOINT (and `env`) set before huggingface_hub is imported.

    The code's last stdout line must be JSON; it is returned parsed.
    """

    def run(
        hub: LocalHub, code: str, *, token: str | None = None, env: dict[str, str] | None = None
    ) -> object:
        full_env = {
            **os.environ,
            "HF_ENDPOINT": hub.endpoint,
            "HF_HOME": str(tmp_path / "hf_home"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            **({"HF_TOKEN": token} if token else {}),
            **(env or {}),
        }
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            env=full_env,
            capture_output=True,
            text=True,
            timeout=CLIENT_TIMEOUT_S,
        )
        assert result.returncode == 0, f"client failed:\n{result.stdout}\n{result.stderr}"
        return json.loads(result.stdout.strip().splitlines()[-1])

    return run


@pytest.fixture
def hub(local_hub: LocalHub) -> LocalHub:
    """The session's local Hub, for writer tests (which keep apart through ``repo_id``)."""
    return local_hub


@pytest.fixture
def writer_env(local_hub: LocalHub, monkeypatch: pytest.MonkeyPatch) -> LocalHub:
    """Point HFSummaryWriter at the session's Hub, as alice (HF_ENDPOINT is read when a writer is built)."""
    monkeypatch.setenv("HF_ENDPOINT", local_hub.endpoint)
    monkeypatch.setenv("HF_TOKEN", local_hub.token("alice"))
    return local_hub
