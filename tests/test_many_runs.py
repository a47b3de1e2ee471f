"""Many runs, one repo: logdirs with the same name (a sweep's per-job `.../logs`, Lightning's `version_0` in
every job, a requeued job's fresh logdir) push to the same repo folder. No run ever replaces a file of
another; the writer says once that the folder holds another run and continues it as the same TensorBoard run
(or refuses, with existing_run="error"); a requeued job's steps continue behind its `purge_step`."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import REPO_ROOT, download_repo, kill_uploaders
from trainer_kit import api, cli, hub_env

from hf_summary import HFSummaryWriter
from hf_summary.journal import Journal
from hf_summary.verify import event_keys
from hf_summary.writer import ExistingRunError

FOLDER = "tensorboard/logs"


def _log(logdir: Path, repo_id: str, steps: range, tag: str = "loss", **kwargs) -> None:
    with HFSummaryWriter(repo_id, logdir=logdir, commit_every=60, **kwargs) as writer:
        for step in steps:
            writer.add_scalar(tag, float(step), step)


def assert_no_file_was_ever_replaced(hub, repo_id: str) -> dict[str, str]:
    """Walk the repo's history oldest first: a path, once added, keeps its content. Returns path -> blob id."""
    client = api(hub)
    seen: dict[str, str] = {}
    for commit in reversed(client.list_repo_commits(repo_id)):
        for entry in client.list_repo_tree(repo_id, recursive=True, revision=commit.commit_id):
            blob = getattr(entry, "blob_id", None)
            if blob is None or entry.path == "README.md" or entry.path == ".gitattributes":
                continue
            assert seen.setdefault(entry.path, blob) == blob, f"{entry.path} was replaced in {commit.commit_id}"
    return seen


def test_two_logdirs_with_one_name_keep_both_runs(tmp_path, writer_env, repo_id, caplog):
    first, second = tmp_path / "x" / "logs", tmp_path / "y" / "logs"
    _log(first, repo_id, range(100))
    with caplog.at_level(logging.WARNING, logger="hf_summary"):
        _log(second, repo_id, range(100, 200))
    warnings = [r.getMessage() for r in caplog.records if "already holds event files of another run" in r.getMessage()]
    assert len(warnings) == 1, warnings
    with Journal(first) as journal:
        first_run = journal.run_id()
    assert repr(FOLDER) in warnings[0] and first_run in warnings[0] and "path_in_repo" in warnings[0]

    files = assert_no_file_was_ever_replaced(writer_env, repo_id)
    assert len([path for path in files if path.startswith(FOLDER)]) == 2
    copy = download_repo(writer_env.endpoint, writer_env.token(), repo_id, tmp_path / "copy")
    assert event_keys(copy / FOLDER) == event_keys(first) | event_keys(second)
    assert {key[2] for key in event_keys(copy / FOLDER) if key[1] == "loss"} == set(range(200))


def test_existing_run_error_refuses_before_logging_anything(tmp_path, writer_env, repo_id):
    _log(tmp_path / "x" / "logs", repo_id, range(10))
    with pytest.raises(ExistingRunError, match="another run") as raised:
        HFSummaryWriter(repo_id, logdir=tmp_path / "y" / "logs", existing_run="error")
    assert "existing_run='continue'" in str(raised.value) and "path_in_repo" in str(raised.value)
    assert not list((tmp_path / "y" / "logs").glob("*tfevents*"))
    with pytest.raises(ValueError, match="existing_run must be one of"):
        HFSummaryWriter(repo_id, logdir=tmp_path / "z", existing_run="merge")


def test_the_same_logdir_restarted_is_not_another_run(tmp_path, writer_env, repo_id, caplog):
    logdir = tmp_path / "logs"
    _log(logdir, repo_id, range(10))
    with caplog.at_level(logging.WARNING, logger="hf_summary"):
        _log(logdir, repo_id, range(10, 20), existing_run="error")
    assert not [r for r in caplog.records if "another run" in r.getMessage()]


