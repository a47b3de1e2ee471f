"""Several writers on one logdir, as tensorboardX allows: nested, one after another and concurrent (threads) in one
process, and a train and an eval process at once. Every event reaches the Hub exactly once, and each close()
returns once its own events are there (never by its timeout)."""

from __future__ import annotations

import logging
import threading

from helpers import download_repo, kill_uploaders, run_script
from storage_kit import tag_steps

from hf_summary import HFSummaryWriter

STEPS = 30
CLOSE_TIMEOUT_S = 60  # a close() that waits this long did not notice its events were pushed by another uploader
DRAIN_TIMEOUT_S = 120  # longer: an uploader waiting for the lease must end because its work is done, not by this


def _hub_counts(hub, repo_id: str, tmp_path, logdir_name: str):
    dest = download_repo(hub.endpoint, hub.token(), repo_id, tmp_path / "hub")
    return tag_steps(dest / "tensorboard" / logdir_name)


def _log(writer: HFSummaryWriter, tag: str) -> None:
    for step in range(STEPS):
        writer.add_scalar(tag, float(step), step)


def _expected(*tags: str) -> dict:
    return {("", tag, step): 1 for tag in tags for step in range(STEPS)}


def _timed_out(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "are not on the Hub after" in r.getMessage()]


def _writer(repo_id: str, logdir) -> HFSummaryWriter:
    return HFSummaryWriter(repo_id, logdir=logdir, commit_every=0.01, close_timeout=CLOSE_TIMEOUT_S,
                          drain_timeout=DRAIN_TIMEOUT_S)


def test_nested_writers_on_one_logdir(tmp_path, hub, writer_env, repo_id, caplog):
    """tensorboardX's own test_writer nests ``with SummaryWriter() as w`` in another, both on one logdir."""
    caplog.set_level(logging.WARNING, logger="hf_summary")
    logdir = tmp_path / "same"
    try:
        with _writer(repo_id, logdir) as outer:
            _log(outer, "outer")
            with _writer(repo_id, logdir) as inner:
                _log(inner, "inner")
            outer.add_scalar("after_inner", 1.0, 0)
        assert _timed_out(caplog) == []
        assert _hub_counts(hub, repo_id, tmp_path, "same") == {**_expected("outer", "inner"), ("", "after_inner", 0): 1}
    finally:
        kill_uploaders(logdir)


def test_writers_one_after_another_and_in_threads_on_one_logdir(tmp_path, hub, writer_env, repo_id, caplog):
    caplog.set_level(logging.WARNING, logger="hf_summary")
    logdir = tmp_path / "same"
    try:
        for tag in ("first", "second"):
            with _writer(repo_id, logdir) as writer:
                _log(writer, tag)
        errors: list[BaseException] = []

        def worker(tag: str) -> None:
            try:
                with _writer(repo_id, logdir) as writer:
                    _log(writer, tag)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(f"thread{n}",)) for n in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert _timed_out(caplog) == []
        assert _hub_counts(hub, repo_id, tmp_path, "same") == _expected("first", "second", "thread0", "thread1",
                                                                        "thread2")
    finally:
        kill_uploaders(logdir)


PROCESS = """
    import os, sys, time
    from hf_summary import HFSummaryWriter
    writer = HFSummaryWriter(os.environ["REPO"], logdir=os.environ["LOGDIR"], commit_every=0.01, close_timeout=60,
                             drain_timeout=120)
    for step in range(int(os.environ["STEPS"])):
        writer.add_scalar(os.environ["TAG"], float(step), step)
        time.sleep(0.02)
    started = time.monotonic()
    writer.close()
    print(f"closed in {time.monotonic() - started:.1f} s", flush=True)
"""


def test_a_train_and_an_eval_process_share_a_logdir(tmp_path, hub, writer_env, repo_id):
    logdir = tmp_path / "shared"
    env = {"REPO": repo_id, "LOGDIR": str(logdir), "STEPS": str(STEPS), "HF_ENDPOINT": hub.endpoint,
           "HF_TOKEN": hub.token()}
    procs = [run_script(PROCESS, {**env, "TAG": tag}, tmp_path) for tag in ("train", "eval")]
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=CLOSE_TIMEOUT_S + 60)
            assert proc.returncode == 0, err
            assert "are not on the Hub after" not in err, err
            assert out.startswith("closed in"), (out, err)
        assert _hub_counts(hub, repo_id, tmp_path, "shared") == _expected("train", "eval")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        kill_uploaders(logdir)
