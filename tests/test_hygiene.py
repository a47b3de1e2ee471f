"""Process hygiene: writers leave no processes, threads, file descriptors or zombies behind, after close(),
after a final drain (trainer SIGKILLed) and after the uploader's deadline (Hub down)."""

from __future__ import annotations

import gc
import logging
import os
import signal
import subprocess
import threading
import time
import weakref

import numpy as np
import psutil
import pytest
from helpers import kill_uploaders, run_script, uploader_processes, wait_until

from hf_summary import HFSummaryWriter
from hf_summary.journal import Journal, journal_path
from hf_summary.localhub.testing import LocalHub


def _zombie_children() -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def _fd_targets() -> list[str]:
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:  # the fd of the listing itself, closed by now
            pass
    return sorted(targets)


def _footprint(hub_pid: int) -> dict:
    me = psutil.Process()
    return {
        "fds": _fd_targets(),
        "os_threads": me.num_threads(),
        "threads": sorted(t.name for t in threading.enumerate()),
        "children": sorted(c.pid for c in me.children(recursive=True) if c.pid != hub_pid),
        "sigterm": signal.getsignal(signal.SIGTERM),
    }


def _leftovers(before: dict, now: dict) -> dict:
    """What ``now`` has that ``before`` had not. Sockets and pipes are counted, not named: the HTTP client's
    keep-alive pool and the test's own local Hub (its stdout pipe) come and go."""
    found = {}
    for key in ("threads", "children"):
        if new := sorted(set(now[key]) - set(before[key])) + [x for x in set(now[key]) if now[key].count(x) >
                                                                    before[key].count(x)]:
            found[key] = new
    plain = [f for f in now["fds"] if not f.startswith(("socket:", "pipe:"))]
    if new := [f for f in set(plain) if plain.count(f) > before["fds"].count(f)]:
        found["fds"] = new
    for kind, slack in (("pipe:", 0), ("socket:", 1)):  # one keep-alive connection to the Hub may stay open
        count, was = (sum(f.startswith(kind) for f in fds) for fds in (now["fds"], before["fds"]))
        if count > was + slack:
            found[kind] = (was, count)
    if now["sigterm"] != before["sigterm"]:
        found["sigterm"] = now["sigterm"]
    return found


