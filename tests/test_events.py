"""add_scalar's lean path: the Event bytes it encodes are exactly protobuf's, and the writer falls back to
tensorboardX's path for everything else."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
from tensorboardX import SummaryWriter
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.summary_pb2 import Summary
from tensorboardX.summary import scalar

from hf_summary import HFSummaryWriter
from hf_summary._events import MAX_CACHED_TAGS, ScalarEncoder
from hf_summary.segments import read_records

VALUES = [0.0, -0.0, 1.0, -1.5, 0.1, 1e-45, 1e-39, 3.4e38, 3.5e38, 1e300, float("nan"), float("inf"), 2**70, -3, 0]
# every varint length of a step: 1, 2, 3 bytes (the unrolled cases), 4 and 10 bytes (the loop), and negatives
STEPS = [None, 0, 1, -1, 127, 128, 16383, 16384, 2**21 - 1, 2**21, 2**31, 2**63 - 1, -(2**63)]
WALL_TIMES = [0.0, 1.5, 1733100000.123456, -5.0]
TAGS = ["loss", "a/b", "é/ü x", "", "/lead", "x" * 200, "y" * 122, "z" * 123]  # 122/123: a length varint grows


def _protobuf_event(tag: str, value: float, step: int | None, wall_time: float) -> bytes:
    event = Event(summary=Summary(value=[Summary.Value(tag=tag, simple_value=value)]), wall_time=wall_time)
    if step is not None:
        event.step = step
    return event.SerializeToString()


def test_encoded_scalar_events_are_protobufs_bytes():
    encoded = 0
    for clean in (True, False):  # tensorboardX cleans tags, torch's flavour keeps them
        encoder = ScalarEncoder(clean_tags=clean)
        for value, step, wall_time, tag in itertools.product(VALUES, STEPS, WALL_TIMES, TAGS):
            got = encoder.encode(tag, value, step, wall_time)
            if got is None:  # left to tensorboardX's path
                assert not wall_time or float(value) - float(value) != 0 or abs(value) > 3.4e38
                continue
            expected_tag = scalar(tag, 0.0).value[0].tag if clean else tag
            assert got == _protobuf_event(expected_tag, float(value), step, wall_time), (value, step, wall_time, tag)
            encoded += 1
    assert encoded > 2000


def test_encoder_keeps_a_bounded_number_of_tags():
    encoder = ScalarEncoder()
    for n in range(MAX_CACHED_TAGS + 50):
        assert encoder.encode(f"t{n}", 1.0, n, 2.0) == _protobuf_event(f"t{n}", 1.0, n, 2.0)
    assert len(encoder._prefixes) == MAX_CACHED_TAGS


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


def _records_by_run(logdir) -> dict[str, list[bytes]]:
    """Every record but each file's header (its wall time is the file's creation), per run dir."""
    runs: dict[str, list[bytes]] = {}
    for path in sorted(logdir.rglob("*tfevents*")):
        if ".hf_summary" not in path.parts:
            records = [data for data in read_records(path) if not Event.FromString(data).file_version]
            runs.setdefault(path.parent.relative_to(logdir).as_posix(), []).extend(records)
    return runs


# numpy scalars and one-element arrays take the lean path too (each kind under a tag of its own, to check it did)
NUMPY_VALUES = [np.float32(2.5), np.float16(-0.1), np.float64(0.1), np.float64(3.5e38), np.int64(-3), np.uint8(200),
                np.bool_(True), np.longdouble(0.3), np.array(0.25, dtype=np.float32), np.array(1e-3),
                np.array(7, dtype=np.int32), np.float32("nan"), np.array(np.inf)]


def _kind(value) -> str:
    return f"{type(value).__name__}{np.ndim(value)}"


def test_lean_scalars_write_tensorboardxs_records_byte_for_byte(tmp_path, writer_env, repo_id):
    def log(writer) -> None:
        for step, value in enumerate([0.5, 7, -1e-3, float("nan"), np.float32(2.5), 3.5e38, 1e-40, *NUMPY_VALUES]):
            writer.add_scalar(f"a b/{_kind(value)}", value, step * 9000, walltime=1733100000.25 + step)
            writer.add_scalars("pair", {"x": value, "y/z": -1.0}, step * 9000, walltime=1733100000.5 + step)
        writer.add_scalar("no step", 1.0, walltime=1733100100.0)

    reference = SummaryWriter(logdir=str(tmp_path / "tbx"))
    log(reference)
    reference.export_scalars_to_json(str(tmp_path / "tbx.json"))
    reference.close()
    with HFSummaryWriter(repo_id, logdir=tmp_path / "ours", commit_every=60) as writer:
        log(writer)
        writer.export_scalars_to_json(str(tmp_path / "ours.json"))
        lean = set(writer._scalar_encoder._prefixes)
    assert {f"a b/{_kind(value)}" for value in NUMPY_VALUES if abs(float(value)) < 3.4e38} <= lean
    theirs, ours = _records_by_run(tmp_path / "tbx"), _records_by_run(tmp_path / "ours")
    assert set(ours) == {".", "pair/x", "pair/y/z"} and ours == theirs
    exported = {Path(run).name: values for run, values in json.loads((tmp_path / "ours.json").read_text()).items()}
    expected = {Path(run).name: values for run, values in json.loads((tmp_path / "tbx.json").read_text()).items()}
    assert exported == expected
