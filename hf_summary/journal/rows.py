"""The journal's rows as Python objects: a segment, a compaction, a lease owner."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass
class SegmentRow:
    """One row of the `segments` table."""

    id: int
    run: str
    name: str
    path_in_repo: str
    state: str
    size: int | None
    sha256: str | None
    attempts: int
    last_error: str | None
    created_at: float
    sealed_at: float | None
    committed_at: float | None
    commit_oid: str | None
    writer_pid: int | None
    writer_create_time: float | None = None
    level: int = 0
    replaced_by: int | None = None

    def local_path(self, logdir: str | os.PathLike[str]) -> Path:
        """`logdir / run / name` (run `""` is the logdir itself)."""
        return Path(logdir, *filter(None, self.run.split("/")), self.name)


@dataclass
class CompactionRow:
    """One row of the `compactions` table."""

    id: int
    run: str
    level: int
    name: str
    path_in_repo: str
    size: int
    sha256: str
    state: str
    segment_id: int | None
    created_at: float
    committed_at: float | None
    commit_oid: str | None


@dataclass(frozen=True)
class LeaseOwner:
    """A process that may hold the lease: pid plus its create time (pids are reused) and host."""

    pid: int
    create_time: float
    host: str
