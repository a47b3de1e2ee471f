"""Test utilities: read event files back with a raw record scan, fetch a repo's files, wait on conditions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import psutil
from huggingface_hub import HfApi

from hf_summary.verify import event_keys

REPO_ROOT = Path(__file__).resolve().parent.parent


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.05, message: str = "") -> object:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message or predicate}")
        time.sleep(interval)


def download_repo(
    endpoint: str, token: str, repo_id: str, dest: Path, *, repo_type: str = "model", revision: str = "main"
) -> Path:
    """Every file of the repo at ``revision`` (or of the bucket) into ``dest`` (exact bytes, through the real
    client)."""
    api = HfApi(endpoint=endpoint, token=token)
    if repo_type == "bucket":
        files = [entry.path for entry in api.list_bucket_tree(repo_id, recursive=True) if entry.type == "file"]
        api.download_bucket_files(repo_id, [(name, str(dest / name)) for name in files])
        return dest
    for name in api.list_repo_files(repo_id, repo_type=repo_type, revision=revision):
        api.hf_hub_download(repo_id, name, repo_type=repo_type, revision=revision, local_dir=dest)
    return dest


def hub_events(hub, repo_id: str, tmp_path: Path, *, path_in_repo: str, **kwargs) -> set[tuple]:
    """Event keys of the repo's copy of one logdir (``path_in_repo`` is the folder holding it)."""
    dest = download_repo(hub.endpoint, hub.token(), repo_id, tmp_path / f"hub-{time.monotonic_ns()}", **kwargs)
    return event_keys(dest / path_in_repo) if (dest / path_in_repo).exists() else set()


def uploader_processes(logdir: Path) -> list[psutil.Process]:
    """Live uploader processes serving ``logdir`` (found by their command line, never by name alone)."""
    found = []
    target = str(Path(logdir).resolve())
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        if "hf_summary.uploader" in cmdline and target in cmdline and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


def kill_uploaders(logdir: Path) -> None:
    for process in uploader_processes(logdir):
        try:
            process.send_signal(signal.SIGKILL)
            process.wait(10)
        except psutil.NoSuchProcess:
            pass


def run_script(
    code: str, env: dict[str, str], cwd: Path, *, argv_prefix: tuple[str, ...] = (), **kwargs
) -> subprocess.Popen:
    """Start ``code`` in a fresh interpreter (the 'trainer') with stdout piped back; ``argv_prefix`` runs
    the interpreter under another command (``unshare ...``)."""
    full_env = {**os.environ, **env, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [*argv_prefix, sys.executable, "-c", textwrap.dedent(code)],
        env=full_env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )
