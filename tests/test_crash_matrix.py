"""Crash-point matrix: SIGKILL at each point of the trainer/uploader/Hub exchange, then let the expected path
recover (the surviving uploader, `hf-summary recover`, or a new writer on the same logdir). Afterwards the
repo holds exactly the segments on disk, byte for byte, every acknowledged step is in them, and the journal
passes `PRAGMA integrity_check`. Each test that applies to both runs against a repo and against a Storage
Bucket (`target`); squash and the card tag exist for repos only."""

from __future__ import annotations

import os
import uuid
from collections import Counter

import pytest
from helpers import uploader_processes, wait_until
from trainer_kit import (
    Trainer,
    assert_journal_sound,
    assert_repo_matches_logdir,
    bucket_files,
    cli,
    commit_titles,
    hub_env,
    local_segments,
    loss_steps,
    pid_gone,
)

from hf_summary import HFSummaryWriter
from hf_summary.compaction import FANOUT
from hf_summary.journal import Journal, move_aside
from hf_summary.localhub.testing import LocalHub
from hf_summary.verify import iter_events


@pytest.fixture(scope="module")
def fault_hub():
    """A Hub of this module's own: its faults and restarts touch no other test."""
    with LocalHub() as hub:
        yield hub


@pytest.fixture
def faulty(fault_hub, monkeypatch):
    """``fault_hub``, running and without faults afterwards; this process's writers point at it."""
    monkeypatch.setenv("HF_ENDPOINT", fault_hub.endpoint)
    monkeypatch.setenv("HF_TOKEN", fault_hub.token("alice"))
    yield fault_hub
    try:
        assert fault_hub.pid
    except RuntimeError:  # a test stopped it
        fault_hub.start()
    fault_hub.clear_faults()


@pytest.fixture(params=["model", "bucket"])
def target(request) -> str:
    return request.param


def _env(hub, repo_id: str, target: str, **extra: str) -> dict[str, str]:
    return {"REPO": repo_id, "REPO_TYPE": target, **hub_env(hub), **extra}


def _push_path(target: str) -> str:
    """The request that makes a push final: the commit, or the bucket's batch."""
    return "/batch$" if target == "bucket" else "/commit/"


def _hub_state(hub, repo_id: str, target: str) -> object:
    """What changes on every push: the repo's commits, the bucket's files and their upload times."""
    return bucket_files(hub, repo_id) if target == "bucket" else commit_titles(hub, repo_id)


def _pushes(hub, repo_id: str, target: str) -> int:
    """hf-summary commits in the repo; for a bucket, the number of files it holds."""
    return len(bucket_files(hub, repo_id)) if target == "bucket" else _hf_summary_commits(hub, repo_id)


def _states(logdir) -> dict[str, int]:
    with Journal(logdir, create=False) as journal:
        rows = journal.segments()
    return {state: sum(1 for row in rows if row.state == state) for state in ("open", "sealed", "committed")}


def _hf_summary_commits(hub, repo_id) -> int:
    return sum(1 for title in commit_titles(hub, repo_id) if title.startswith("hf-summary:"))


def _check(hub, repo_id, logdir, tmp_path, steps: int, target: str = "model") -> None:
    """The repo's copy is the logdir's, byte for byte; steps 0..steps-1 are all in it; the journal is sound."""
    assert_repo_matches_logdir(hub, repo_id, logdir, tmp_path / f"hub-{uuid.uuid4().hex[:8]}", repo_type=target)
    assert set(range(steps)) <= loss_steps(logdir)
    assert_journal_sound(logdir)


def _recover(hub, logdir) -> None:
    result = cli("recover", str(logdir), env=hub_env(hub))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: the Hub holds every segment" in result.stdout


def _restart_writer(repo_id, logdir, first_step: int, steps: int, **kwargs) -> int:
    """A new writer on the same logdir (this process): log ``steps`` more steps and close. Returns the next step."""
    with HFSummaryWriter(repo_id, logdir=logdir, commit_every=60, close_timeout=60, **kwargs) as writer:
        for step in range(first_step, first_step + steps):
            writer.add_scalar("loss", step * 0.5, step)
    assert not uploader_processes(logdir)
    return first_step + steps


