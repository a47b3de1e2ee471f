"""Overflow: where a final push goes when the repo refuses commits for its budget (HTTP 429) and the grace
period will not see the budget back. A Storage Bucket takes files without commits, so the push is *parked*
there, with a record of everything needed to finish it later from any machine (the node's disk may be gone):
the target repo, branch and folder, the run id, and each file's path in the repo, size, sha256 and order.
`hf_summary.settle` moves parked files into the repo, exactly once, and removes them from the bucket.

The bucket is the one named by `HF_SUMMARY_OVERFLOW_BUCKET` (`NAMESPACE/NAME`), else a private one derived
from the repo's name (`alice/sweep` -> `alice/sweep-hf-summary-overflow`), created on first need. Layout,
under one folder per target (so one bucket can serve many repos, and a run lists only its own records)::

    hf-summary-overflow/<repo type>/<namespace>/<repo name>/<branch, %-quoted>/<folder in repo>/
        <record id>.json                  the record (written in the same batch as its files)
        <record id>/<run subdir>/<name>   the parked files

A record id is `<first segment's sequence, 13 digits>-<run id>`: records sort in the order the run made
them, and parking the same segments again (an uploader restarted before the budget came back) rewrites the
same paths with the same bytes.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from hf_summary.hub import MissingRepoError
from hf_summary.segments import parse_segment_sequence

OVERFLOW_BUCKET_ENV = "HF_SUMMARY_OVERFLOW_BUCKET"
ROOT = "hf-summary-overflow"
RECORD_FORMAT = 1
_RECORD_SUFFIX = ".json"
_DERIVED_SUFFIX = "-hf-summary-overflow"
_MAX_NAME = 96  # the Hub's limit on a repo (and bucket) name


class OverflowRecordError(ValueError):
    """A record in the overflow bucket cannot be read; the message names it."""


@dataclass(frozen=True)
class ParkedFile:
    """One parked file: where it belongs in the repo, its content's size and sha256, and its place in the run's
    order (segments are read in this order)."""

    path_in_repo: str
    size: int
    sha256: str
    order: int


@dataclass(frozen=True)
class OverflowRecord:
    """What a later settle needs to finish a refused push, stored in the bucket beside the files."""

    repo_id: str
    repo_type: str
    revision: str
    folder: str  # the run's folder in the repo (its `path_in_repo`)
    run_id: str
    record_id: str
    host: str
    created_at: float
    reason: str
    files: tuple[ParkedFile, ...]

    @property
    def prefix(self) -> str:
        """The bucket folder of this record's target and run folder."""
        return f"{target_prefix(self.repo_id, self.repo_type, self.revision)}/{self.folder}"

    @property
    def path(self) -> str:
        """The record's own path in the bucket."""
        return f"{self.prefix}/{self.record_id}{_RECORD_SUFFIX}"

    def bucket_path(self, file: ParkedFile) -> str:
        """Where `file`'s bytes are in the bucket."""
        return f"{self.prefix}/{self.record_id}/{file.path_in_repo[len(self.folder) + 1:]}"

    def to_json(self) -> str:
        return json.dumps({
            "format": RECORD_FORMAT,
            "repo_id": self.repo_id,
            "repo_type": self.repo_type,
            "revision": self.revision,
            "folder": self.folder,
            "run_id": self.run_id,
            "record_id": self.record_id,
            "host": self.host,
            "created_at": self.created_at,
            "reason": self.reason,
            "files": [vars(file) for file in self.files],
        }, indent=1)

    @classmethod
    def from_json(cls, text: str, where: str) -> OverflowRecord:
        """Parse a record read from `where` (its path in the bucket, for the error)."""
        try:
            data = json.loads(text)
            if data.get("format") != RECORD_FORMAT:
                raise OverflowRecordError(f"{where}: unknown record format {data.get('format')!r}; upgrade hf-summary")
            files = tuple(ParkedFile(**file) for file in data["files"])
            return cls(**{**{key: data[key] for key in _RECORD_KEYS}, "files": files})
        except (ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, OverflowRecordError):
                raise
            raise OverflowRecordError(f"{where} is not a readable overflow record ({exc})") from exc


_RECORD_KEYS = ("repo_id", "repo_type", "revision", "folder", "run_id", "record_id", "host", "created_at", "reason")


def overflow_bucket(repo_id: str) -> str:
    """The bucket a repo's refused pushes go to: `HF_SUMMARY_OVERFLOW_BUCKET`, else `REPO-hf-summary-overflow`
    in the repo's namespace."""
    named = os.environ.get(OVERFLOW_BUCKET_ENV, "").strip()
    if named:
        return named
    namespace, _, name = repo_id.rpartition("/")
    name = name[: _MAX_NAME - len(_DERIVED_SUFFIX)] + _DERIVED_SUFFIX
    return f"{namespace}/{name}" if namespace else name


def target_prefix(repo_id: str, repo_type: str, revision: str) -> str:
    """The bucket folder holding every record of one repo branch."""
    return f"{ROOT}/{repo_type}/{repo_id}/{quote(revision, safe='')}"


def is_record(path: str) -> bool:
    return path.endswith(_RECORD_SUFFIX)


def new_record(
    *, repo_id: str, repo_type: str, revision: str, folder: str, run_id: str, host: str, reason: str,
    files: list[tuple[Path, str, int, str]],
) -> OverflowRecord:
    """The record of parking `files` (local path, path in repo, size, sha256), in the order given."""
    sequences = [parse_segment_sequence(dest) for _, dest, _, _ in files]
    first = min((s for s in sequences if s is not None), default=int(time.time() * 1000))
    return OverflowRecord(
        repo_id=repo_id, repo_type=repo_type, revision=revision, folder=folder, run_id=run_id,
        record_id=f"{first:013d}-{run_id}", host=host, created_at=time.time(), reason=reason,
        files=tuple(ParkedFile(path_in_repo=dest, size=size, sha256=sha256, order=order)
                    for order, (_, dest, size, sha256) in enumerate(files)),
    )


def park(bucket, record: OverflowRecord, sources: list[Path]) -> None:
    """Put `record`'s files (`sources`, in the record's order) and the record itself in `bucket` (a
    bucket client: `hf_summary.hub`'s interface), in one batch; the bucket is created (private) if missing.
    Raises `HubError` when the bucket did not take all of it (then nothing counts as parked)."""
    with tempfile.TemporaryDirectory(prefix="hf-summary-overflow-") as scratch:
        record_file = Path(scratch, "record.json")
        record_file.write_text(record.to_json(), encoding="utf-8")
        files = [(src, record.bucket_path(file)) for src, file in zip(sources, record.files, strict=True)]
        files.append((record_file, record.path))
        message = f"hf-summary overflow {record.record_id}"
        try:
            bucket.commit_files(files, message)
        except MissingRepoError:
            bucket.ensure_repo(private=True)
            bucket.commit_files(files, message)
