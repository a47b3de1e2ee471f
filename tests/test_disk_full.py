"""A logdir whose filesystem fills up while a trainer logs: add_* never raises, the events are held in memory and
written out once space is back, and every one of them reaches the Hub exactly once (or is counted as dropped)."""

from __future__ import annotations

import contextlib
import errno
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import download_repo, kill_uploaders, uploader_processes
from storage_kit import fault_fs, fill, tag_steps, tmpfs
from trainer_kit import assert_journal_sound, assert_repo_matches_logdir, cli

from hf_summary import HFSummaryWriter
from hf_summary.compaction import FANOUT, STAGING_DIR
from hf_summary.journal import Journal
from hf_summary.status import run_status


def _log_through_a_full_disk(tmp_path: Path, hub, repo_id: str, *, full_for_s: float, **writer_kwargs):
    """Log a scalar per step and a 2,000-value histogram every 10 steps on a 6 MB tmpfs; fill it after 1 s,
    free it ``full_for_s`` later, log 1 s more and close(). Returns what add_* was called with, the exceptions it
    raised, the (run, tag, step) counts on the Hub, the status after close() (and `hf-summary status`'s text) and
    whether close() drained."""
    with tmpfs(tmp_path / "fs", "size=6m") as fs:
        logdir = fs / "run"
        ballast = fs / "ballast"
        writer = HFSummaryWriter(repo_id, logdir=logdir, close_timeout=30, drain_timeout=10, **writer_kwargs)
        logged: list[tuple[str, int]] = []
        errors: list[BaseException] = []
        rng = np.random.default_rng(0)
        try:
            step, phase_end, phase = 0, time.monotonic() + 1.0, "before"
            while phase != "done":
                try:
                    writer.add_scalar("loss", float(step), step)
                    logged.append(("loss", step))
                    if step % 10 == 0:
                        writer.add_histogram("weights", rng.normal(size=2000), step)
                        logged.append(("weights", step))
                except Exception as exc:
                    errors.append(exc)
                step += 1
                time.sleep(0.002)
                if time.monotonic() >= phase_end:
                    if phase == "before":
                        fill(ballast)
                        phase, phase_end = "full", time.monotonic() + full_for_s
                    elif phase == "full":
                        ballast.unlink()
                        phase, phase_end = "after", time.monotonic() + 1.0
                    else:
                        phase = "done"
            writer.close()
            status = run_status(logdir)
            status_text = cli("status", str(logdir), env={}).stdout
            drained = not uploader_processes(logdir) and status["pending_segments"] == status["open_segments"] == 0
            dest = download_repo(hub.endpoint, hub.token(), repo_id, tmp_path / "hub")
            on_hub = tag_steps(dest / "tensorboard" / "run")
            return logged, errors, on_hub, (status, status_text), drained
        finally:
            with contextlib.suppress(Exception):
                writer.close()
            kill_uploaders(logdir)


def test_a_disk_full_for_a_while_loses_nothing_and_add_never_raises(tmp_path, hub, writer_env, repo_id, caplog):
    """The disk is full across several ticks: nothing raises into the loop, every call's event is on the Hub
    exactly once, and status reports the episode (held, written out, nothing dropped)."""
    caplog.set_level(logging.WARNING, logger="hf_summary")
    logged, errors, on_hub, (status, status_text), drained = _log_through_a_full_disk(
        tmp_path, hub, repo_id, full_for_s=2.0, commit_every=0.01
    )
    assert errors == []
    assert on_hub == {("", tag, step): 1 for tag, step in logged}
    assert drained  # close() ended because everything was pushed, not by its timeout
    episode = status["disk"]
    assert episode is not None, "the writer never held an event: the disk never filled up"
    assert episode["held"] > 0 and episode["written"] == episode["held"]
    assert episode["dropped"] == episode["lost"] == 0
    assert episode["ended"] is not None and episode["cause"].startswith("[Errno 28]")
    assert "Disk:       disk full since" in status_text and f"{episode['held']} event(s) held" in status_text
    episode_lines = [r.getMessage() for r in caplog.records if "held" in r.getMessage()]
    assert len(episode_lines) == 2, episode_lines  # one when it starts, one when it ends


def test_past_the_bound_one_stretch_is_dropped_and_counted(tmp_path, hub, writer_env, repo_id):
    """A 64 KiB bound: the episode's first events are kept, then everything until the backlog is written out
    is dropped; the Hub holds every other event exactly once and status counts the dropped ones."""
    logged, errors, on_hub, (status, _), _ = _log_through_a_full_disk(
        tmp_path, hub, repo_id, full_for_s=2.0, commit_every=60, held_events_limit=64 << 10
    )
    assert errors == []
    episode = status["disk"]
    assert episode is not None and episode["dropped"] > 0, episode
    assert set(on_hub.values()) == {1}
    missing = [entry for entry in logged if ("", *entry) not in on_hub]
    assert len(missing) == episode["dropped"]
    assert len(on_hub) == len(logged) - episode["dropped"]
    first, last = logged.index(missing[0]), logged.index(missing[-1])
    assert logged[first:last + 1] == missing  # one contiguous stretch of calls