def _kill_at(point: str, trainer: Trainer, *, steps: int = 200) -> None:
    """Log, ask for a push, and wait for the uploader to SIGKILL itself at ``point``."""
    trainer.command(f"log {steps}", "logged")
    first = trainer.uploader
    trainer.command("push nowait", "pushed")
    wait_until(lambda: pid_gone(first), timeout=30, message=f"the uploader to die at {point}")


def test_trainer_killed_alone_its_uploader_finishes(tmp_path, hub, repo_id, target):
    logdir = tmp_path / "alone"
    with Trainer(logdir, _env(hub, repo_id, target, COMMIT_EVERY="0.02"), tmp_path) as trainer:
        trainer.send("spin")
        trainer.expect("step", until=lambda m: m["step"] >= 300)
        wait_until(lambda: _states(logdir)["committed"], timeout=30, message="a first push")
        trainer.sigkill()
        wait_until(lambda: not uploader_processes(logdir), timeout=60, message="the uploader to finish and exit")
    _check(hub, repo_id, logdir, tmp_path, trainer.acked + 1, target)
    before = _hub_state(hub, repo_id, target)
    _recover(hub, logdir)  # nothing left to do: no push
    assert _hub_state(hub, repo_id, target) == before


def test_uploader_killed_after_claim_then_recover(tmp_path, hub, repo_id, target):
    logdir = tmp_path / "claimed"
    env = _env(hub, repo_id, target, HF_SUMMARY_FAULT_POINT="after_claim")
    with Trainer(logdir, env, tmp_path) as trainer:
        _kill_at("after_claim", trainer)
        # The trainer logs on: its next segment starts a new uploader, which dies at the same point.
        trainer.command("log 50", "logged")
        trainer.sigkill()
        wait_until(lambda: not uploader_processes(logdir), timeout=30, message="the second uploader to die")
    states = _states(logdir)
    # (the second uploader may have sealed the trainer's last segment before dying)
    assert states["committed"] == 0 and states["sealed"] + states["open"] == 2, states
    assert _pushes(hub, repo_id, target) == 0
    _recover(hub, logdir)
    with Journal(logdir, create=False) as journal:
        assert any("took over the lease of dead drainer" in entry["message"] for entry in journal.history("lease"))
    _check(hub, repo_id, logdir, tmp_path, trainer.acked + 1, target)
    assert _pushes(hub, repo_id, target) == (2 if target == "bucket" else 1)  # two segments, one commit
    before = _hub_state(hub, repo_id, target)
    _recover(hub, logdir)  # idempotent: no push
    assert _hub_state(hub, repo_id, target) == before


def test_uploader_killed_during_the_commit_request_then_restart(tmp_path, faulty, repo_id, target):
    logdir = tmp_path / "in-flight"
    faulty.set_faults([{"method": "POST", "path": _push_path(target), "delay_s": 4, "times": 1}])
    env = _env(faulty, repo_id, target, HF_SUMMARY_FAULT_POINT="during_upload", HF_SUMMARY_FAULT_DELAY="1")
    with Trainer(logdir, env, tmp_path) as trainer:
        _kill_at("during_upload", trainer)  # 1 s into a commit (batch) request the Hub holds for 4 s
        trainer.sigkill()
    assert _states(logdir)["committed"] == 0
    end = _restart_writer(repo_id, logdir, trainer.acked + 1, 100, repo_type=target)
    _check(faulty, repo_id, logdir, tmp_path, end, target)


def test_uploader_killed_after_the_hub_accepted_the_commit_then_recover(tmp_path, hub, repo_id, target):
    logdir = tmp_path / "accepted"
    env = _env(hub, repo_id, target, HF_SUMMARY_FAULT_POINT="after_commit")
    with Trainer(logdir, env, tmp_path) as trainer:
        _kill_at("after_commit", trainer)
        trainer.sigkill()
    # The Hub holds the commit (the bucket the file), the journal does not know it yet.
    assert _states(logdir) == {"open": 0, "sealed": 1, "committed": 0}
    assert _pushes(hub, repo_id, target) == 1
    _recover(hub, logdir)
    assert _pushes(hub, repo_id, target) == 1  # pushing the same segment again made no commit, no new file
    _check(hub, repo_id, logdir, tmp_path, trainer.acked + 1, target)


