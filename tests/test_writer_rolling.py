"""Rolling segments: names sort in creation order, readers see every step, nothing empty, state survives."""

from __future__ import annotations

import os
import time

import pytest
from helpers import event_keys
from tensorboardX.proto.event_pb2 import Event

from hf_summary import HFSummaryWriter
from hf_summary.journal import Journal
from hf_summary.segments import parse_segment_sequence, read_records

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _roll(writer: HFSummaryWriter) -> None:
    writer.push_to_hub(blocking=False)


def _scalar_steps(run_dir, tag: str, purge_orphaned_data: bool = True) -> list[int]:
    accumulator = event_accumulator.EventAccumulator(
        str(run_dir), size_guidance={"scalars": 0}, purge_orphaned_data=purge_orphaned_data
    )
    accumulator.Reload()
    return [event.step for event in accumulator.Scalars(tag)]


def _segments_held(files) -> int:
    """How many segments the files hold (each segment starts with a file_version record)."""
    return sum(1 for path in files for data in read_records(path) if Event.FromString(data).file_version)


def test_segments_sort_in_creation_order_and_readers_see_every_step(tmp_path, writer_env, repo_id):
    logdir = tmp_path / "rolled"
    with HFSummaryWriter(repo_id, logdir=logdir, commit_every=60) as writer:
        for step in range(300):
            writer.add_scalar("loss", float(step), step)
            writer.add_scalars("pair", {"a": 1.0, "b": 2.0}, step)
            if step % 25 == 24:
                _roll(writer)
    files = sorted(p for p in logdir.glob("*tfevents*"))
    assert _segments_held(files) == 12  # some may have been merged by compaction: in name order all the same
    first_steps = [Event.FromString(list(read_records(p))[1]).step for p in files]
    assert first_steps == sorted(first_steps)
    assert [parse_segment_sequence(p.name) for p in files] == sorted(parse_segment_sequence(p.name) for p in files)
    assert _scalar_steps(logdir, "loss") == list(range(300))
    assert _scalar_steps(logdir / "pair" / "a", "pair") == list(range(300))
    assert _segments_held((logdir / "pair" / "b").glob("*tfevents*")) == 12


def test_no_empty_segment_is_ever_created(tmp_path, writer_env, repo_id):
    logdir = tmp_path / "empty"
    with HFSummaryWriter(repo_id, logdir=logdir, commit_every=60) as writer:
        _roll(writer)
        _roll(writer)
    assert not list(logdir.rglob("*tfevents*"))
    with HFSummaryWriter(repo_id, logdir=logdir, commit_every=60) as writer:
        writer.add_scalar("loss", 1.0, 0)
        _roll(writer)
        _roll(writer)
    files = list(logdir.rglob("*tfevents*"))
    assert len(files) == 1 and all(f.stat().st_size > 0 for f in files)


def test_purge_step_is_written_to_the_first_segment_only(tmp_path, writer_env, repo_id):
    logdir = tmp_path / "purge"
    with HFSummaryWriter(repo_id, logdir=logdir, commit_every=60, purge_step=0) as writer:
        for step in range(30):
            writer.add_scalar("loss", float(step), step)
            if step % 10 == 9:
                _roll(writer)
    files = sorted(logdir.glob("*tfevents*"))
    starts = [
        sum(1 for data in read_records(path) if Event.FromString(data).HasField("session_log")) for path in files
    ]
    assert starts == [1, 0, 0]
    assert _scalar_steps(logdir, "loss") == list(range(30))


def test_use_metadata_defaults_survive_a_roll(tmp_path, writer_env, repo_id):
    logdir = tmp_path / "metadata"
    with HFSummaryWriter(repo_id, logdir=logdir, commit_every=60) as writer:
        with writer.use_metadata(global_step=5, walltime=1234.5):
            writer.add_scalar("before", 1.0)
            _roll(writer)
            writer.add_scalar("after", 2.0)
    steps = {(key[1], key[2], key[3]) for key in event_keys(logdir)}
    assert {("before", 5, 1234.5), ("after", 5, 1234.5)} <= steps


def test_filename_suffix_is_kept(tmp_path, writer_env, repo_id):
    logdir = tmp_path / "suffix"
    with HFSummaryWriter(repo_id, logdir=logdir, filename_suffix=".v1") as writer:
        writer.add_scalar("loss", 1.0, 0)
    assert [p.name.endswith(".v1") for p in logdir.glob("*tfevents*")] == [True]


def test_logging_after_close_reopens_like_tensorboardx(tmp_path, writer_env, repo_id):
    logdir = tmp_path / "reopened"
    writer = HFSummaryWriter(repo_id, logdir=logdir)
    writer.add_scalar("loss", 1.0, 0)
    writer.close()
    writer.add_scalar("loss", 2.0, 1)
    writer.close()
    assert _scalar_steps(logdir, "loss") == [0, 1]


def test_each_event_is_in_the_os_when_add_returns(tmp_path, writer_env, repo_id):
    logdir = tmp_path / "synchronous"
    with HFSummaryWriter(repo_id, logdir=logdir) as writer:
        for step in range(50):
            writer.add_scalar("loss", float(step), step)
            (segment,) = logdir.glob("*tfevents*")
            assert len(list(read_records(segment))) == step + 2  # the file_version record, then each event
            assert os.path.getsize(segment) == sum(len(d) + 16 for d in read_records(segment))


def test_ticks_swap_in_prepared_segments(tmp_path, writer_env, repo_id):
    """The ticker prepares each run dir's next segment under the journal's directory; the first event after a
    roll renames it into place. Files still sort in creation order, nothing is lost or doubled, nothing
    prepared outlives close()."""
    logdir = tmp_path / "ticking"
    prepared_dir = logdir / ".hf_summary" / "prepared"
    with HFSummaryWriter(repo_id, logdir=logdir, commit_every=0.003) as writer:
        step = 0
        deadline = time.monotonic() + 60
        while len(list(logdir.glob("*tfevents*"))) < 4 and time.monotonic() < deadline:
            writer.add_scalar("loss", float(step), step)
            step += 1
            time.sleep(0.002)
        assert prepared_dir.is_dir(), "the ticker prepared no segment"
    assert not list(prepared_dir.iterdir())
    with Journal(logdir, create=False) as journal:
        assert not journal.open_segments()
    files = sorted(logdir.glob("*tfevents*"))
    assert len(files) >= 4
    steps = [event.step for path in files for event in map(Event.FromString, read_records(path)) if event.summary.value]
    assert steps == list(range(step))