@pytest.mark.parametrize("removed", ["logdir", "run dir"])
def test_a_logdir_removed_under_the_writer_is_made_again_and_nothing_is_lost(
    tmp_path, hub, writer_env, repo_id, removed
):
    """``rm -rf`` of the logdir (or of an add_scalars run dir) while a segment is open, its events already pushed
    before staying on the Hub: the writer notices (here at close()), makes what it needs again, writes the
    removed open segments' events out again and the run goes on; the Hub holds every event exactly once and
    status tells what happened."""
    logdir = tmp_path / "run"
    writer = HFSummaryWriter(repo_id, logdir=logdir, commit_every=60, close_timeout=30, drain_timeout=10)

    def log(steps: range) -> None:
        for step in steps:
            writer.add_scalar("loss", float(step), step)
            writer.add_scalars("pair", {"a": float(step)}, step)

    try:
        log(range(0, 100))
        assert writer.push_to_hub(blocking=True, timeout=30)
        log(range(100, 200))
        shutil.rmtree(logdir if removed == "logdir" else logdir / "pair")
        log(range(200, 300))  # into the removed open segments: the OS takes them, no reader ever will
        writer.close()
        status = run_status(logdir)
        dest = download_repo(hub.endpoint, hub.token(), repo_id, tmp_path / "hub")
        expected = {(run, tag, step): 1 for run, tag in (("", "loss"), ("pair/a", "pair")) for step in range(300)}
        assert tag_steps(dest / "tensorboard" / "run") == expected
        assert status["pending_segments"] == status["open_segments"] == 0
        salvaged = 400 if removed == "logdir" else 200
        assert status["disk"]["cause"].endswith("was removed")
        assert status["disk"]["held"] == status["disk"]["written"] == salvaged and status["disk"]["dropped"] == 0
        assert not uploader_processes(logdir)
    finally:
        with contextlib.suppress(Exception):
            writer.close()
        kill_uploaders(logdir)


@pytest.mark.parametrize(
    ("glob", "error"),
    [("*tfevents*", errno.EIO), ("*tfevents*", errno.EDQUOT), ("*tfevents*", errno.ESTALE),
     ("*/.hf_summary/journal.db-wal", errno.EIO), ("*/.hf_summary/xet/*", errno.ENOSPC)],
    ids=["EIO", "EDQUOT", "ESTALE", "journal-EIO", "uploader-scratch-ENOSPC"],
)
def test_writes_failing_for_a_while_lose_nothing(tmp_path, hub, writer_env, repo_id, glob, error):
    """A FUSE filesystem fails every write to the event files (or to the journal's WAL: SQLITE_IOERR in the
    ticker, in the uploader and when a segment is started; or to the uploader's scratch space: its pushes) with
    ``error`` for 2 s, across ticks. (Not its -shm
    file: SQLite's shared-memory index is mmapped, and a writeback that fails loses it, with commits it held.)"""
    with fault_fs(tmp_path / "fuse") as fs:
        logdir = fs.mount / "run"
        writer = HFSummaryWriter(repo_id, logdir=logdir, commit_every=0.01, close_timeout=30, drain_timeout=10)
        errors, logged = [], []
        try:
            phases = [(1.0, None), (2.0, error), (1.0, None)]
            step = 0
            for duration, failing in phases:
                if failing:
                    fs.fail(["write"], glob, failing)
                else:
                    fs.clear()
                until = time.monotonic() + duration
                while time.monotonic() < until:
                    try:
                        writer.add_scalar("loss", float(step), step)
                        logged.append(step)
                    except Exception as exc:
                        errors.append(exc)
                    step += 1
                    time.sleep(0.002)
            writer.close()
            status = run_status(logdir)
            dest = download_repo(hub.endpoint, hub.token(), repo_id, tmp_path / "hub")
            assert errors == []
            assert tag_steps(dest / "tensorboard" / "run") == {("", "loss", step): 1 for step in logged}
            assert status["pending_segments"] == status["open_segments"] == 0
            episode = status["disk"]
            if glob != "*tfevents*" and episode is None:  # no segment had to be started during the fault
                return
            assert episode is not None and episode["cause"].startswith(f"[Errno {error}]"), episode
            assert episode["held"] == episode["written"] > 0 and episode["dropped"] == episode["lost"] == 0
        finally:
            with contextlib.suppress(Exception):
                writer.close()
            kill_uploaders(logdir)


def test_a_merge_that_cannot_be_written_is_abandoned_and_done_later(tmp_path, writer_env, repo_id):
    """Compaction's merged file cannot be created (EDQUOT) for the first pushes: each merge is given up cleanly
    (no plan, no staged file left), pushes go on, and once the filesystem takes it the merges happen; the repo
    and the logdir hold the same files, every event once."""
    with fault_fs(tmp_path / "fuse") as fs:
        logdir = fs.mount / "long"
        fs.fail(["mkdir", "create", "write"], f"*/{STAGING_DIR}*", errno.EDQUOT)
        pushes = 2 * FANOUT
        with HFSummaryWriter(repo_id, logdir=logdir, commit_every=60, close_timeout=60) as writer:
            for push in range(pushes):
                if push == FANOUT + 1:
                    with Journal(logdir, create=False) as journal:
                        assert not journal.compactions("planned") and journal.status()["replaced_segments"] == 0
                    assert not list((logdir / ".hf_summary" / STAGING_DIR).glob("*"))
                    fs.clear()
                for step in range(push * 5, push * 5 + 5):
                    writer.add_scalar("loss", step * 0.5, step)
                assert writer.push_to_hub(timeout=60)
        assert tag_steps(logdir) == {("", "loss", step): 1 for step in range(pushes * 5)}
        assert_repo_matches_logdir(writer_env, repo_id, logdir, tmp_path / "hub")
        with Journal(logdir, create=False) as journal:
            assert journal.status()["replaced_segments"] >= FANOUT
        assert_journal_sound(logdir)
        kill_uploaders(logdir)
