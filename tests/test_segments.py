"""Event segments: framing, one write per record, torn tails, sealing, naming."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Collection
from pathlib import Path

import pytest
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.record_writer import RecordWriter
from tensorboardX.record_writer import masked_crc32c as tbx_masked_crc32c

from hf_summary import segments
from hf_summary.segments import (
    SEGMENT_PREFIX,
    SealedFile,
    Segment,
    file_sha256,
    frame_record,
    is_event_file,
    last_complete_offset,
    masked_crc32c,
    new_run_id,
    parse_segment_run_id,
    parse_segment_sequence,
    read_records,
    seal_tail,
    segment_name,
)

PAYLOADS = [b"", b"x", b"\x00" * 27, bytes(range(256)) * 5, os.urandom(70_000)]


def scalar_event(step: int, value: float = 0.5, tag: str = "loss") -> bytes:
    event = Event(wall_time=1_700_000_000.0 + step, step=step)
    event.summary.value.add(tag=tag, simple_value=value)
    return event.SerializeToString()


def write_segment(path: Path, payloads: list[bytes]) -> SealedFile:
    segment = Segment(path)
    for payload in payloads:
        segment.write_record(payload)
    return segment.seal()


def boundaries(payloads: list[bytes]) -> list[int]:
    offsets = [0]
    for payload in payloads:
        offsets.append(offsets[-1] + len(payload) + 16)
    return offsets


# -- framing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: f"{len(p)}B")
def test_frame_matches_tensorboardx_record_writer(tmp_path: Path, payload: bytes) -> None:
    reference = tmp_path / "tbx"
    writer = RecordWriter(str(reference))
    writer.write(payload)
    writer.close()
    assert masked_crc32c(payload) == tbx_masked_crc32c(payload)
    assert frame_record(payload) == reference.read_bytes()

    sealed = write_segment(tmp_path / "ours", [payload])
    assert (tmp_path / "ours").read_bytes() == reference.read_bytes()
    assert sealed.size == len(payload) + 16


def test_events_round_trip(tmp_path: Path) -> None:
    payloads = [scalar_event(step, value=step / 3) for step in range(100)]
    sealed = write_segment(tmp_path / "seg", payloads)
    events = [Event.FromString(data) for data in read_records(sealed.path)]
    assert [e.step for e in events] == list(range(100))
    assert events[3].summary.value[0].tag == "loss"
    assert sealed.size == boundaries(payloads)[-1] == (tmp_path / "seg").stat().st_size


# -- Segment ----------------------------------------------------------------------------------------


def test_seal_sha256_and_size(tmp_path: Path) -> None:
    path = tmp_path / "seg"
    segment = Segment(str(path))
    assert segment.path == path and segment.size == 0
    for payload in PAYLOADS:
        segment.write_record(payload)
        assert segment.size == path.stat().st_size  # every record is in the OS when write_record returns
    sealed = segment.seal()
    assert sealed == SealedFile(path, path.stat().st_size, file_sha256(path))
    assert sealed.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert list(read_records(path)) == PAYLOADS


def test_segment_refuses_existing_file_and_use_after_seal(tmp_path: Path) -> None:
    path = tmp_path / "seg"
    path.write_bytes(b"tensorboardX wrote this")
    with pytest.raises(FileExistsError):
        Segment(path)
    assert path.read_bytes() == b"tensorboardX wrote this"

    segment = Segment(tmp_path / "new")
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o644 & ~_umask()
    segment.write_record(b"a")
    segment.seal()
    with pytest.raises(ValueError, match="already sealed"):
        segment.seal()
    with pytest.raises(ValueError, match="sealed"):
        segment.write_record(b"b")
    assert list(read_records(tmp_path / "new")) == [b"a"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class FakeWrite:
    """Stands in for os.write on one fd: counts calls and can write short or fail on chosen calls."""

    def __init__(self, fd: int, *, short: Collection[int] = (), fail: dict[int, BaseException] | None = None):
        self.fd, self.short, self.fail, self.calls = fd, short, fail or {}, 0
        self.real = os.write

    def __call__(self, fd: int, data: bytes) -> int:
        if fd != self.fd:
            return self.real(fd, data)
        self.calls += 1
        if self.calls in self.fail:
            raise self.fail[self.calls]
        if self.calls in self.short:
            data = bytes(data[: max(1, len(data) // 3)])
        return self.real(fd, data)


def test_one_os_write_per_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    segment = Segment(tmp_path / "seg")
    fake = FakeWrite(segment._fd)
    monkeypatch.setattr(os, "write", fake)
    for step in range(50):
        segment.write_record(scalar_event(step))
    assert fake.calls == 50
    segment.seal()


def test_short_writes_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    segment = Segment(tmp_path / "seg")
    fake = FakeWrite(segment._fd, short={1, 2, 4})
    monkeypatch.setattr(os, "write", fake)
    segment.write_record(b"a" * 100)
    segment.write_record(b"b" * 100)
    assert list(read_records(segment.seal().path)) == [b"a" * 100, b"b" * 100]


@pytest.mark.parametrize(
    "error", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()], ids=["ENOSPC", "signal"]
)
def test_failed_write_truncates_to_last_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    path = tmp_path / "seg"
    segment = Segment(path)
    segment.write_record(b"good")
    fake = FakeWrite(
        segment._fd, short={1}, fail={2: error}
    )  # call 1 writes part of the record, call 2 fails
    monkeypatch.setattr(os, "write", fake)
    with pytest.raises(type(error)) as raised:
        segment.write_record(b"torn" * 50)
    assert raised.value is error  # re-raised unchanged
    assert path.stat().st_size == segment.size == 20
    segment.write_record(b"after")
    assert list(read_records(segment.seal().path)) == [b"good", b"after"]


def test_failed_truncate_is_retried_before_next_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "seg"
    segment = Segment(path)
    segment.write_record(b"good")
    monkeypatch.setattr(os, "write", FakeWrite(segment._fd, short={1}, fail={2: OSError(errno.EIO, "EIO")}))
    real_ftruncate = os.ftruncate
    failures = iter([OSError(errno.EIO, "EIO")])

    def flaky_ftruncate(fd: int, length: int) -> None:
        if (exc := next(failures, None)) is not None:
            raise exc
        real_ftruncate(fd, length)

    monkeypatch.setattr(os, "ftruncate", flaky_ftruncate)
    with pytest.raises(OSError, match="EIO"):
        segment.write_record(b"x" * 90)
    assert path.stat().st_size > segment.size  # the torn bytes are still there ...
    monkeypatch.setattr(os, "write", FakeWrite(segment._fd))
    segment.write_record(b"next")  # ... and are cut before the next record goes out
    assert list(read_records(segment.seal().path)) == [b"good", b"next"]


class SealInside(FakeWrite):
    """Plays a signal handler that seals the segment right after os.write call ``at`` returns."""

    def __init__(self, segment: Segment, at: int, short: Collection[int] = ()) -> None:
        super().__init__(segment._fd, short=short)
        self.segment, self.at = segment, at
        self.sealed: SealedFile | None = None

    def __call__(self, fd: int, data: bytes) -> int:
        written = super().__call__(fd, data)
        if fd == self.fd and self.calls == self.at:
            self.sealed = self.segment.seal()
        return written


def test_seal_from_a_handler_after_a_complete_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "seg"
    segment = Segment(path)
    segment.write_record(b"first")
    fake = SealInside(segment, at=1)
    monkeypatch.setattr(os, "write", fake)
    segment.write_record(b"second")  # the record reached the file before the "handler" sealed it: it counts
    assert fake.sealed == SealedFile(path, path.stat().st_size, file_sha256(path))
    assert list(read_records(path)) == [b"first", b"second"]
    with pytest.raises(ValueError):
        segment.write_record(b"third")


def test_seal_from_a_handler_between_partial_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "seg"
    segment = Segment(path)
    segment.write_record(b"first")
    fake = SealInside(segment, at=1, short={1})
    monkeypatch.setattr(os, "write", fake)
    with pytest.raises(ValueError, match="sealed during a write"):
        segment.write_record(b"second" * 20)  # the caller retries it in a new segment
    assert fake.calls == 1  # nothing more was written to the sealed file
    assert fake.sealed == SealedFile(path, 21, file_sha256(path))
    assert list(read_records(path)) == [b"first"]


def test_seal_cuts_leftovers_of_a_failed_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "seg"
    segment = Segment(path)
    segment.write_record(b"first")
    monkeypatch.setattr(
        os, "write", FakeWrite(segment._fd, short={1}, fail={2: OSError(errno.ENOSPC, "full")})
    )

    def broken_ftruncate(fd: int, length: int) -> None:
        raise OSError(errno.EIO, "EIO")

    monkeypatch.setattr(os, "ftruncate", broken_ftruncate)
    with pytest.raises(OSError, match="full"):
        segment.write_record(b"x" * 90)
    assert path.stat().st_size > 21
    monkeypatch.undo()
    assert segment.seal() == SealedFile(path, 21, file_sha256(path))
    assert path.stat().st_size == 21


def test_file_size_limit_leaves_clean_boundary(tmp_path: Path) -> None:
    """A real kernel error: RLIMIT_FSIZE makes write(2) go short, then fail with EFBIG, like a full disk."""
    path = tmp_path / "seg"
    child = textwrap.dedent(
        f"""
        import json, resource, signal
        from hf_summary.segments import Segment
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        segment = Segment({str(path)!r})
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, hard))
        written = 0
        try:
            while True:
                segment.write_record(b"r" * 50)
                written += 1
        except OSError as exc:
            error = exc.errno
        size_after_error = segment.size
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
        segment.write_record(b"after")
        sealed = segment.seal()
        print(json.dumps(dict(error=error, written=written, size_after_error=size_after_error,
                              size=sealed.size, sha256=sealed.sha256)))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, timeout=60, check=True
    )
    report = json.loads(result.stdout)
    assert report["error"] == errno.EFBIG
    assert report["written"] == 1000 // 66  # 66-byte records: the 16th crossed the limit
    assert report["size_after_error"] == report["written"] * 66
    assert report["size"] == path.stat().st_size == last_complete_offset(path)
    assert report["sha256"] == file_sha256(path)
    assert list(read_records(path)) == [b"r" * 50] * report["written"] + [b"after"]


