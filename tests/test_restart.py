"""A new writer on the logdir of a run that died resumes its journal: what the dead run left is pushed first
(by its still-running uploader, or by the new writer's), the segment names continue the sequence, and
TensorBoard reads both runs' steps in order."""

from __future__ import annotations

import os
import shutil
import uuid

import pytest
from helpers import uploader_processes, wait_until
from trainer_kit import (
    Trainer,
    api,
    assert_journal_sound,
    assert_repo_matches_logdir,
    hub_env,
    pid_gone,
)

from hf_summary import HFSummaryWriter
from hf_summary.journal import Journal, journal_path
from hf_summary.localhub.testing import LocalHub
from hf_summary.segments import parse_segment_sequence
from hf_summary.status import run_status

pytest.importorskip("tensorboard")


def _tensorboard_steps(folder) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    accumulator.Reload()
    return [event.step for event in accumulator.Scalars("loss")]


def _second_run(repo_id, logdir, first_step: int, steps: int) -> int:
    with HFSummaryWriter(repo_id, logdir=logdir, commit_every=60, close_timeout=60) as writer:
        for step in range(first_step, first_step + steps):
            writer.add_scalar("loss", step * 0.5, step)
            if step == first_step + steps // 2:
                assert writer.push_to_hub(timeout=60)
    wait_until(lambda: not uploader_processes(logdir), timeout=30, message="every uploader to exit")
    return first_step + steps


def _check_two_runs(hub, repo_id, logdir, tmp_path, first_pid: int, total: int) -> None:
    with Journal(logdir, create=False) as journal:
        rows = journal.segments()
    first = [row for row in rows if row.writer_pid == first_pid]
    second = [row for row in rows if row.writer_pid == os.getpid()]
    assert first and second and len(first) + len(second) == len(rows)
    # names continue the sequence: unique, and every segment of the second run comes after the first run's
    sequences = [parse_segment_sequence(row.name) for row in rows]
    assert len(set(sequences)) == len(sequences)
    assert max(parse_segment_sequence(r.name) for r in first) < min(parse_segment_sequence(r.name) for r in second)
    # what the first run left was pushed first (possibly in the same commit as the second run's first segments)
    assert max(row.committed_at for row in first) <= min(row.committed_at for row in second)
    dest = tmp_path / f"hub-{uuid.uuid4().hex[:8]}"
    assert_repo_matches_logdir(hub, repo_id, logdir, dest)
    assert _tensorboard_steps(dest / f"tensorboard/{logdir.name}") == list(range(total))
    assert_journal_sound(logdir)


@pytest.fixture
def slow_commits(monkeypatch):
    """A Hub of this test's own whose next commit takes 3 s."""
    with LocalHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setenv("HF_TOKEN", hub.token("alice"))
        yield hub


def test_restart_while_the_old_uploader_still_pushes(tmp_path, slow_commits, repo_id):
    hub = slow_commits
    logdir = tmp_path / "resumed"
    with Trainer(logdir, {"REPO": repo_id, **hub_env(hub)}, tmp_path) as trainer:
        trainer.command("log 200", "logged")
        hub.set_faults([{"method": "POST", "path": "/commit/", "delay_s": 3, "times": 1}])
        trainer.command("push nowait", "pushed")
        trainer.command("log 100", "logged")
        old_uploader = trainer.uploader
        wait_until(lambda: run_status(logdir)["uploader_pid"] == old_uploader, timeout=30,
                   message="the uploader to hold the lease")
        trainer.sigkill()  # its uploader lives on, in the middle of a slow commit
        assert run_status(logdir)["uploader_pid"] == old_uploader
        end = _second_run(repo_id, logdir, trainer.acked + 1, 300)
        assert pid_gone(old_uploader)
    _check_two_runs(hub, repo_id, logdir, tmp_path, trainer.pid, end)


def test_restart_after_node_loss(tmp_path, hub, writer_env, repo_id):
    logdir = tmp_path / "lost-node"
    with Trainer(logdir, {"REPO": repo_id, **hub_env(hub)}, tmp_path) as trainer:
        trainer.command("log 200", "logged")
        assert trainer.command("push wait", "pushed")["ok"]
        trainer.command("log 150", "logged")
        os.kill(trainer.uploader, 9)
        wait_until(lambda: pid_gone(trainer.uploader), timeout=10)
        trainer.sigkill()
    with Journal(logdir, create=False) as journal:
        assert len(journal.open_segments()) == 1
    end = _second_run(repo_id, logdir, trainer.acked + 1, 300)
    _check_two_runs(hub, repo_id, logdir, tmp_path, trainer.pid, end)


def test_restart_after_the_journal_was_lost_continues_the_sequence(tmp_path, hub, writer_env, repo_id):
    logdir = tmp_path / "forgetful"
    with HFSummaryWriter(repo_id, logdir=logdir, commit_every=60) as writer:
        for step in range(100):
            writer.add_scalar("loss", step * 0.5, step)
            if step == 50:
                assert writer.push_to_hub(timeout=30)
    first = sorted(path.name for path in logdir.glob("*tfevents*"))
    shutil.rmtree(journal_path(logdir).parent)
    with HFSummaryWriter(repo_id, logdir=logdir, commit_every=60) as writer:
        for step in range(100, 200):
            writer.add_scalar("loss", step * 0.5, step)
    names = sorted(path.name for path in logdir.glob("*tfevents*"))
    assert names[: len(first)] == first and len(names) == len(first) + 1
    dest = tmp_path / "copy"
    assert_repo_matches_logdir(hub, repo_id, logdir, dest)
    assert _tensorboard_steps(dest / f"tensorboard/{logdir.name}") == list(range(200))
    assert_journal_sound(logdir)
    assert sum(1 for c in api(hub).list_repo_commits(repo_id) if c.title.startswith("hf-summary:")) == 3