def _same_footprint(before: dict, hub_pid: int, timeout: float = 10) -> None:
    """Wait until the process holds no more fds, threads or children than ``before``; fail with the extra."""
    deadline = time.monotonic() + timeout
    while (extra := _leftovers(before, _footprint(hub_pid))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not extra, extra


def _many_writers(tmp_path, monkeypatch, count: int) -> None:
    with LocalHub(commit_limit=100_000) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        rng = np.random.default_rng(0)

        alive: list[weakref.ref] = []

        def one(index: int) -> None:
            logdir = tmp_path / f"w{index:03d}"
            writer = HFSummaryWriter("alice/many", logdir=logdir, token=hub.token(), commit_every=60, close_timeout=60)
            if index % 4 != 3:  # every fourth writer logs nothing
                for step in range(3):
                    writer.add_scalar("loss", float(step), step)
                if index % 2 == 0:
                    writer.add_histogram("weights", rng.normal(size=100), 0)
            writer.close()
            assert not uploader_processes(logdir), index
            alive.append(weakref.ref(writer))  # nothing (atexit, signal handler, thread) may keep it alive

        one(count)  # warm-up: imports, the client's connection pool, the Hub repo
        gc.collect()
        before = _footprint(hub.pid)
        for index in range(count):
            one(index)
        gc.collect()
        _same_footprint(before, hub.pid)
        assert not _zombie_children()
        assert not [ref for ref in alive if ref() is not None], "closed writers are kept alive"
        for index in range(count):
            logdir = tmp_path / f"w{index:03d}"
            with Journal(logdir, create=False) as journal:
                status = journal.status()
            assert status["pending_segments"] == status["open_segments"] == 0, (index, status)
            logged = index % 4 != 3
            assert (status["committed_segments"] > 0) == logged, (index, status)
            # the uploader starts on the first event only: a writer that logged nothing never started one
            assert (journal_path(logdir).parent / "uploader.log").exists() == logged, index


def test_many_writers_in_one_process_leave_nothing_behind(tmp_path, monkeypatch):
    _many_writers(tmp_path, monkeypatch, 12)


@pytest.mark.slow
def test_two_hundred_writers_in_one_process_leave_nothing_behind(tmp_path, monkeypatch):
    _many_writers(tmp_path, monkeypatch, 200)


def test_after_a_final_drain_no_uploader_is_left(tmp_path, hub, writer_env, repo_id):
    logdir = tmp_path / "killed"
    proc = run_script(
        """
        import os
        from hf_summary import HFSummaryWriter
        writer = HFSummaryWriter(os.environ["REPO"], logdir=os.environ["LOGDIR"], commit_every=60)
        for step in range(100):
            writer.add_scalar("loss", float(step), step)
        print("logged", flush=True)
        input()
        """,
        {"REPO": repo_id, "LOGDIR": str(logdir)}, tmp_path, stdin=subprocess.PIPE,
    )
    try:
        assert proc.stdout.readline().strip() == "logged", proc.stderr.read()
        [uploader] = uploader_processes(logdir)
        proc.kill()
        proc.communicate()
        wait_until(lambda: not uploader_processes(logdir), timeout=30, message="the final drain")
        with Journal(logdir, create=False) as journal:
            assert journal.status()["pending_segments"] == journal.status()["open_segments"] == 0

        def reaped() -> bool:  # an orphan is init's to reap; it must at least not linger as our zombie
            try:
                return uploader.status() == psutil.STATUS_ZOMBIE and uploader.ppid() == 1
            except psutil.NoSuchProcess:
                return True

        wait_until(reaped, timeout=30, message="the uploader to be gone")
        assert not _zombie_children()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        kill_uploaders(logdir)


def _hub_down_deadline(tmp_path, monkeypatch, caplog, *, pushed_before: bool) -> None:
    drain_timeout = 3.0
    with LocalHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setenv("HF_TOKEN", hub.token())
        logdir = tmp_path / "down"
        hub_pid = hub.pid
        before = _footprint(hub_pid)
        if not pushed_before:
            hub.stop()
        writer = HFSummaryWriter("alice/down", logdir=logdir, close_timeout=1, drain_timeout=drain_timeout)
        try:
            writer.add_scalar("loss", 1.0, 0)
            if pushed_before:
                assert writer.push_to_hub(timeout=30)
                writer.add_scalar("loss", 2.0, 1)
                hub.stop()
            caplog.set_level(logging.WARNING, logger="hf_summary")
            writer.close()  # gives up waiting at close_timeout; the uploader goes on until drain_timeout
            assert any("are not on the Hub after 1 s" in r.getMessage() for r in caplog.records), caplog.text
            wait_until(lambda: not uploader_processes(logdir), timeout=drain_timeout + 5,
                       message="the uploader to give up at its deadline")
            wait_until(lambda: not _zombie_children(), timeout=5, message="the uploader to be reaped")
            with Journal(logdir, create=False) as journal:
                assert journal.status()["pending_segments"] == 1  # kept for `hf-summary recover`
            _same_footprint(before, hub_pid)
        finally:
            writer.close()
            kill_uploaders(logdir)


def test_after_the_drain_deadline_with_the_hub_down_no_uploader_is_left(tmp_path, monkeypatch, caplog):
    _hub_down_deadline(tmp_path, monkeypatch, caplog, pushed_before=False)


def test_drain_deadline_holds_when_the_hub_goes_down_after_a_push(tmp_path, monkeypatch, caplog):
    _hub_down_deadline(tmp_path, monkeypatch, caplog, pushed_before=True)


def test_an_uploader_killed_by_sigkill_leaves_no_scratch_behind(tmp_path, writer_env, repo_id, monkeypatch):
    """hf_xet's cache and logs live in LOGDIR/.hf_summary/xet/<pid>: removed at exit, and, after a SIGKILL, by
    the next uploader of the logdir. Nothing goes to the temp dir."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    logdir = tmp_path / "logs"
    scratch = logdir / ".hf_summary" / "xet"
    with HFSummaryWriter(repo_id, logdir=logdir, commit_every=60) as writer:
        writer.add_scalar("loss", 1.0, 0)
        assert writer.push_to_hub(timeout=60)
        (killed,) = uploader_processes(logdir)
        assert (scratch / str(killed.pid)).is_dir()
        killed.kill()
        killed.wait(10)
        writer.add_scalar("loss", 2.0, 1)
        assert writer.push_to_hub(timeout=60)  # a new uploader, which clears the dead one's scratch
        (current,) = uploader_processes(logdir)
        assert sorted(p.name for p in scratch.iterdir()) == [str(current.pid)]
    wait_until(lambda: not uploader_processes(logdir), 30, message="the uploader to exit")
    assert not list(scratch.iterdir())
    assert not [p for p in temp.iterdir() if p.name.startswith("hf-summary-xet-")]