# -- scanning torn and corrupt files ----------------------------------------------------------------


@pytest.mark.parametrize("chunk", [None, 7], ids=["default-chunk", "tiny-chunk"])
def test_every_cut_position(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int | None) -> None:
    if chunk is not None:
        monkeypatch.setattr(segments, "_READ_CHUNK", chunk)
    payloads = [b"", scalar_event(1), b"z" * 40, scalar_event(2, tag="a/very/long/tag" * 3)]
    full = b"".join(frame_record(p) for p in payloads)
    offsets = boundaries(payloads)
    for cut in range(len(full) + 1):
        path = tmp_path / f"cut{cut}"
        path.write_bytes(full[:cut])
        good = max(o for o in offsets if o <= cut)
        assert last_complete_offset(path) == good, cut
        assert list(read_records(path)) == payloads[: offsets.index(good)]
        sealed = seal_tail(path)
        assert sealed == SealedFile(path, good, hashlib.sha256(full[:good]).hexdigest())
        assert path.read_bytes() == full[:good]
        assert seal_tail(path) == sealed  # idempotent


def test_corruption_stops_the_scan(tmp_path: Path) -> None:
    payloads = [scalar_event(step) for step in range(5)]
    full = b"".join(frame_record(p) for p in payloads)
    offsets = boundaries(payloads)
    for position, label in [
        (offsets[2] + 3, "length"),
        (offsets[2] + 9, "length crc"),
        (offsets[2] + 20, "data"),
    ]:
        broken = bytearray(full)
        broken[position] ^= 0x40
        path = tmp_path / label.replace(" ", "_")
        path.write_bytes(bytes(broken))
        assert last_complete_offset(path) == offsets[2], label
        assert list(read_records(path)) == payloads[:2], label
    # a torn record followed by good ones (appending to a killed file): nothing after the tear counts
    path = tmp_path / "mid_partial"
    path.write_bytes(full[: offsets[3] - 5] + full[offsets[3] :])
    assert last_complete_offset(path) == offsets[2]
    # garbage that is not a record at all
    path = tmp_path / "garbage"
    path.write_bytes(os.urandom(4096))
    assert last_complete_offset(path) == 0 and list(read_records(path)) == []


