"""Pushing a byte range of a local file as a file of its own, without a copy on disk: `FileRange`.

`hf-summary watch` merges the copies of a foreign event file on the Hub; the merged file is a byte range of
that foreign file, so it goes up as a view of the range rather than as a staged copy (disk beyond the source
files stays bounded whatever the run's length). A range is checked against the size and sha256 recorded when it
was planned: `FileRange.read` before handing the bytes over, `RangeReader` as the client reads it
(a pass from the start to the end that does not hash to the record fails at its last read, so the upload fails
and no commit carries it).

How the client uploads each (huggingface_hub 2.4, hf_xet 1.8): `bytes` go through Xet like a path (chunks the
Hub holds are not sent again), held in memory; a file object is not supported by Xet, so the client uploads the
whole commit's file objects by basic LFS, streamed (sha256 by 1 MiB reads, the upload by the HTTP client's
chunks). `upload_sources` picks bytes up to `IN_MEMORY_BYTES` per commit, views beyond. A Storage
Bucket takes no file objects either (Xet only): a range goes to a bucket as its bytes, whatever its size
(`hf-summary watch`, the only one to push ranges, does not push to buckets).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

IN_MEMORY_BYTES = 16 << 20  # per commit: ranges read into memory (Xet), the rest streamed (basic LFS)


class RangeChangedError(OSError):
    """The file no longer holds the recorded bytes in the range (rewritten, truncated, replaced)."""


@dataclass(frozen=True)
class FileRange:
    """Bytes `[start, end)` of `path`, recorded with `sha256`."""

    path: Path
    start: int
    end: int
    sha256: str

    @property
    def size(self) -> int:
        return self.end - self.start

    def read(self) -> bytes:
        """The range's bytes, checked against the record; `RangeChangedError` otherwise."""
        with open(self.path, "rb") as f:
            data = os.pread(f.fileno(), self.size, self.start)
        if len(data) != self.size or hashlib.sha256(data).hexdigest() != self.sha256:
            raise RangeChangedError(f"{self.path} no longer holds the bytes {self.start}..{self.end} recorded")
        return data

    def open(self) -> RangeReader:
        return RangeReader(self)


class RangeReader(io.BufferedIOBase):
    """A read-only, seekable view of a `FileRange` that checks each pass from its start to its end
    against the record (a pass after a seek elsewhere is not checked: only the client's multi-part upload
    does that, after its own sequential sha256 pass was)."""

    def __init__(self, source: FileRange) -> None:
        super().__init__()
        self.source = source
        self._fd = os.open(source.path, os.O_RDONLY | os.O_CLOEXEC)
        self._position = 0
        self._digest: hashlib._Hash | None = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.source.size}[whence]
        position = max(0, base + offset)
        if position != self._position:
            self._digest = hashlib.sha256() if position == 0 else None
        self._position = position
        return position

    def read(self, size: int | None = -1) -> bytes:
        left = self.source.size - self._position
        size = left if size is None or size < 0 else min(size, left)
        data = os.pread(self._fd, size, self.source.start + self._position) if size > 0 else b""
        if len(data) < size:
            raise RangeChangedError(f"{self.source.path} is shorter than the range {self.source.start}.."
                                    f"{self.source.end} recorded")
        self._position += len(data)
        if self._digest is not None:
            self._digest.update(data)
            if self._position == self.source.size and data:
                digest, self._digest = self._digest.hexdigest(), None
                if digest != self.source.sha256:
                    raise RangeChangedError(f"{self.source.path} no longer holds the bytes {self.source.start}.."
                                            f"{self.source.end} recorded")
        return data

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)

    def readinto(self, buffer) -> int:  # noqa: ANN001 (any writable buffer)
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def upload_sources(files: list[tuple[Path | FileRange, str]]) -> list[str | bytes | RangeReader]:
    """What to hand the client for each source: a path as such; a range as its checked bytes while this commit's
    in-memory ranges stay within `IN_MEMORY_BYTES`, else as a `RangeReader` (the caller closes it)."""
    budget = IN_MEMORY_BYTES
    sources: list[str | bytes | RangeReader] = []
    for src, _ in files:
        if not isinstance(src, FileRange):
            sources.append(str(src))
        elif src.size <= budget:
            budget -= src.size
            sources.append(src.read())
        else:
            sources.append(src.open())
    return sources


class _FallbackNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "binary IO buffer" not in record.getMessage()


@contextlib.contextmanager
def quiet_view_fallback() -> Iterator[None]:
    """huggingface_hub warns at each upload of file objects that Xet takes none and basic LFS is used: intended
    for views, so not logged while they are uploaded."""
    client_log, notice = logging.getLogger("huggingface_hub._commit_api"), _FallbackNotice()
    client_log.addFilter(notice)
    try:
        yield
    finally:
        client_log.removeFilter(notice)
