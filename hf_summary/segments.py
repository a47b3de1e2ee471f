"""Event segment files: TFRecord framing, one `write(2)` per record, sealing, naming, tail scanning.

A segment is an ordinary TensorBoard event file (`events.out.tfevents.*`) that is written by exactly
one `Segment`, rolled at each commit tick and never changed once sealed. Each record is framed
as TensorBoard expects (`u64 len | u32 masked crc(len) | data | u32 masked crc(data)`, little-endian)
and reaches the OS in a single `os.write` of the whole record, so a SIGKILL of the writer loses
nothing already logged: at most the record being written is torn, and `seal_tail` cuts it.

This module knows neither the journal nor the Hub.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from crc32c import crc32c as _crc32c

__all__ = [
    "SEGMENT_PREFIX",
    "Segment",
    "SealedFile",
    "concatenate",
    "file_digests",
    "file_sha256",
    "frame_record",
    "fsync_dir",
    "is_event_file",
    "last_complete_offset",
    "masked_crc32c",
    "merge_level",
    "merged_name",
    "new_run_id",
    "parse_segment_run_id",
    "parse_segment_sequence",
    "read_records",
    "seal_tail",
    "segment_name",
    "segment_span",
]

SEGMENT_PREFIX = "events.out.tfevents."
_SEGMENT_SUFFIX = ".hfs"
_SEGMENT_RE = re.compile(
    r"^events\.out\.tfevents\.(\d{10,})\.[A-Za-z0-9._-]+?(?:\.([0-9a-f]{8}))?\.hfs[^/\x00]*$"
)
_HOST_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_RUN_ID_RE = re.compile(r"^[0-9a-f]{8}$")
# A merged file: the first replaced segment's name with `.m<level>-<last sequence>` right after `.hfs`.
_MERGED_RE = re.compile(r"^(events\.out\.tfevents\.(\d{10,})\..+?\.hfs)\.m(\d+)-(\d{10,})(.*)$")

_HEADER = struct.Struct("<QI")  # length, masked crc of the 8 length bytes
_LEN = struct.Struct("<Q")
_CRC = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8
_READ_CHUNK = 1 << 20
_CACHED_HEADER_LENGTHS = 4096
_FRAME_HEADERS: dict[int, bytes] = {}  # record length -> its framing header (see _frame_header)
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC


def masked_crc32c(data: bytes) -> int:
    """TensorFlow's masked CRC-32C (Castagnoli) of `data`."""
    c = _crc32c(data)
    return (((c >> 15) | (c << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame_record(data: bytes) -> bytes:
    """Frame `data` as one TFRecord: `u64 len | u32 masked crc(len) | data | u32 masked crc(data)`."""
    n = len(data)
    d = _crc32c(data)
    return (
        (_FRAME_HEADERS.get(n) or _frame_header(n))
        + data
        + _CRC.pack((((d >> 15) | (d << 17)) + _MASK_DELTA) & 0xFFFFFFFF)
    )


def _frame_header(n: int) -> bytes:
    """`u64 len | u32 masked crc(len)`, kept for the lengths small records have (a scalar's repeat)."""
    length = _LEN.pack(n)
    header = length + _CRC.pack(masked_crc32c(length))
    if n < _CACHED_HEADER_LENGTHS:
        _FRAME_HEADERS[n] = header
    return header


def new_run_id() -> str:
    """A fresh run id: 8 random hex digits, kept in the journal and put in every segment name of the run."""
    return secrets.token_hex(4)


def segment_name(sequence: int, host: str, suffix: str = "", *, run_id: str) -> str:
    """File name of segment `sequence` of run `run_id`:
    `events.out.tfevents.<sequence, 13 digits>.<host>.<run id>.hfs<suffix>`.

    The zero-padded sequence comes first, so lexicographic order is creation order, also across the runs
    that continue one another in a repo folder (sequences are time-based, see `Journal.next_sequence`);
    the run id makes the name unique across journals, hosts and restarts, so no run ever replaces a file
    of another. Characters of `host` outside `[A-Za-z0-9._-]` (`/`, NUL, spaces, ...) become `_`;
    an empty host becomes `localhost`. `suffix` (tensorboardX's `filename_suffix`) goes after `.hfs`.
    """
    if sequence < 0:
        raise ValueError(f"segment sequence must be >= 0, got {sequence}")
    if "/" in suffix or "\0" in suffix:
        raise ValueError(f"segment name suffix may not contain '/' or NUL: {suffix!r}")
    if not _RUN_ID_RE.match(run_id):
        raise ValueError(f"run id must be 8 lowercase hex digits (see new_run_id()), got {run_id!r}")
    host = _HOST_UNSAFE.sub("_", host) or "localhost"
    return f"{SEGMENT_PREFIX}{sequence:013d}.{host}.{run_id}{_SEGMENT_SUFFIX}{suffix}"


def parse_segment_sequence(name: str) -> int | None:
    """Sequence number of a name made by `segment_name` (any suffix), or `None` for other names."""
    match = _SEGMENT_RE.match(os.path.basename(name))
    return int(match.group(1)) if match else None


def parse_segment_run_id(name: str) -> str | None:
    """Run id in a name made by `segment_name`, or `None` (other names, and names from before run
    ids, which carry only the host)."""
    match = _SEGMENT_RE.match(os.path.basename(name))
    return match.group(2) if match else None


def merged_name(first: str, last: str, level: int) -> str:
    """Name of the file (of merge `level` >= 1) that replaces the files `first` .. `last` of one run dir.

    It is `first`'s name (merge marker dropped) with `.m<level>-<last sequence>` after `.hfs`: it sorts where
    `first` did, so lexicographic order stays creation order, it differs from every file it replaces (and from
    a merged file of another level starting at the same segment), and it tells which sequences it covers.
    """
    first_span, last_span = segment_span(first), segment_span(last)
    if first_span is None or last_span is None or level < 1:
        raise ValueError(f"cannot name a level-{level} merge of {first!r} .. {last!r}")
    base, suffix = _split_merged(os.path.basename(first))
    last_digits = _sequence_digits(os.path.basename(last))
    return f"{base}.m{level}-{last_digits}{suffix}"


def _split_merged(name: str) -> tuple[str, str]:
    """`(name up to and including .hfs, user suffix)` of a segment or merged file name."""
    match = _MERGED_RE.match(name)
    if match:
        return match.group(1), match.group(5)
    head, marker, suffix = name.partition(_SEGMENT_SUFFIX)
    return head + marker, suffix


def _sequence_digits(name: str) -> str:
    match = _MERGED_RE.match(name)
    return match.group(4) if match else _SEGMENT_RE.match(name).group(1)


def segment_span(name: str) -> tuple[int, int] | None:
    """`(first, last)` sequence a segment (`(s, s)`) or merged file covers; `None` for other names."""
    name = os.path.basename(name)
    if (match := _MERGED_RE.match(name)) and _SEGMENT_RE.match(name):
        return int(match.group(2)), int(match.group(4))
    sequence = parse_segment_sequence(name)
    return None if sequence is None else (sequence, sequence)


def merge_level(name: str) -> int:
    """Merge level of a file name: 0 for a segment (or another name), `L` for a `merged_name`."""
    match = _MERGED_RE.match(os.path.basename(name))
    return int(match.group(3)) if match else 0


def is_event_file(name: str | os.PathLike[str]) -> bool:
    """True when the basename contains `tfevents`, the test TensorBoard's readers use."""
    return "tfevents" in os.path.basename(name)


@dataclass(frozen=True)
class SealedFile:
    """A finished segment: it never changes again."""

    path: Path
    size: int
    sha256: str


class Segment:
    """An open segment being written. One `os.write` per record; no user-space buffer.

    Not thread-safe: the caller serialises `write_record` and `seal` (the writer holds a lock).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Create `path` (mode 0644 before umask); raises `FileExistsError` if it already exists."""
        self.path = Path(path)
        self.size = 0
        self._fd: int | None = os.open(self.path, _OPEN_FLAGS, 0o644)
        self._sha = hashlib.sha256()
        self._torn = False  # a failed write may have left bytes past `size` that ftruncate could not cut

    def write_record(self, data: bytes) -> None:
        """Frame `data` and hand it to the OS in one `os.write`.

        On any failure (`ENOSPC`, `EFBIG`, an exception raised by a signal handler between two partial
        writes, ...) the file is truncated back to the last complete record and the exception propagates
        unchanged. Raises `ValueError` once the segment is sealed.
        """
        fd = self._fd
        if fd is None:
            raise ValueError(f"segment {self.path} is sealed")
        if self._torn:
            self._truncate_tail(fd)
        record = frame_record(data)
        try:
            written = os.write(fd, record)
            if written != len(record):
                view = memoryview(record)
                while written < len(record):
                    if self._fd != fd:  # sealed by a signal handler between two partial writes
                        raise ValueError(f"segment {self.path} was sealed during a write")
                    written += os.write(fd, view[written:])
        except BaseException:
            if self._fd == fd:
                self._torn = True
                try:
                    self._truncate_tail(fd)
                except OSError:
                    pass  # retried before the next write and at seal()
            raise
        self.size += len(record)
        self._sha.update(record)

    def unlinked(self) -> bool:
        """Whether the file was removed from its directory while open (say, an `rm -rf` of the logdir)."""
        fd = self._fd
        try:
            return fd is not None and os.fstat(fd).st_nlink == 0
        except OSError:  # sealed meanwhile
            return False

    def salvage(self) -> list[bytes]:
        """Close a removed segment and return the data of its complete records, read back through the open file
        (Linux's `/proc/self/fd`; nothing where that cannot be read)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return []
        try:
            return list(read_records(f"/proc/self/fd/{fd}"))
        except OSError:
            return []
        finally:
            os.close(fd)

    def discard(self) -> None:
        """Close and delete the file: for a segment whose very first record could not be written."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.path.unlink(missing_ok=True)

    def sync(self) -> None:
        """fsync what was written so far (records are already in the OS; this makes them survive power loss).

        A no-op once sealed.
        """
        if self._fd is not None:
            os.fsync(self._fd)

    def seal(self) -> SealedFile:
        """Cut any torn tail, fsync and close the file (and fsync its directory); return its summary.

        Safe to call from a signal handler that interrupted `write_record`: a record that fully
        reached the file is kept and counted, a partial one is cut. Raises `ValueError` if already sealed;
        if fsync fails the file is closed anyway and the error propagates (`seal_tail` can finish it).
        """
        fd = self._fd
        if fd is None:
            raise ValueError(f"segment {self.path} is already sealed")
        self._fd = None
        try:
            if os.fstat(fd).st_size != self.size:  # a failed write's leftovers, or a write we interrupted
                end = _last_complete(self.path, self.size)
                with open(self.path, "rb") as f:  # fd is write-only
                    f.seek(self.size)
                    self._sha.update(f.read(end - self.size))
                os.ftruncate(fd, end)
                self.size = end
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(self.path.parent)
        return SealedFile(self.path, self.size, self._sha.hexdigest())

    def _truncate_tail(self, fd: int) -> None:
        os.ftruncate(fd, self.size)
        self._torn = False


def fsync_dir(path: Path) -> None:
    """Make a new directory entry durable; filesystems that cannot fsync a directory are ignored."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _scan(
    path: str | os.PathLike[str], *, keep_data: bool, start: int = 0
) -> Iterator[tuple[int, bytes | None]]:
    """Yield `(end offset, data)` for each complete, CRC-valid record from `start` (a record boundary).

    Stops at the first incomplete or corrupt record (as TensorBoard's readers do; the TFRecord format:
    https://www.tensorflow.org/tutorials/load_data/tfrecord): a bad length CRC means the
    length cannot be trusted, so nothing after it is read. Records are read in bounded chunks unless
    `keep_data` asks for their bytes.
    """
    with open(path, "rb", buffering=_READ_CHUNK) as f:
        size = os.fstat(f.fileno()).st_size
        off = f.seek(start)
        while size - off >= _HEADER.size:
            header = f.read(_HEADER.size)
            if len(header) < _HEADER.size:
                return
            length, length_crc = _HEADER.unpack(header)
            if masked_crc32c(header[:8]) != length_crc:
                return
            end = off + _HEADER.size + length + _CRC.size
            if end > size:
                return
            data: bytes | None = None
            if keep_data or length <= _READ_CHUNK:
                data = f.read(length)
                if len(data) < length:
                    return
                crc = _crc32c(data)
            else:
                crc, remaining = 0, length
                while remaining:
                    chunk = f.read(min(_READ_CHUNK, remaining))
                    if not chunk:
                        return
                    crc = _crc32c(chunk, crc)
                    remaining -= len(chunk)
            footer = f.read(_CRC.size)
            if len(footer) < _CRC.size:
                return
            if (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF != _CRC.unpack(footer)[0]:
                return
            off = end
            yield off, data if keep_data else None


def last_complete_offset(path: str | os.PathLike[str], start: int = 0) -> int:
    """Offset just past the last complete, CRC-valid record; `truncate(offset)` removes only a bad tail.

    `start` (a record boundary) resumes a previous scan, so tailing a growing file reads only what is new.
    """
    return _last_complete(path, start)


def _last_complete(path: str | os.PathLike[str], start: int) -> int:
    off = start
    for end, _ in _scan(path, keep_data=False, start=start):
        off = end
    return off


def read_records(path: str | os.PathLike[str], start: int = 0) -> Iterator[bytes]:
    """Yield each complete record's data (CRC-checked) from `start` (a record boundary); stop at the first
    torn or corrupt record."""
    for _, data in _scan(path, keep_data=True, start=start):
        assert data is not None
        yield data


def file_digests(path: str | os.PathLike[str], limit: int | None = None) -> tuple[int, str, str]:
    """`(size, sha256, git blob id)` of `path`'s first `limit` bytes (all of it by default): the two
    ids the Hub reports for LFS and for regular files."""
    size = os.stat(path).st_size if limit is None else limit
    sha, blob = hashlib.sha256(), hashlib.sha1(f"blob {size}\0".encode())
    remaining = size
    with open(path, "rb") as f:
        while remaining and (chunk := f.read(min(_READ_CHUNK, remaining))):
            sha.update(chunk)
            blob.update(chunk)
            remaining -= len(chunk)
    return size - remaining, sha.hexdigest(), blob.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's contents, read in chunks."""
    sha = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(_READ_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def concatenate(sources: list[Path | tuple[Path, int, int]], dest: Path) -> tuple[SealedFile, list[SealedFile]]:
    """Write the bytes of `sources` (whole files, or `(file, start, end)` byte ranges) one after another to
    the new file `dest` (`O_EXCL`), fsync it.

    Event files are sequences of whole records, so the result holds exactly their records, in order. Returns
    the new file's summary and each source's (size and sha256 as read), for the caller to check.
    """
    fd = os.open(dest, _OPEN_FLAGS, 0o644)

    def write(chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view):]

    try:
        size, sha256, read = _read_sources(sources, write)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        Path(dest).unlink(missing_ok=True)
        raise
    os.close(fd)
    return SealedFile(Path(dest), size, sha256), read


def concatenation_digest(sources: list[Path | tuple[Path, int, int]]) -> tuple[int, str, list[SealedFile]]:
    """`(size, sha256)` of what `concatenate` would write, and each source's summary, without writing."""
    return _read_sources(sources, lambda chunk: None)


def _read_sources(
    sources: list[Path | tuple[Path, int, int]], sink: Callable[[bytes], None]
) -> tuple[int, str, list[SealedFile]]:
    read: list[SealedFile] = []
    total = hashlib.sha256()
    size = 0
    for source in sources:
        path, start, end = source if isinstance(source, tuple) else (source, 0, None)
        sha, n = hashlib.sha256(), 0
        with open(path, "rb", buffering=0) as f:
            f.seek(start)
            while chunk := f.read(_READ_CHUNK if end is None else min(_READ_CHUNK, end - start - n)):
                sha.update(chunk)
                total.update(chunk)
                n += len(chunk)
                sink(chunk)
        read.append(SealedFile(Path(path), n, sha.hexdigest()))
        size += n
    return size, total.hexdigest(), read


def seal_tail(path: str | os.PathLike[str]) -> SealedFile:
    """Seal a segment left open by a dead writer: cut it to its last complete record, fsync, summarise.

    Only call this when no process can still be writing the file.
    """
    path = Path(path)
    end = last_complete_offset(path)
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        if os.fstat(fd).st_size != end:
            os.ftruncate(fd, end)
        os.fsync(fd)
    finally:
        os.close(fd)
    return SealedFile(path, end, file_sha256(path))
