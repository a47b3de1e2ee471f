"""`hf-summary recover LOGDIR`: finishes a dead run's push from the logdir alone, verifies the Hub, is idempotent,
respects a live uploader's lease, and survives a missing, corrupt or foreign journal."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import uuid

import pytest
from helpers import REPO_ROOT, uploader_processes, wait_until
from trainer_kit import (
    Trainer,
    api,
    assert_journal_sound,
    assert_repo_matches_logdir,
    bucket_files,
    cli,
    commit_titles,
    fake_dead_run,
    hub_env,
    loss_steps,
    pid_gone,
    sha256_of,
)

from hf_summary import HFSummaryWriter
from hf_summary.journal import Journal, LeaseOwner, journal_path
from hf_summary.localhub.testing import LocalHub
from hf_summary.segments import frame_record, last_complete_offset
from hf_summary.status import run_status


def _pushes(hub, repo_id) -> int:
    return sum(1 for title in commit_titles(hub, repo_id) if title.startswith("hf-summary:"))


def _rows(logdir) -> list[tuple]:
    with Journal(logdir, create=False) as journal:
        return [(row.id, row.state, row.size, row.sha256) for row in journal.segments()]


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: the Hub holds every segment" in result.stdout
    return result.stdout


def _crashed_run(tmp_path, hub, repo_id, name: str) -> tuple:
    """A real trainer that pushed once, logged on, and lost both processes: one segment committed, one left open.
    Returns (logdir, last acknowledged step)."""
    logdir = tmp_path / name
    with Trainer(logdir, {"REPO": repo_id, **hub_env(hub)}, tmp_path) as trainer:
        trainer.command("log 100", "logged")
        assert trainer.command("push wait", "pushed")["ok"]
        trainer.command("log 100", "logged")
        os.kill(trainer.uploader, 9)  # the uploader first: left alone, it would push what the trainer left
        wait_until(lambda: pid_gone(trainer.uploader), timeout=10)
        trainer.sigkill()
    return logdir, trainer.acked


def test_recover_seals_a_torn_tail_pushes_everything_and_is_idempotent(tmp_path, hub, repo_id):
    logdir = tmp_path / "dead"
    env = {"REPO": repo_id, **hub_env(hub), "HF_SUMMARY_FAULT_POINT": "after_claim"}
    with Trainer(logdir, env, tmp_path) as trainer:
        trainer.command("log 200", "logged")
        first = trainer.uploader
        trainer.command("push nowait", "pushed")
        wait_until(lambda: pid_gone(first), timeout=30, message="the uploader to die after its claim")
        trainer.command("log 50", "logged")  # a new segment: starts an uploader that dies the same way
        wait_until(lambda: not uploader_processes(logdir), timeout=30, message="the second uploader to die")
        trainer.sigkill()
    # Node loss: the last record reached the disk only in part.
    (tail,) = [row for row in _journal_rows(logdir) if row.state == "open"]
    tail_path = logdir / tail.name
    good_size = tail_path.stat().st_size
    with tail_path.open("ab") as f:
        f.write(frame_record(b"x" * 100)[:37])
    before = {path.name: sha256_of(path) for path in logdir.iterdir() if path.is_file()}
    rows = _rows(logdir)
    env = hub_env(hub)

    status = cli("status", str(logdir), "--json", env=env)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["pending_segments"] == 1 and report["open_segments"] == 1
    assert report["uploader_alive"] is False and report["uploader_pid"] is None
    assert hub.token() not in status.stdout + status.stderr

    dry = cli("recover", str(logdir), "--dry-run", env=env)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "Would push:      2 segment(s)" in dry.stdout
    assert f"{tail.path_in_repo} ({good_size} bytes): left open by a dead writer (a torn record would be cut)" in dry.stdout
    assert {path.name: sha256_of(path) for path in logdir.iterdir() if path.is_file()} == before
    assert _rows(logdir) == rows
    assert _pushes(hub, repo_id) == 0

    result = cli("recover", str(logdir), "--no-wait", env=env)
    out = _ok(result)
    assert "Tails sealed:    1" in out and "Pushed:          2 segment(s)" in out
    assert "pushing 2 segment(s)" in result.stderr  # progress
    assert hub.token() not in result.stdout + result.stderr
    assert tail_path.stat().st_size == good_size == last_complete_offset(tail_path)
    assert_repo_matches_logdir(hub, repo_id, logdir, tmp_path / "copy")
    assert set(range(trainer.acked + 1)) <= loss_steps(logdir)
    assert_journal_sound(logdir)
    with Journal(logdir, create=False) as journal:
        assert any("took over the lease of dead drainer" in e["message"] for e in journal.history("lease"))
    assert _pushes(hub, repo_id) == 1
    commits = len(commit_titles(hub, repo_id))

    again = _ok(cli("recover", str(logdir), env=env))
    assert "Pushed:          0 segment(s)" in again and "Verified:        2 segment(s)" in again
    assert len(commit_titles(hub, repo_id)) == commits  # a second run makes no commit at all


def _journal_rows(logdir):
    with Journal(logdir, create=False) as journal:
        return journal.segments()


def test_recover_waits_for_a_live_uploader_and_refuses_under_no_wait(tmp_path, hub, repo_id):
    logdir = tmp_path / "alive"
    env = hub_env(hub)
    with Trainer(logdir, {"REPO": repo_id, **env}, tmp_path) as trainer:
        uploader = trainer.command("log 100", "logged")["uploader"]
        wait_until(lambda: run_status(logdir)["uploader_alive"], timeout=30, message="the uploader to take the lease")
        refused = cli("recover", str(logdir), "--no-wait", env=env)
        assert refused.returncode == 3, refused.stdout + refused.stderr
        assert f"a live uploader (pid {uploader}) is pushing this logdir" in refused.stderr

        waiting = subprocess.Popen(
            [sys.executable, "-m", "hf_summary", "recover", str(logdir)],
            env={**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        try:
            said: list[str] = []
            threading.Thread(target=lambda: said.extend(waiting.stderr), daemon=True).start()
            wait_until(lambda: any("waiting for it to finish" in line for line in said), timeout=30,
                       message="recover to say it waits")
            assert waiting.poll() is None
            trainer.command("close", "closed")  # the uploader pushes and exits; recover takes over
            assert waiting.wait(60) == 0, "".join(said)
            assert "OK: the Hub holds every segment" in waiting.stdout.read()
        finally:
            if waiting.poll() is None:
                waiting.kill()
            waiting.wait()
            waiting.stdout.close()
    assert_repo_matches_logdir(hub, repo_id, logdir, tmp_path / "copy")
    assert_journal_sound(logdir)


@pytest.mark.parametrize("damage", ["missing", "garbage", "other_version"])
def test_recover_rebuilds_a_missing_or_unusable_journal(tmp_path, hub, repo_id, damage):
    logdir, acked = _crashed_run(tmp_path, hub, repo_id, f"damaged-{damage}")
    env = hub_env(hub)
    journal = journal_path(logdir)
    assert _pushes(hub, repo_id) == 1
    if damage == "missing":
        for side in ("", "-wal", "-shm"):
            (journal.parent / (journal.name + side)).unlink(missing_ok=True)
    elif damage == "garbage":
        db = sqlite3.connect(journal)
        db.execute("SELECT count(*) FROM segments").fetchone()
        db.close()  # the last connection checkpoints the WAL into the file and removes it
        assert not (journal.parent / (journal.name + "-wal")).exists()
        journal.write_bytes(os.urandom(journal.stat().st_size))
    else:
        with sqlite3.connect(journal) as db:
            db.execute("PRAGMA user_version = 99")
        db.close()
    damaged = journal.read_bytes() if journal.exists() else None

    if damage != "other_version":  # the settings are gone with it: --repo-id is needed
        refused = cli("recover", str(logdir), env=env)
        assert refused.returncode == 2 and "--repo-id" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
        assert (journal.read_bytes() if journal.exists() else None) == damaged  # left where it was
        result = cli("recover", str(logdir), "--repo-id", repo_id, env=env)
    else:  # readable enough: its settings are read back
        result = cli("recover", str(logdir), env=env)
    out = _ok(result)
    moved = sorted(journal.parent.glob("journal.db.broken-*"))
    if damage == "missing":
        assert not moved
    else:
        assert len([m for m in moved if m.name.endswith(("-wal", "-shm")) is False]) == 1
        assert f"the old one is kept at {moved[0]}" in out
        if damage == "garbage":
            assert moved[0].read_bytes() == damaged  # never deleted, never changed
    assert_repo_matches_logdir(hub, repo_id, logdir, tmp_path / "copy")
    assert set(range(acked + 1)) <= loss_steps(logdir)
    assert_journal_sound(logdir)
    assert _pushes(hub, repo_id) == 2  # what was on the Hub already was not committed again
    commits = len(commit_titles(hub, repo_id))
    _ok(cli("recover", str(logdir), env=env))
    assert len(commit_titles(hub, repo_id)) == commits


def test_recover_pushes_again_what_the_hub_lost_and_reports_what_nobody_has(tmp_path, hub, writer_env, repo_id):
    logdir = tmp_path / "lost"
    with HFSummaryWriter(repo_id, logdir=logdir, commit_every=60) as writer:
        for push in range(3):
            for step in range(push * 50, push * 50 + 50):
                writer.add_scalar("loss", step * 0.5, step)
            assert writer.push_to_hub(timeout=30)
    segments = sorted(path.name for path in logdir.glob("*tfevents*"))
    assert len(segments) == 3
    folder = f"tensorboard/{logdir.name}"
    client = api(hub)
    client.delete_file(f"{folder}/{segments[0]}", repo_id)
    client.upload_file(path_or_fileobj=b"not the segment", path_in_repo=f"{folder}/{segments[1]}", repo_id=repo_id)
    env = hub_env(hub)

    dry = cli("recover", str(logdir), "--dry-run", env=env)
    assert dry.returncode == 0 and dry.stdout.count("missing or different on the Hub") == 2, dry.stdout

    out = _ok(cli("recover", str(logdir), env=env))
    assert "Pushed again:    2" in out
    assert_repo_matches_logdir(hub, repo_id, logdir, tmp_path / "copy")
    assert_journal_sound(logdir)

    (logdir / segments[1]).unlink()  # the Hub's copy is all there is: it is downloaded and checked
    out = _ok(cli("recover", str(logdir), env=env))
    assert "Verified:        3 segment(s)" in out

    (logdir / segments[2]).unlink()
    client.delete_file(f"{folder}/{segments[2]}", repo_id)
    result = cli("recover", str(logdir), env=env)
    assert result.returncode == 1
    assert f"{folder}/{segments[2]}" in result.stderr and "neither on the Hub nor on disk" in result.stderr


def test_recover_fails_with_the_reason_and_never_shows_the_token(tmp_path, hub, repo_id):
    logdir = tmp_path / "refused"
    fake_dead_run(logdir, endpoint=hub.endpoint, repo_id=repo_id)
    bad_token = "hf_" + uuid.uuid4().hex + "Zz"
    result = cli("recover", str(logdir), "--token", bad_token, env={"HF_ENDPOINT": hub.endpoint})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "INCOMPLETE: 3 segment(s) still pending; last error: " in result.stderr
    assert bad_token not in result.stdout + result.stderr
    status = cli("status", str(logdir), "--json", env={})
    assert json.loads(status.stdout)["last_error"]["permanent"] is True
    assert bad_token not in status.stdout
    assert bad_token.encode() not in b"".join(p.read_bytes() for p in journal_path(logdir).parent.iterdir())

    nothing = cli("recover", str(tmp_path / "nothing"), env=hub_env(hub))
    assert nothing.returncode == 2 and "not a directory" in nothing.stderr
    (tmp_path / "empty").mkdir()
    no_journal = cli("recover", str(tmp_path / "empty"), env=hub_env(hub))
    assert no_journal.returncode == 2 and "--repo-id" in no_journal.stderr


def test_recover_gives_up_at_the_timeout_while_the_hub_is_down_then_succeeds(tmp_path, repo_id):
    logdir = tmp_path / "down"
    with LocalHub() as own:
        env = hub_env(own)
        files = fake_dead_run(logdir, endpoint=own.endpoint, repo_id=repo_id)
        own.stop()
        result = cli("recover", str(logdir), "--timeout", "3", env=env)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "INCOMPLETE: 3 segment(s) still pending; last error: " in result.stderr
        assert "retrying in" in result.stderr  # progress while it retries
        assert "Tails sealed:    1" in result.stdout  # what could be done without the Hub was done
        own.start()
        out = _ok(cli("recover", str(logdir), env=env))
        assert "Pushed:          3 segment(s)" in out
        assert_repo_matches_logdir(own, repo_id, logdir, tmp_path / "copy")
        assert loss_steps(logdir) == set(range(20 * len(files)))
        assert_journal_sound(logdir)


def test_dry_run_on_a_logdir_without_journal_creates_nothing(tmp_path, hub, repo_id):
    logdir = tmp_path / "bare"
    fake_dead_run(logdir, endpoint=hub.endpoint, repo_id=repo_id, open_tail=False)
    journal_dir = journal_path(logdir).parent
    for path in journal_dir.iterdir():
        path.unlink()
    journal_dir.rmdir()
    dry = cli("recover", str(logdir), "--dry-run", "--repo-id", repo_id, env=hub_env(hub))
    assert dry.returncode == 0, dry.stderr
    assert "Would push:      2 segment(s)" in dry.stdout and "on disk, not in the journal" in dry.stdout
    assert not journal_dir.exists()
    assert not api(hub).repo_exists(repo_id)


def test_recover_checks_lfs_files_by_their_sha256(tmp_path, repo_id):
    logdir = tmp_path / "lfs"
    with LocalHub() as own:
        env = {**hub_env(own), "HF_HUB_DISABLE_XET": "1"}  # basic LFS, not Xet
        fake_dead_run(logdir, endpoint=own.endpoint, repo_id=repo_id)
        _ok(cli("recover", str(logdir), env=env))
        folder = f"tensorboard/{logdir.name}"
        remote = list(api(own).list_repo_tree(repo_id, path_in_repo=folder))
        assert remote and all(entry.lfs is not None for entry in remote)
        api(own).delete_file(remote[0].path, repo_id)
        out = _ok(cli("recover", str(logdir), env=env))
        assert "Pushed again:    1" in out and "Verified:        3 segment(s)" in out
        assert_repo_matches_logdir(own, repo_id, logdir, tmp_path / "copy")
        assert_journal_sound(logdir)


def test_recover_checks_bucket_files_by_their_xet_hash(tmp_path, hub, repo_id):
    logdir = tmp_path / "bucket"
    env = hub_env(hub)
    fake_dead_run(logdir, endpoint=hub.endpoint, repo_id=repo_id, repo_type="bucket")
    _ok(cli("recover", str(logdir), env=env))
    folder = f"tensorboard/{logdir.name}"
    remote = bucket_files(hub, repo_id, folder)
    assert len(remote) == 3
    api(hub).batch_bucket_files(repo_id, delete=[next(iter(remote))])
    out = _ok(cli("recover", str(logdir), env=env))
    assert "Pushed again:    1" in out and "Verified:        3 segment(s)" in out
    status = cli("status", str(logdir), env=env)
    assert f"Repo:       bucket {repo_id} @ main" in status.stdout
    assert_repo_matches_logdir(hub, repo_id, logdir, tmp_path / "copy", repo_type="bucket")
    assert_journal_sound(logdir)


def test_recover_leaves_a_live_writer_alone_and_a_foreign_lease_to_take_over(tmp_path, hub, repo_id):
    logdir = tmp_path / "shared"
    files = fake_dead_run(logdir, endpoint=hub.endpoint, repo_id=repo_id, writer_pid=os.getpid())  # we write it
    with Journal(logdir) as journal:  # an uploader on another node of a shared filesystem holds the lease
        assert journal.acquire_lease(LeaseOwner(4242, 1.0, "node-17"), lambda owner: True)
    env = hub_env(hub)
    refused = cli("recover", str(logdir), env=env)
    assert refused.returncode == 3
    assert "an uploader on host 'node-17' (pid 4242" in refused.stderr and "--take-over" in refused.stderr
    open_bytes = files[-1].read_bytes()

    result = cli("recover", str(logdir), "--take-over", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "taking over the lease of pid 4242 on host 'node-17'" in result.stderr
    assert f"1 segment(s) are still being written by live writer(s) [{os.getpid()}]" in result.stderr
    assert "Pushed:          2 segment(s)" in result.stdout and "Verified:        2 segment(s)" in result.stdout
    assert files[-1].read_bytes() == open_bytes  # a live writer's segment is not touched
    with Journal(logdir, create=False) as journal:
        assert journal.lease_owner() is None and len(journal.open_segments()) == 1