def test_uploader_killed_during_a_squash_then_restart(tmp_path, faulty, repo_id):
    logdir = tmp_path / "squashing"
    faulty.set_faults([{"method": "POST", "path": "/super-squash/", "delay_s": 4, "times": 1}])
    env = {
        "REPO": repo_id, **hub_env(faulty), "SQUASH": "1",
        "HF_SUMMARY_FAULT_POINT": "during_squash", "HF_SUMMARY_FAULT_DELAY": "0.5",
    }
    with Trainer(logdir, env, tmp_path) as trainer:
        _kill_at("during_squash", trainer)
        trainer.sigkill()
    assert _states(logdir) == {"open": 0, "sealed": 0, "committed": 1}
    end = _restart_writer(repo_id, logdir, trainer.acked + 1, 100, squash_history=True)
    _check(faulty, repo_id, logdir, tmp_path, end)


def test_trainer_and_uploader_killed_at_once_then_recover(tmp_path, hub, repo_id, target):
    """Node loss with the disk kept: both processes die in the middle of logging and pushing."""
    logdir = tmp_path / "node-lost"
    with Trainer(logdir, _env(hub, repo_id, target, COMMIT_EVERY="0.02"), tmp_path) as trainer:
        trainer.send("spin")
        trainer.expect("step", until=lambda m: m["step"] >= 300)
        wait_until(lambda: _states(logdir)["committed"], timeout=30, message="a first push")
        last_step = trainer.acked + 200
        trainer.expect("step", until=lambda m: m["step"] >= last_step)
        uploader = trainer.uploader
        trainer.sigkill()
        os.kill(uploader, 9)
        wait_until(lambda: pid_gone(uploader), timeout=10)
    _recover(hub, logdir)
    _check(hub, repo_id, logdir, tmp_path, trainer.acked + 1, target)
    before = _hub_state(hub, repo_id, target)
    _recover(hub, logdir)
    assert _hub_state(hub, repo_id, target) == before


def test_hub_killed_and_restarted_mid_commit(tmp_path, faulty, repo_id, target):
    logdir = tmp_path / "hub-crash"
    with Trainer(logdir, _env(faulty, repo_id, target), tmp_path) as trainer:
        trainer.command("log 100", "logged")
        assert trainer.command("push wait", "pushed")["ok"]
        if target != "bucket":
            wait_until(lambda: any(t.startswith("Tag the card") for t in commit_titles(faulty, repo_id)), timeout=30,
                       message="the card tag after the first push")
        faulty.set_faults([{"method": "POST", "path": _push_path(target), "delay_s": 30, "times": 1}])
        trainer.command("log 100", "logged")
        trainer.command("push nowait", "pushed")
        # the upload, then the commit (batch), which the Hub holds: kill the Hub under it and start it again
        wait_until(lambda: faulty.fired() == [1], timeout=30, message="the commit request")
        faulty.kill()
        faulty.start()
        assert trainer.command("push wait", "pushed", timeout=90)["ok"]
        trainer.command("log 50", "logged")
        trainer.command("close", "closed", timeout=90)
    _check(faulty, repo_id, logdir, tmp_path, trainer.acked + 1, target)


def _each_event_once(root) -> None:
    counts = Counter((run, event.step, event.wall_time) for run, event in iter_events(root) if event.HasField("summary"))
    assert set(counts.values()) == {1}, [key for key, n in counts.items() if n > 1][:5]


def _kill_in_a_merging_push(point: str, trainer: Trainer) -> None:
    """FANOUT committed pushes of 20 steps, then 20 more steps and the push that merges those FANOUT files, in
    which the uploader SIGKILLs itself at ``point``."""
    for _ in range(FANOUT):
        trainer.command("log 20", "logged")
        assert trainer.command("push wait", "pushed")["ok"]
    _kill_at(point, trainer, steps=20)


