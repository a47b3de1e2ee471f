"""add_scalar's lean path: the Event bytes it encodes are exactly protobuf's, and the writer falls back to
tensorboardX's path for everything else."""

from __future__ import annotations

import itertools

from tensorboardX.proto.event_pb2 import Event
from tensorboardX.summary import scalar

from hf_summary import HFSummaryWriter
from hf_summary._events import scalar_event, tag_field
from hf_summary.segments import read_records

VALUES = [0.0, -0.0, 1.0, -1.5, 0.1, 1e-45, 1e-39, 3.4e38, 3.5e38, 1e300, float("nan"), float("inf"), 2**70, -3, 0]
STEPS = [None, 0, 1, -1, 127, 128, 2**31, 2**63 - 1, -(2**63)]
WALL_TIMES = [0.0, 1.5, 1733100000.123456, -5.0]
TAGS = ["loss", "a/b", "é/ü x", "", "/lead", "x" * 200]


def test_encoded_scalar_events_are_protobufs_bytes():
    encoded = 0
    for value, step, wall_time, tag in itertools.product(VALUES, STEPS, WALL_TIMES, TAGS):
        got = scalar_event(tag_field(tag), float(value), step, wall_time)
        if got is None:  # left to tensorboardX's path
            assert not wall_time or float(value) - float(value) != 0 or abs(value) > 3.4e38
            continue
        event = Event(summary=scalar(tag, float(value)), wall_time=wall_time)
        if step is not None:
            event.step = step
        assert got == event.SerializeToString(), (value, step, wall_time, tag)
        encoded += 1
    assert encoded > 1000


def test_writer_scalars_read_back_as_tensorboardx_writes_them(tmp_path, writer_env, repo_id):
    logdir = tmp_path / "lean"
    with HFSummaryWriter(repo_id, logdir=logdir, commit_every=60) as writer:
        writer.add_scalar("loss", 0.25, 3, walltime=1733100000.5)
        writer.add_scalar("loss", 7, 4, walltime=1733100001.0)
        writer.add_scalar("nan", float("nan"), 5, walltime=1733100002.0)  # tensorboardX's path
        writer.add_scalar("titled", 1.0, 6, walltime=1733100003.0, display_name="T")  # tensorboardX's path
        with writer.file_writer.use_metadata(global_step=9, walltime=1733100004.0):
            writer.add_scalar("meta", 2.0)
    events = [Event.FromString(data) for path in sorted(logdir.glob("*tfevents*")) for data in read_records(path)]
    values = [(e.summary.value[0].tag, e.step, e.wall_time) for e in events if e.summary.value]
    assert values == [("loss", 3, 1733100000.5), ("loss", 4, 1733100001.0), ("nan", 5, 1733100002.0),
                      ("titled", 6, 1733100003.0), ("meta", 9, 1733100004.0)]
    assert events[1].summary.value[0].simple_value == 0.25 and events[2].summary.value[0].simple_value == 7.0
    assert events[4].summary.value[0].metadata.display_name == "T"
