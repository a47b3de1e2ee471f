"""What a push target is: the `PushTarget` interface that a repo's client and a Storage Bucket's client
both implement, and the values they return. The uploader, `recover`, compaction and the mirror of `view`
are written against this interface only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from hf_summary.hub.ranges import FileRange

CARD_TAG = "hf-summary-writer"
REPO_TYPES = ("model", "dataset", "space")
BUCKET = "bucket"
TARGET_TYPES = (*REPO_TYPES, BUCKET)


@dataclass(frozen=True)
class CommitResult:
    oid: str
    url: str


@dataclass(frozen=True)
class CommitSummary:
    oid: str
    title: str
    created_at: str


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    git_oid: str | None  # None in buckets (no git)
    sha256: str | None  # only known for LFS files
    xet_hash: str | None = None  # what buckets report instead of a sha256

    def holds(
        self, size: int | None, sha256: str | None, git_oid: str | None, local: Path | None = None
    ) -> bool | None:
        """Whether this file has that size and content (`local`, if given, is a file with exactly that
        content); `None` when only downloading it can tell (a regular file and no git blob id to compare
        with, or a bucket file and no local copy to hash)."""
        if self.size != size:
            return False
        if self.sha256 is not None:  # LFS: the Hub reports the content's sha256
            return self.sha256 == sha256
        if self.xet_hash is not None:  # a bucket reports only the Xet hash: hash the local copy the same way
            return None if local is None else self.xet_hash == local_xet_hash(local)
        if git_oid is not None:  # stored as a git blob: compare blob ids
            return self.git_oid == git_oid
        return None


def local_xet_hash(path: Path) -> str:
    """The Xet hash the Hub reports for a file with `path`'s content (computed locally, nothing is sent)."""
    import hf_xet  # not at import time: importing it starts its logging, which must see HF_XET_LOG_DEST first

    [info] = hf_xet.hash_files([str(path)])
    return info.hash


class PushTarget(Protocol):
    """One repo (or bucket) on one Hub, as hf-summary sees it. Every method raises only
    `HubError` subclasses.

    What a target does not have is answered, never refused: a bucket keeps no history (`squash` and
    `tag_card` return `False`, `head` is `None`, `commits` is empty) and has no revision (`commit`
    arguments are ignored)."""

    repo_id: str
    repo_type: str
    revision: str
    endpoint: str

    def ensure_repo(self, *, private: bool | None) -> str:
        """Create the target if missing (never change an existing one's visibility); returns its URL."""

    def check_write_access(self) -> None:
        """Raise `PermanentHubError` when the token clearly cannot write to the target."""

    def commit_files(
        self,
        files: list[tuple[Path | FileRange, str]],
        message: str,
        *,
        never_replace: frozenset[str] = frozenset(),
        deletions: list[str] = (),
    ) -> CommitResult:
        """Push `(local path or byte range, path in target)` pairs and delete `deletions`; a path in
        `never_replace` that holds other content stops the push with `PathConflictError`."""

    def squash(self, message: str) -> bool:
        """Squash the branch's history into one commit; whether there was a history to squash."""

    def tag_card(self, tag: str = CARD_TAG) -> bool:
        """Add `tag` to the card's metadata unless it is there; whether a commit was made."""

    def head(self) -> str | None:
        """The commit the revision points at now (`None`: no commits, list again at each look)."""

    def list_files(self, prefix: str, *, commit: str | None = None, missing_ok: bool = True) -> dict[str, RemoteFile]:
        """Every file under `prefix`, keyed by path; an absent folder gives `{}` unless not `missing_ok`."""

    def file_info(self, paths: list[str]) -> dict[str, RemoteFile]:
        """The files among `paths` that exist (one request), keyed by path."""

    def fetch_file(self, file: RemoteFile, *, commit: str | None, cache_dir: Path) -> Path:
        """Download one file into a cache under `cache_dir` (once); the path of its content there."""

    def download(self, prefix: str, dest: Path) -> Path:
        """Fetch every file under `prefix` into `dest` (same layout); returns `dest`."""

    def commits(self) -> list[CommitSummary]:
        """The branch's commits, newest first."""