def test_a_requeued_job_on_a_new_node_continues_its_tensorboard_run(tmp_path, writer_env, repo_id):
    """The first node logged steps 0-99 and was lost after its last push at step 59's checkpoint... the job
    restarts elsewhere from that checkpoint with an empty logdir of the same name and purge_step=60."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _log(tmp_path / "node1" / "logs", repo_id, range(100))
    with HFSummaryWriter(repo_id, logdir=tmp_path / "node2" / "logs", commit_every=60, purge_step=60) as writer:
        for step in range(60, 150):
            writer.add_scalar("loss", 1000.0 + step, step)
    copy = download_repo(writer_env.endpoint, writer_env.token(), repo_id, tmp_path / "copy")
    names = sorted(path.name for path in (copy / FOLDER).iterdir())
    with Journal(tmp_path / "node2" / "logs") as journal:
        second_run = journal.run_id()
    assert second_run in names[-1], "the continuing run's files must sort after the first run's"
    accumulator = EventAccumulator(str(copy / FOLDER))
    accumulator.Reload()
    scalars = accumulator.Scalars("loss")
    assert [s.step for s in scalars] == list(range(150))
    assert [s.value for s in scalars[60:]] == [1000.0 + step for step in range(60, 150)]


def test_a_path_that_holds_another_file_is_never_overwritten(tmp_path, writer_env, repo_id):
    """Someone else's file at the very path of our next segment: the push leaves it alone, says why, and the
    rest of the run goes on; `status` and `recover` say what to do."""
    logdir = tmp_path / "logs"
    writer = HFSummaryWriter(repo_id, logdir=logdir, commit_every=60)
    try:
        writer.add_scalar("loss", 1.0, 0)
        with Journal(logdir) as journal:
            (row,) = journal.open_segments()
        api(writer_env).upload_file(path_or_fileobj=b"someone else's", path_in_repo=row.path_in_repo,
                                    repo_id=repo_id)
        assert not writer.push_to_hub(timeout=10)
        writer.add_scalar("loss", 2.0, 1)
        assert writer.push_to_hub(timeout=30) is False  # the conflicting one stays pending...
        with Journal(logdir) as journal:
            pushed = journal.segments("committed")
        assert len(pushed) == 1  # ...and the next segment went up all the same
    finally:
        writer.close()
    content = api(writer_env).hf_hub_download(repo_id, row.path_in_repo, local_dir=tmp_path / "copy")
    assert Path(content).read_bytes() == b"someone else's"
    status = cli("status", str(logdir), env={})
    assert "Conflicts:  1 segment(s) not pushed" in status.stdout, status.stdout
    result = cli("recover", str(logdir), env=hub_env(writer_env))
    assert result.returncode != 0
    assert "will not be overwritten" in result.stderr and "path_in_repo" in result.stderr, result.stderr


SWEEP_JOB = """
    import json, os
    from hf_summary import HFSummaryWriter

    first = int(os.environ["FIRST_STEP"])
    with HFSummaryWriter(os.environ["REPO"], logdir=os.environ["LOGDIR"], commit_every=1 / 60,
                         purge_step=first or None) as writer:
        for step in range(first, first + 40):
            writer.add_scalar("loss", float(os.environ["JOB"]) * 1000 + step, step)
    print(json.dumps({"done": True}), flush=True)
"""


def _sweep_round(hub, repo_id: str, tmp_path: Path, node: str, first_step: int) -> list[Path]:
    procs = []
    try:
        for job in range(8):
            logdir = tmp_path / node / f"job{job}" / "logs"
            env = {**os.environ, **hub_env(hub), "PYTHONPATH": str(REPO_ROOT), "REPO": repo_id,
                   "LOGDIR": str(logdir), "JOB": str(job), "FIRST_STEP": str(first_step)}
            procs.append((logdir, subprocess.Popen([sys.executable, "-c", textwrap.dedent(SWEEP_JOB)], env=env,
                                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
        for _, proc in procs:
            out, err = proc.communicate(timeout=240)
            assert proc.returncode == 0 and json.loads(out.splitlines()[-1])["done"], err
        return [logdir for logdir, _ in procs]
    finally:
        for logdir, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            kill_uploaders(logdir)


def test_a_sweep_of_eight_jobs_with_one_logdir_name_each_restarted_once(tmp_path, hub, repo_id):
    """8 jobs, same logdir name, one repo; then each requeued on a 'new node' with a fresh logdir. Every event
    of every job is on the Hub once, in the one folder the docs say (tensorboard/logs), and no file was ever
    overwritten."""
    logdirs = _sweep_round(hub, repo_id, tmp_path, "node1", 0)
    logdirs += _sweep_round(hub, repo_id, tmp_path, "node2", 40)
    files = assert_no_file_was_ever_replaced(hub, repo_id)
    copy = download_repo(hub.endpoint, hub.token(), repo_id, tmp_path / "copy")
    assert {path.rpartition("/")[0] for path in files if "tfevents" in path} == {FOLDER}
    on_hub = event_keys(copy / FOLDER)
    logged = set().union(*(event_keys(logdir) for logdir in logdirs))
    assert on_hub == logged
    assert len([key for key in on_hub if key[1] == "loss"]) == 8 * 80
    run_ids = set()
    for logdir in logdirs:
        with Journal(logdir) as journal:
            run_ids.add(journal.run_id())
            assert not journal.pending_segments() and not journal.conflicts()
    assert len(run_ids) == 16