def test_large_record_scanned_in_chunks(tmp_path: Path) -> None:
    big = os.urandom(3 * (1 << 20) + 5)
    path = tmp_path / "big"
    write_segment(path, [b"head", big, b"tail"])
    size = path.stat().st_size
    assert last_complete_offset(path) == size
    assert list(read_records(path)) == [b"head", big, b"tail"]
    os.truncate(path, size - 10)  # cuts into the last (20-byte) record only
    assert last_complete_offset(path) == size - 20
    os.truncate(path, size - 20 - 100)  # cuts into the big record's data
    assert seal_tail(path).size == 20


def test_seal_tail_of_empty_and_clean_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.touch()
    assert seal_tail(empty) == SealedFile(empty, 0, hashlib.sha256(b"").hexdigest())
    clean = tmp_path / "clean"
    sealed = write_segment(clean, [b"a", b"b"])
    assert seal_tail(clean) == sealed


# -- names ------------------------------------------------------------------------------------------


def test_names_sort_in_creation_order() -> None:
    sequences = list(range(0, 1001)) + [9_999, 10_000, 123_456_789, 9_999_999_999, 1_796_165_988_287]
    names = [segment_name(sequence, "node-1.cluster", run_id="0123abcd") for sequence in sequences]
    assert sorted(names) == names
    assert sorted(names, reverse=True) != names
    for sequence, name in zip(sequences, names, strict=True):
        assert name.startswith(SEGMENT_PREFIX) and is_event_file(name)
        assert parse_segment_sequence(name) == sequence
        assert parse_segment_sequence(f"/some/run/{name}") == sequence
        assert parse_segment_run_id(name) == "0123abcd"


