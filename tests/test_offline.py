"""Offline mode (`HF_HUB_OFFLINE`, or `offline=True`): the writer logs and journals as usual, makes no request to the
Hub, starts no uploader, and closes (or is preempted) at once; `status` says the run is offline."""

from __future__ import annotations

import json
import logging
import signal

from helpers import uploader_processes, wait_until
from trainer_kit import Trainer, cli, hub_env, loss_steps, pid_gone

from hf_summary import HFSummaryWriter
from hf_summary.journal import Journal
from hf_summary.liveness import writer_records
from hf_summary.localhub.testing import LocalHub


def _status(logdir, env) -> dict:
    result = cli("status", str(logdir), "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_an_offline_writer_makes_no_request_and_closes_at_once(tmp_path, repo_id):
    logdir = tmp_path / "offline"
    with LocalHub() as own:
        env = {"REPO": repo_id, **hub_env(own), "HF_HUB_OFFLINE": "1"}
        before = own.stats()["requests"]
        with Trainer(logdir, env, tmp_path) as trainer:
            trainer.command("log 100", "logged")
            assert trainer.command("push wait", "pushed")["ok"] is False  # sealed; nobody pushes it from here
            trainer.command("log 50", "logged")
            assert not uploader_processes(logdir)
            live = _status(logdir, env)
            assert live["state"] == "offline" and live["offline"] is True and live["writer_alive"] is True
            assert live["pending_segments"] == 1 and live["open_segments"] == 1
            assert live["writer_pid"] == trainer.pid
            closed = trainer.command("close", "closed")
            assert trainer.proc.wait(10) == 0
            assert closed["uploader"] is None and not uploader_processes(logdir)
        assert own.stats()["requests"] == before  # not one request, not even the repo check
        said = [line for line in trainer.stderr if "offline" in line]
        assert len(said) == 1 and f"hf-summary sync {logdir}" in said[0], trainer.stderr
    assert set(range(150)) <= loss_steps(logdir)
    status = _status(logdir, {})
    assert status["state"] == "offline" and status["writer_alive"] is False and status["preempted"] is False
    assert status["pending_segments"] == 2 and status["open_segments"] == 0 and status["last_commit"] is None
    text = cli("status", str(logdir), env={})
    assert "State:      offline, 2 segment(s) pending" in text.stdout and f"hf-summary sync {logdir}" in text.stdout


def test_an_offline_writer_preempted_by_sigterm_seals_and_exits_at_once(tmp_path, repo_id):
    logdir = tmp_path / "preempted"
    env = {"REPO": repo_id, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1",  # nothing listens there
           "HF_SUMMARY_GRACE_PERIOD": "600"}  # a final drain would outlast the wait below: there is none
    with Trainer(logdir, env, tmp_path) as trainer:
        trainer.command("log 80", "logged")
        trainer.proc.send_signal(signal.SIGTERM)
        assert trainer.proc.wait(10) == -signal.SIGTERM
        wait_until(lambda: pid_gone(trainer.pid), timeout=10)
    with Journal(logdir, create=False) as journal:
        assert not journal.open_segments() and len(journal.pending_segments()) == 1
        (record,) = writer_records(journal)
    assert record.offline and record.closed_at is None and record.pid == trainer.pid
    status = _status(logdir, {})
    assert status["state"] == "offline" and status["preempted"] is True and status["writer_alive"] is False
    assert "offline, preempted, 1 segment(s) pending" in cli("status", str(logdir), env={}).stdout
    assert set(range(80)) <= loss_steps(logdir)


def test_the_offline_switch_works_without_hf_hub_offline(tmp_path, repo_id, monkeypatch, caplog):
    with LocalHub() as own:
        monkeypatch.setenv("HF_ENDPOINT", own.endpoint)
        monkeypatch.setenv("HF_TOKEN", own.token())
        before = own.stats()["requests"]
        caplog.set_level(logging.INFO, logger="hf_summary")
        with HFSummaryWriter(repo_id, logdir=tmp_path / "switch", offline=True) as writer:
            for step in range(50):
                writer.add_scalar("loss", step * 0.5, step)
            assert writer.push_to_hub() is False
            writer.add_scalar("loss", 25.0, 50)
            assert writer._uploader is None
        assert own.stats()["requests"] == before
    assert [r.getMessage() for r in caplog.records if "offline" in r.getMessage()] == [
        f"hf-summary is offline (HF_HUB_OFFLINE or offline=True): {tmp_path / 'switch'} is logged and journaled here "
        f"and nothing is pushed; push it later from a connected machine with `hf-summary sync {tmp_path / 'switch'}`"
    ]
    assert set(range(51)) <= loss_steps(tmp_path / "switch")
    with Journal(tmp_path / "switch", create=False) as journal:
        assert len(journal.pending_segments()) == 2 and not journal.open_segments()
        (record,) = writer_records(journal)
    assert record.offline and record.closed_at is not None