@pytest.mark.parametrize("then", ["recover", "restart"])
@pytest.mark.parametrize("point", ["after_compaction_planned", "after_compaction_commit", "during_compaction_swap"])
def test_uploader_killed_during_a_compaction(tmp_path, writer_env, repo_id, point, then):
    """FANOUT committed pushes, then the uploader dies in the push that merges them; `recover` or a new writer
    finishes. The repo and the logdir then hold the same files and every event exactly once."""
    hub = writer_env
    logdir = tmp_path / "compacting"
    env = {"REPO": repo_id, **hub_env(hub), "HF_SUMMARY_FAULT_POINT": point}
    with Trainer(logdir, env, tmp_path) as trainer:
        _kill_in_a_merging_push(point, trainer)
        trainer.sigkill()
    with Journal(logdir, create=False) as journal:
        assert len(journal.compactions("planned" if point != "during_compaction_swap" else "committed")) == 1
    if then == "recover":
        _recover(hub, logdir)
        end = trainer.acked + 1
    else:
        end = _restart_writer(repo_id, logdir, trainer.acked + 1, 20)
    _check(hub, repo_id, logdir, tmp_path, end)
    _each_event_once(logdir)
    with Journal(logdir, create=False) as journal:
        assert not journal.compactions("committed")
        if point != "after_compaction_planned":  # the Hub took the merge: it is finished
            assert len(journal.compactions("applied")) == 1 and not journal.compactions("planned")


@pytest.mark.parametrize("then", ["recover", "restart"])
def test_uploader_killed_between_a_bucket_push_s_additions_and_deletions(tmp_path, writer_env, repo_id, then):
    """A bucket's batches are not atomic: the uploader dies once the merged file is in the bucket and before
    the files it replaces are deleted; `recover` or a new writer deletes them. The bucket and the logdir then
    hold the same files and every event exactly once."""
    hub = writer_env
    logdir = tmp_path / "bucket-compacting"
    env = _env(hub, repo_id, "bucket", HF_SUMMARY_FAULT_POINT="between_bucket_additions_and_deletions")
    with Trainer(logdir, env, tmp_path) as trainer:
        _kill_in_a_merging_push("between_bucket_additions_and_deletions", trainer)
        trainer.sigkill()
    held = bucket_files(hub, repo_id)
    assert any(".m1-" in path for path in held) and len([p for p in held if "tfevents" in p]) > FANOUT + 1
    if then == "recover":
        _recover(hub, logdir)
        end = trainer.acked + 1
    else:
        end = _restart_writer(repo_id, logdir, trainer.acked + 1, 20, repo_type="bucket")
    _check(hub, repo_id, logdir, tmp_path, end, "bucket")
    _each_event_once(logdir)
    with Journal(logdir, create=False) as journal:
        assert len(journal.compactions("applied")) == 1 and not journal.compactions("planned")


def test_journal_lost_in_the_middle_of_a_compaction_swap_then_recover(tmp_path, writer_env, repo_id):
    """The uploader dies between moving the merged file into the logdir and unlinking what it replaced, then
    the journal is lost too: `recover` rebuilds it from disk, drops the leftovers the merged file covers, and
    the repo and the logdir again hold the same files, every event once."""
    hub = writer_env
    logdir = tmp_path / "swap-lost"
    env = {"REPO": repo_id, **hub_env(hub), "HF_SUMMARY_FAULT_POINT": "during_compaction_swap"}
    with Trainer(logdir, env, tmp_path) as trainer:
        _kill_in_a_merging_push("during_compaction_swap", trainer)
        trainer.sigkill()
    assert any(".m1-" in name for name in local_segments(logdir))
    move_aside(logdir)
    result = cli("recover", str(logdir), "--repo-id", repo_id, env=hub_env(hub))
    assert result.returncode == 0, result.stdout + result.stderr
    _check(hub, repo_id, logdir, tmp_path, trainer.acked + 1)
    _each_event_once(logdir)