def test_names_of_two_runs_never_collide_and_interleave_by_time() -> None:
    first, second = new_run_id(), new_run_id()
    assert first != second
    names = [segment_name(sequence, "vm", run_id=run) for sequence in (5, 6) for run in (first, second)]
    assert len(set(names)) == 4
    assert sorted(names)[:2] == sorted(names[:2])  # the sequence decides the order, the run id only ties


def test_names_from_before_run_ids_still_parse() -> None:
    legacy = f"{SEGMENT_PREFIX}0000000007.node-1.cluster.hfs"
    assert parse_segment_sequence(legacy) == 7
    assert parse_segment_run_id(legacy) is None


@pytest.mark.parametrize("run_id", ["", "ABCDEF01", "0123abc", "0123abcde", "../x", None])
def test_bad_run_id(run_id) -> None:
    with pytest.raises((ValueError, TypeError)):
        segment_name(1, "vm", run_id=run_id)


@pytest.mark.parametrize("host", ["", "a/b", "nul\0host", "spaces and ü", "../..", "vm.example.com"])
def test_host_is_sanitised(host: str) -> None:
    name = segment_name(7, host, run_id="0123abcd")
    assert "/" not in name and "\0" not in name and name.isascii()
    assert name != f"{SEGMENT_PREFIX}0000000000007..0123abcd.hfs"
    assert parse_segment_sequence(name) == 7
    assert os.path.basename(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "events.out.tfevents.1795714803.vm",  # tensorboardX's own file
        "events.out.tfevents.1795714803.vm.1234.0",  # torch's
        "events.out.tfevents.12345.vm.hfs",  # not zero-padded
        "events.out.tfevents.0000000001.hfs",  # no host
        "events.out.tfevents.0000000001.vm.hfs/x",
        "journal.db",
        "",
    ],
)
def test_foreign_names_are_not_segments(name: str) -> None:
    assert parse_segment_sequence(name) is None


def test_filename_suffix() -> None:
    names = [segment_name(sequence, "vm", ".v2", run_id="0123abcd") for sequence in (9, 10, 11)]
    assert names[0] == f"{SEGMENT_PREFIX}0000000000009.vm.0123abcd.hfs.v2"
    assert sorted(names) == names
    assert [parse_segment_sequence(name) for name in names] == [9, 10, 11]
    with pytest.raises(ValueError):
        segment_name(1, "vm", "/etc", run_id="0123abcd")


def test_is_event_file_and_bad_sequence() -> None:
    assert is_event_file(Path("/x/events.out.tfevents.1795714803.vm"))
    assert not is_event_file("/tfevents/journal.db")
    with pytest.raises(ValueError):
        segment_name(-1, "vm", run_id="0123abcd")
