"""Xet wire formats (https://huggingface.co/docs/xet/xorb, /shard and /hashing): hash strings, xorb chunk headers
and decoding, shard file info.

Everything is little-endian. A malformed input raises `XetFormatError` with what was wrong and where.
Hashes are not verified (that needs the keyed BLAKE3 Merkle tree); the CAS proves integrity instead by
rebuilding each file and checking its SHA-256.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

import lz4.frame

HASH_RE = re.compile(r"[0-9a-f]{64}")
CHUNK_HEADER = 8
RECORD = 48
SHARD_TAG = b"HFRepoMe"
BOOKEND = b"\xff" * 32
FLAG_VERIFICATION = 1 << 31
FLAG_METADATA = 1 << 30
COMPRESSION_NONE, COMPRESSION_LZ4, COMPRESSION_BG4_LZ4 = 0, 1, 2


class XetFormatError(ValueError):
    """A xorb or shard that does not follow the format."""


def hash_string(raw: bytes) -> str:
    """The text form of a 32-byte hash: four little-endian u64 words, each as `%016x`."""
    return "".join(f"{word:016x}" for word in struct.unpack("<4Q", raw))


def sha256_hex(raw: bytes) -> str:
    """A shard's sha256 field as the commit's `oid` (the same word-wise conversion, verified)."""
    return hash_string(raw)


@dataclass(frozen=True)
class Chunk:
    offset: int  # of the chunk header within the xorb
    stored_size: int  # compressed bytes after the header
    compression: int
    size: int  # uncompressed

    @property
    def end(self) -> int:
        return self.offset + CHUNK_HEADER + self.stored_size


def xorb_chunks(data: bytes) -> list[Chunk]:
    """The chunks of an uploaded xorb (one walk over the 8-byte headers)."""
    chunks, offset = [], 0
    while offset < len(data):
        if offset + CHUNK_HEADER > len(data):
            raise XetFormatError(f"truncated chunk header at byte {offset}")
        version = data[offset]
        stored = int.from_bytes(data[offset + 1 : offset + 4], "little")
        compression = data[offset + 4]
        size = int.from_bytes(data[offset + 5 : offset + 8], "little")
        if version != 0 or compression not in (COMPRESSION_NONE, COMPRESSION_LZ4, COMPRESSION_BG4_LZ4):
            raise XetFormatError(f"unknown chunk version {version} or compression {compression} at byte {offset}")
        chunk = Chunk(offset, stored, compression, size)
        if chunk.end > len(data):
            raise XetFormatError(f"chunk at byte {offset} runs past the end of the xorb")
        chunks.append(chunk)
        offset = chunk.end
    if not chunks:
        raise XetFormatError("empty xorb")
    return chunks


def decode_chunk(chunk: Chunk, stored: bytes) -> bytes:
    """The uncompressed bytes of `chunk` from its `stored` (compressed) bytes."""
    if chunk.compression == COMPRESSION_NONE:
        data = stored
    else:
        try:
            data = lz4.frame.decompress(stored)
        except RuntimeError as e:
            raise XetFormatError(f"chunk at byte {chunk.offset} is not a valid LZ4 frame: {e}") from None
        if chunk.compression == COMPRESSION_BG4_LZ4:
            data = _ungroup4(data)
    if len(data) != chunk.size:
        raise XetFormatError(f"chunk at byte {chunk.offset} decodes to {len(data)} bytes, not {chunk.size}")
    return data


def _ungroup4(grouped: bytes) -> bytes:
    """Undo byte grouping: the data was split into 4 groups (byte i went to group i % 4)."""
    n = len(grouped)
    out = bytearray(n)
    start = 0
    for k in range(4):
        length = n // 4 + (1 if k < n % 4 else 0)
        out[k::4] = grouped[start : start + length]
        start += length
    return bytes(out)


@dataclass(frozen=True)
class Term:
    xorb: str
    size: int  # unpacked bytes
    start: int  # chunk index
    end: int  # chunk index, exclusive


@dataclass(frozen=True)
class ShardFile:
    file_hash: str
    terms: tuple[Term, ...]
    sha256: str | None  # repo uploads carry it, bucket uploads do not

    @property
    def size(self) -> int:
        return sum(t.size for t in self.terms)


def shard_files(data: bytes) -> list[ShardFile]:
    """The file-info section of an uploaded shard."""
    if len(data) < RECORD or not data.startswith(SHARD_TAG):
        raise XetFormatError("not a shard: the header tag is missing")
    files, offset = [], RECORD
    while True:
        record = _record(data, offset)
        if record[:32] == BOOKEND:
            return files
        flags, count = struct.unpack_from("<II", record, 32)
        offset += RECORD
        terms = []
        for _ in range(count):
            term = _record(data, offset)
            _, size, start, end = struct.unpack_from("<IIII", term, 32)
            if end <= start:
                raise XetFormatError(f"term at byte {offset} has an empty chunk range")
            terms.append(Term(hash_string(term[:32]), size, start, end))
            offset += RECORD
        if flags & FLAG_VERIFICATION:
            offset += RECORD * count
        sha256 = None
        if flags & FLAG_METADATA:
            sha256 = sha256_hex(_record(data, offset)[:32])
            offset += RECORD
        files.append(ShardFile(hash_string(record[:32]), tuple(terms), sha256))


def _record(data: bytes, offset: int) -> bytes:
    if offset + RECORD > len(data):
        raise XetFormatError(f"shard truncated at byte {offset}")
    return data[offset : offset + RECORD]
