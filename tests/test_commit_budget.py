"""The repo's commit budget (HTTP 429 on commits): an uploader that meets it spaces its commits and `status`
says the budget is the bottleneck; a final push it refuses is parked in the overflow bucket, `status` says
where, and `recover`, or a writer restarted on another machine, moves it into the repo exactly once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time

import pytest
from helpers import hub_events, uploader_processes, wait_until
from trainer_kit import Trainer, api, cli, hub_env, pid_gone

from hf_summary.hub import RateLimitedError, RepoClient
from hf_summary.localhub.testing import LocalHub
from hf_summary.overflow import overflow_bucket
from hf_summary.uploader.pacing import MAX_GAP_S, CommitPacer
from hf_summary.verify import event_keys

BUDGET = 3  # commits per rolling hour: the first push, the card's tag, one more push
KILL_AFTER_S = 10.0


def test_the_pacer_widens_the_gap_at_each_refusal_and_narrows_it_at_each_commit():
    pacer = CommitPacer(tick_s=5.0)
    assert not pacer.budget_bound and pacer.committed() == 0.0
    first = pacer.refused(retry_after=100.0)
    assert first.first and first.gap_s == 5.0 and first.delay_s == 105.0
    second = pacer.refused(retry_after=None)
    assert not second.first and second.gap_s == 10.0 and second.delay_s == 10.0
    for _ in range(20):
        pacer.refused(retry_after=None)
    assert pacer.gap_s == MAX_GAP_S
    waits = []
    while pacer.budget_bound:
        waits.append(pacer.committed())
    assert waits[0] == MAX_GAP_S and waits == sorted(waits, reverse=True) and waits[-1] >= 5.0
    assert pacer.refused(retry_after=1.0).first  # a new episode once the budget was no bottleneck


def _spin(tmp_path, hub, repo_id, logdir) -> Trainer:
    trainer = Trainer(logdir, {**hub_env(hub), "REPO": repo_id, "COMMIT_EVERY": "0.01"}, tmp_path)  # 0.6 s
    trainer.send("spin")
    trainer.expect("step", until=lambda m: m["step"] >= 200)
    wait_until(lambda: uploader_processes(logdir), 30, message="the uploader to start")
    return trainer


def _preempt(trainer: Trainer) -> None:
    """SIGTERM to the trainer and its uploader at once, SIGKILL to what is left 10 s later."""
    processes = [trainer.proc.pid, *(p.pid for p in uploader_processes(trainer.logdir))]
    for pid in processes:
        os.kill(pid, signal.SIGTERM)
    wait_until(lambda: trainer.proc.poll() is not None and all(pid_gone(pid) for pid in processes),
               KILL_AFTER_S, message="the job to end before the SIGKILL")
    trainer.sigkill()


def _status(logdir) -> dict:
    result = cli("status", str(logdir), "--json", env={})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _bucket_files(hub, repo_id) -> list[str]:
    return [entry.path for entry in api(hub).list_bucket_tree(overflow_bucket(repo_id), recursive=True)
            if entry.type == "file"]


def test_a_spent_budget_spaces_commits_and_a_refused_final_push_is_parked_then_recovered(tmp_path, repo_id):
    logdir = tmp_path / "run"
    with LocalHub(commit_limit=BUDGET) as hub:
        with _spin(tmp_path, hub, repo_id, logdir) as trainer:
            log = logdir / ".hf_summary" / "uploader.log"
            wait_until(lambda: log.exists() and "commit budget is spent" in log.read_text(), 60,
                       message="the uploader to meet the budget")
            time.sleep(3)  # five ticks: a fixed schedule would have tried again by now
            assert log.read_text().count("commit budget is spent") == 1
            budget = _status(logdir)["budget"]
            assert budget is not None and budget["gap_s"] >= 0.6
            assert "Budget:     the repo's commit budget is the bottleneck" in cli("status", str(logdir), env={}).stdout
            _preempt(trainer)
        status = _status(logdir)
        parked = status["parked"]
        assert parked is not None and parked["bucket"] == overflow_bucket(repo_id) and parked["segments"] >= 1
        text = cli("status", str(logdir), env={}).stdout
        assert f"in bucket {overflow_bucket(repo_id)}" in text and f"hf-summary settle {repo_id}" in text, text
        assert _bucket_files(hub, repo_id)
        logged = event_keys(logdir)
        assert hub_events(hub, repo_id, tmp_path, path_in_repo="tensorboard/run") < logged
        hub.stop()
        hub.commit_limit = 100  # as an hour later: the budget is back
        hub.start()
        result = cli("recover", str(logdir), env=hub_env(hub))
        assert result.returncode == 0, result.stdout + result.stderr
        assert hub_events(hub, repo_id, tmp_path, path_in_repo="tensorboard/run") == logged
        assert not _bucket_files(hub, repo_id)
        assert _status(logdir)["parked"] is None


def test_a_writer_restarted_on_another_machine_moves_the_parked_push_in_first(tmp_path, repo_id):
    """The node is gone with its logdir; the requeued job starts on another node with a fresh logdir of the same
    name: its uploader moves the parked push into the repo before pushing anything of its own."""
    first, second = tmp_path / "node1" / "run", tmp_path / "node2" / "run"
    with LocalHub(commit_limit=BUDGET) as hub:
        with _spin(tmp_path, hub, repo_id, first) as trainer:
            log = first / ".hf_summary" / "uploader.log"
            wait_until(lambda: log.exists() and "commit budget is spent" in log.read_text(), 60,
                       message="the uploader to meet the budget")
            _preempt(trainer)
        assert "parked" in (first / ".hf_summary" / "uploader.log").read_text()
        logged = event_keys(first)
        shutil.rmtree(first)
        hub.stop()
        hub.commit_limit = 100
        hub.start()
        with Trainer(second, {**hub_env(hub), "REPO": repo_id, "COMMIT_EVERY": "60"}, tmp_path) as trainer:
            trainer.command("log 5", "logged")
            assert trainer.command("push wait", "pushed")["ok"]
            trainer.command("close", "closed")
        assert hub_events(hub, repo_id, tmp_path, path_in_repo="tensorboard/run") == logged | event_keys(second)
        assert not _bucket_files(hub, repo_id)


def test_a_refused_commit_is_told_apart_with_the_servers_hint(tmp_path, repo_id):
    """huggingface_hub does not retry a commit: the 429 reaches the hub layer as a RateLimitedError that
    carries Retry-After."""
    with LocalHub() as hub:
        client = RepoClient(repo_id=repo_id, endpoint=hub.endpoint, token=hub.token())
        client.ensure_repo(private=None)
        hub.set_faults([{"path": "/commit/", "status": 429, "retry_after": 42}])
        (tmp_path / "f.txt").write_text("x")
        with pytest.raises(RateLimitedError) as refused:
            client.commit_files([(tmp_path / "f.txt", "f.txt")], "one file")
        assert refused.value.retry_after == 42
