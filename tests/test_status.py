"""`hf-summary status LOGDIR [--json]`: where a run stands, from the journal alone; never the token."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers import REPO_ROOT, wait_until
from trainer_kit import Trainer, api, cli, fake_dead_run, hub_env

from hf_summary.journal import journal_path
from hf_summary.localhub.testing import LocalHub
from hf_summary.status import run_status

KEYS = {
    "pending_segments", "pending_bytes", "oldest_pending_age_s", "last_commit", "last_error", "uploader_alive",
    "uploader_pid", "repo_id",
}


def _status(logdir, env) -> dict:
    result = cli("status", str(logdir), "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_status_of_a_live_run_then_a_finished_one(tmp_path, hub, repo_id):
    logdir = tmp_path / "live"
    env = hub_env(hub)
    with Trainer(logdir, {"REPO": repo_id, **env}, tmp_path) as trainer:
        trainer.command("log 100", "logged")
        assert trainer.command("push wait", "pushed")["ok"]
        trainer.command("log 20", "logged")
        wait_until(lambda: run_status(logdir)["uploader_alive"], timeout=30, message="the uploader to take the lease")
        status = _status(logdir, env)
        assert KEYS <= status.keys()
        assert status["repo_id"] == repo_id
        assert status["uploader_pid"] == trainer.uploader
        assert status["pending_segments"] == 0 and status["pending_bytes"] == 0
        assert status["oldest_pending_age_s"] is None and status["last_error"] is None
        assert status["open_segments"] == 1
        commit = status["last_commit"]
        assert commit["oid"] in {c.commit_id for c in api(hub).list_repo_commits(repo_id)}
        assert commit["url"].endswith(commit["oid"]) and repo_id in commit["url"]
        assert commit["at"] > 0
        text = cli("status", str(logdir), env=env)
        assert text.returncode == 0
        assert f"alive (pid {trainer.uploader})" in text.stdout and repo_id in text.stdout
        for output in (json.dumps(status), text.stdout + text.stderr):
            assert hub.token() not in output
        trainer.command("close", "closed")
    finished = _status(logdir, env)
    assert finished["uploader_alive"] is False and finished["uploader_pid"] is None
    assert finished["pending_segments"] == 0 and finished["open_segments"] == 0
    assert finished["committed_segments"] == 2


def test_status_of_a_failing_run_shows_the_backlog_and_the_error_but_never_the_token(tmp_path, repo_id):
    token = "hf_" + "Tk9" * 12  # a token of the real Hub's shape
    logdir = tmp_path / "failing"
    with LocalHub(users={"alice": token}) as own:
        env = hub_env(own)
        files = fake_dead_run(logdir, endpoint=own.endpoint, repo_id=repo_id, open_tail=False)
        own.set_faults([{"method": "POST", "path": "/commit/", "status": 503}])
        failed = cli("recover", str(logdir), "--timeout", "2", env=env)
        assert failed.returncode == 1, failed.stdout + failed.stderr
    status = _status(logdir, {})
    assert status["pending_segments"] == 2
    assert status["pending_bytes"] == sum(path.stat().st_size for path in files)
    assert status["oldest_pending_age_s"] > 0
    assert "503" in status["last_error"]["message"] and status["last_error"]["permanent"] is False
    assert status["last_commit"] is None and status["uploader_alive"] is False
    text = cli("status", str(logdir), env={})
    assert "Pending:    2 segment(s)" in text.stdout and "503" in text.stdout
    everything = json.dumps(status) + text.stdout + text.stderr + failed.stdout + failed.stderr
    assert token not in everything
    assert token.encode() not in b"".join(path.read_bytes() for path in journal_path(logdir).parent.iterdir())


def test_status_without_a_usable_journal_says_so(tmp_path):
    missing = cli("status", str(tmp_path), env={})
    assert missing.returncode == 2 and "no hf-summary journal" in missing.stderr
    journal = journal_path(tmp_path)
    journal.parent.mkdir()
    journal.write_bytes(b"this is not a database" * 100)
    corrupt = cli("status", str(tmp_path), "--json", env={})
    assert corrupt.returncode == 2 and "Traceback" not in corrupt.stderr
    assert "hf-summary recover" in corrupt.stderr and corrupt.stdout == ""
    assert journal.read_bytes() == b"this is not a database" * 100  # status changes nothing


def test_status_imports_neither_huggingface_hub_nor_numpy(tmp_path):
    """`hf-summary status` reads a journal: it never needs the Hub client or numpy, which take most of a second to
    import (the benchmark scripts/bench_status.py times it)."""
    logdir = tmp_path / "run"
    fake_dead_run(logdir, endpoint="http://127.0.0.1:9", repo_id="alice/status-imports")
    program = (
        "import sys\n"
        "from hf_summary.cli import main\n"
        f"assert main(['status', {str(logdir)!r}]) == 0\n"
        "heavy = sorted(m for m in ('huggingface_hub', 'numpy', 'tensorboardX', 'sqlite_utils') if m in sys.modules)\n"
        "print('heavy:', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 0, result.stderr
    assert "Pending:    2 segment(s)" in result.stdout
    assert "heavy: []" in result.stdout
