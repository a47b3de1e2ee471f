"""Persistent CAS state: xorbs on disk (`<data>/cas/xorbs/<hash[:2]>/<hash>`) and Xet files in `<data>/cas.db`.

A file arrives as a shard entry (its terms: chunk ranges of stored xorbs). `add_file` rebuilds it from the
chunks, stores the bytes in the blob store under their SHA-256 (so plain `/resolve` downloads and LFS clients
read the same bytes) and records `file hash -> (sha256, size, terms)`. A shard naming a xorb the CAS never
got, a chunk range past a xorb's end, or a SHA-256 that the rebuilt bytes do not have is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from hf_summary.localhub.blobs import BlobStore
from hf_summary.localhub.xetformat import CHUNK_HEADER, Chunk, ShardFile, Term, decode_chunk, xorb_chunks

SCHEMA = """
CREATE TABLE IF NOT EXISTS xorbs (hash TEXT PRIMARY KEY, chunks TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (hash TEXT PRIMARY KEY, sha256 TEXT NOT NULL, size INTEGER NOT NULL,
    terms TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS files_by_sha256 ON files (sha256);
"""


class CasError(ValueError):
    """An upload the CAS refuses (the message says why)."""


@dataclass(frozen=True)
class XetFile:
    hash: str
    sha256: str
    size: int
    terms: tuple[Term, ...]


class CasStore:
    def __init__(self, data_dir: Path, blobs: BlobStore) -> None:
        self.blobs = blobs
        self.root = data_dir / "cas" / "xorbs"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(data_dir / "cas.db", timeout=60, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def xorb_path(self, xorb: str) -> Path:
        return self.root / xorb[:2] / xorb

    def put_xorb(self, xorb: str, data: bytes) -> bool:
        """Store a xorb; False if one with this hash was stored already (it is kept as it is)."""
        chunks = xorb_chunks(data)
        if self.chunks(xorb) is not None:
            return False
        fd, tmp = self.blobs.new_temp()
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        target = self.xorb_path(xorb)
        target.parent.mkdir(exist_ok=True)
        os.replace(tmp, target)
        rows = [[c.offset, c.stored_size, c.compression, c.size] for c in chunks]
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO xorbs (hash, chunks) VALUES (?, ?)", (xorb, json.dumps(rows)))
        return True

    def chunks(self, xorb: str) -> list[Chunk] | None:
        with self._lock:
            row = self._db.execute("SELECT chunks FROM xorbs WHERE hash = ?", (xorb,)).fetchone()
        return None if row is None else [Chunk(*c) for c in json.loads(row[0])]

    def add_file(self, shard_file: ShardFile) -> XetFile:
        """Rebuild a shard's file from its chunks, store its bytes as a blob, and record it."""
        fd, tmp = self.blobs.new_temp()
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out:
                for term in shard_file.terms:
                    data = b"".join(self._term_bytes(term))
                    if len(data) != term.size:
                        raise CasError(f"a term of xorb {term.xorb} unpacks to {len(data)} bytes, not {term.size}")
                    digest.update(data)
                    out.write(data)
            sha256 = digest.hexdigest()
            if shard_file.sha256 is not None and shard_file.sha256 != sha256:
                raise CasError(f"file {shard_file.file_hash} rebuilds to sha256 {sha256}, not {shard_file.sha256}")
            known = self.file(shard_file.file_hash)
            if known is not None and known.sha256 != sha256:
                raise CasError(f"file {shard_file.file_hash} is already stored with other content")
            if not self.blobs.exists(sha256, shard_file.size):
                self.blobs.adopt(tmp, sha256)
        finally:
            tmp.unlink(missing_ok=True)
        terms = json.dumps([[t.xorb, t.size, t.start, t.end] for t in shard_file.terms])
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO files (hash, sha256, size, terms) VALUES (?, ?, ?, ?)",
                (shard_file.file_hash, sha256, shard_file.size, terms),
            )
        return XetFile(shard_file.file_hash, sha256, shard_file.size, shard_file.terms)

    def _term_bytes(self, term: Term) -> list[bytes]:
        chunks = self.chunks(term.xorb)
        if chunks is None:
            raise CasError(f"xorb {term.xorb} has not been uploaded")
        if term.end > len(chunks):
            raise CasError(f"chunks {term.start}..{term.end} are past the end of xorb {term.xorb}")
        with open(self.xorb_path(term.xorb), "rb") as f:
            first = chunks[term.start]
            f.seek(first.offset)
            raw = f.read(chunks[term.end - 1].end - first.offset)
        return [
            decode_chunk(c, raw[c.offset - first.offset + CHUNK_HEADER : c.end - first.offset]) for c in chunks[term.start : term.end]
        ]

    def file(self, file_hash: str) -> XetFile | None:
        with self._lock:
            row = self._db.execute("SELECT hash, sha256, size, terms FROM files WHERE hash = ?", (file_hash,)).fetchone()
        return None if row is None else _xet_file(row)

    def file_for_sha256(self, sha256: str) -> XetFile | None:
        """A Xet file with this content, if any was uploaded through the CAS."""
        with self._lock:
            row = self._db.execute(
                "SELECT hash, sha256, size, terms FROM files WHERE sha256 = ? LIMIT 1", (sha256,)
            ).fetchone()
        return None if row is None else _xet_file(row)


def _xet_file(row: tuple) -> XetFile:
    file_hash, sha256, size, terms = row
    return XetFile(file_hash, sha256, size, tuple(Term(*t) for t in json.loads(terms)))
