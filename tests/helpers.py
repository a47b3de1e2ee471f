"""Test utilities: read event files back with a raw record scan, fetch a repo's files, wait on conditions."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from huggingface_hub import HfApi

from hf_summary.verify import event_keys, iter_events

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


def hub_text(hub, repo_id: str, path: str) -> str | None:
    """The text of file ``path`` of the repo's main branch now; ``None`` while it has none."""
    api = HfApi(endpoint=hub.endpoint, token=hub.token())
    if path not in api.list_repo_files(repo_id):
        return None
    with tempfile.TemporaryDirectory(prefix="hub-text-") as cache:
        return Path(api.hf_hub_download(repo_id, path, cache_dir=cache)).read_text()


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


def require_frameworks(*modules: str, env: str = "frameworks") -> None:
    """Skip the calling test module when a framework is missing (the plain ``py`` env); in the tox env that
    runs it (``HF_SUMMARY_REQUIRE_FRAMEWORKS`` names that env: ``frameworks`` or ``foreign``), fail instead of
    skipping. Another env collects the module without running it, so it skips there."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if not missing:
        return
    message = f"needs {', '.join(missing)} (these tests run in `tox -e {env}`)"
    if os.environ.get("HF_SUMMARY_REQUIRE_FRAMEWORKS") == env:
        raise ImportError(message)
    pytest.skip(message, allow_module_level=True)


def visible_steps(root: Path, run: str, tag: str) -> list[int]:
    """The steps of ``tag`` in run dir ``run`` that TensorBoard's Python reader shows: events in file order, and a
    ``SessionLog.START`` at step S (a restart, ``purge_step``) hides the earlier events with a step >= S."""
    steps: list[int] = []
    for event_run, event in iter_events(root):
        if event_run != run:
            continue
        if event.HasField("session_log") and event.session_log.status == event.session_log.START:
            steps = [step for step in steps if step < event.step]
        steps += [event.step for value in event.summary.value if value.tag == tag]
    return steps


def start_job(
    script: Path, config: dict, cwd: Path, env: dict[str, str] | None = None, launcher: tuple[str, ...] = ()
) -> subprocess.Popen:
    """Run a training job script (``tests/*_job.py``) with its JSON config in a process group of its own (so
    ``finish_job`` can end every process it started), under ``python -m <launcher...>`` if given."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen(
        [sys.executable, *launcher, str(script), json.dumps(config)], cwd=cwd, env=full_env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )


def finish_job(job: subprocess.Popen, timeout: float = 240) -> tuple[str, str]:
    """Wait for the job and return its (rest of) stdout and stderr. If it overstays ``timeout`` (or the wait
    fails), end its whole process group while its leader is alive, so the group id is still its own (the
    uploader lives in a session of its own and is not touched)."""
    try:
        return job.communicate(timeout=timeout)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()


def preempt_at(job: subprocess.Popen, line: str, signum: int = signal.SIGTERM) -> None:
    """Send ``signum`` to the job once it printed ``line`` (or ended without printing it)."""
    for printed in job.stdout:
        if printed.strip() == line:
            job.send_signal(signum)
            return


# The journal's schema at version 1 (before compaction), to test migrations from it.
V1_SCHEMA = """
CREATE TABLE settings (id INTEGER PRIMARY KEY CHECK (id = 1), repo_id TEXT NOT NULL, repo_type TEXT NOT NULL,
    revision TEXT NOT NULL, path_in_repo TEXT NOT NULL, allow_patterns TEXT, ignore_patterns TEXT,
    squash_history INTEGER NOT NULL, commit_every_s REAL NOT NULL, private INTEGER, endpoint TEXT,
    updated_at REAL NOT NULL);
CREATE TABLE flags (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE sequence (id INTEGER PRIMARY KEY CHECK (id = 1), next INTEGER NOT NULL);
INSERT INTO sequence (id, next) VALUES (1, 6);
CREATE TABLE segments (id INTEGER PRIMARY KEY AUTOINCREMENT, run TEXT NOT NULL, name TEXT NOT NULL,
    path_in_repo TEXT NOT NULL UNIQUE, state TEXT NOT NULL CHECK (state IN ('open', 'sealed', 'committed')),
    size INTEGER, sha256 TEXT, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, created_at REAL NOT NULL,
    sealed_at REAL, committed_at REAL, commit_oid TEXT, writer_pid INTEGER, writer_create_time REAL,
    UNIQUE (run, name));
CREATE INDEX segments_by_state ON segments (state, id);
CREATE TABLE lease (id INTEGER PRIMARY KEY CHECK (id = 1), pid INTEGER NOT NULL, create_time REAL NOT NULL,
    host TEXT NOT NULL, acquired_at REAL NOT NULL, heartbeat_at REAL NOT NULL);
CREATE TABLE history (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, kind TEXT NOT NULL,
    message TEXT NOT NULL, fields TEXT NOT NULL);
CREATE INDEX history_by_kind ON history (kind, id);
PRAGMA application_id = 1212568405;
PRAGMA user_version = 1;
"""
