"""Storage Buckets as a push target: `BucketClient`, a `PushTarget`.

A bucket has no commits and no history. A push is one batch (files go up through Xet, then one `/batch`
call), and a second one for its deletions (a compaction's), sent only once the first answered; it counts
as committed only when they answered without a failure for any of its files. A partial failure raises
`TransientHubError`, so the whole push is retried: the files that did land are sent again, which
costs only a shard (Xet deduplicates their chunks) and leaves the same bucket file. Batches are not atomic:
a push that dies between its two batches leaves a merged file beside the files it replaces, which
`hf_summary.compaction.settle` deletes. There is no squash and no card. A reader has no commit to
watch either: `BucketClient.head` is `None`, so it lists the folder at each look, and fetches files
by their Xet hash.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from huggingface_hub import BucketFile
from huggingface_hub.errors import BucketNotFoundError

from hf_summary._faults import fault
from hf_summary.hub.api import check_write_access, new_api
from hf_summary.hub.errors import (
    HubError,
    MissingRepoError,
    PathConflictError,
    TransientHubError,
    classify,
    hub_errors,
)
from hf_summary.hub.ranges import FileRange
from hf_summary.hub.target import CARD_TAG, CommitResult, CommitSummary, RemoteFile

_MAX_LISTED_FAILURES = 3


class BucketClient:
    """One bucket on one Hub. Methods raise only `HubError` subclasses."""

    repo_type = "bucket"
    revision = "main"  # buckets have no revisions; kept for the settings the journal records

    def __init__(self, *, repo_id: str, endpoint: str | None = None, token: str | None = None):
        self.repo_id = repo_id
        self._api = new_api(endpoint, token)
        self.endpoint = self._api.endpoint

    @property
    def url(self) -> str:
        return f"{self._api.endpoint}/buckets/{self.repo_id}"

    @hub_errors()
    def ensure_repo(self, *, private: bool | None) -> str:
        """Create the bucket if missing (an existing bucket keeps its visibility); returns its URL."""
        return self._api.create_bucket(self.repo_id, private=private, exist_ok=True).url

    def check_write_access(self) -> None:
        check_write_access(self._api, self.repo_id)

    def commit_files(
        self,
        files: list[tuple[Path | FileRange, str]],
        message: str,
        *,
        never_replace: frozenset[str] = frozenset(),
        deletions: list[str] = (),
    ) -> CommitResult:
        """Add `(local path, path in bucket)` pairs in one batch, then delete the `deletions` paths in
        another (so no deletion is applied unless every addition was: a reader sees every event once after
        both, and a merged file beside what it replaces between them). A path in
        `never_replace` that holds other content in the bucket stops the push before anything is sent, with
        `PathConflictError` (one paths-info request, only when there are such paths). `message` only
        names the push in the returned id: buckets keep no messages. A missing bucket raises
        `MissingRepoError`."""
        guarded = [(src, dest) for src, dest in files if dest in never_replace]
        if guarded:
            held = self.file_info([dest for _, dest in guarded])
            conflicts = [dest for src, dest in guarded if dest in held and not held[dest].holds(
                src.stat().st_size, None, None, src)]
            if conflicts:
                raise PathConflictError(conflicts)
        if files:
            with hub_errors():  # a range read whole (Xet takes no file objects), checked against its record
                additions = [(src.read() if isinstance(src, FileRange) else str(src), dest) for src, dest in files]
            self._batch(add=additions)
        if deletions:
            fault("between_bucket_additions_and_deletions")
            self._batch(delete=list(deletions))
        digest = hashlib.sha1("\n".join([message, *(dest for _, dest in files)]).encode()).hexdigest()
        return CommitResult(oid=f"batch-{digest[:12]}", url=self.url)

    def _batch(self, **operations: list) -> None:
        try:
            self._api.batch_bucket_files(self.repo_id, **operations)
        except Exception as exc:
            failures = getattr(exc, "failures", None)
            if failures:
                listed = "; ".join(f"{f.get('path')}: {f.get('error')}" for f in failures[:_MAX_LISTED_FAILURES])
                count = sum(len(paths) for paths in operations.values())
                raise TransientHubError(f"the bucket refused {len(failures)} of {count} operation(s): {listed}") from exc
            self._raise_missing()
            raise classify(exc) from exc

    @hub_errors()
    def file_info(self, paths: list[str]) -> dict[str, RemoteFile]:
        """The files among `paths` that exist in the bucket (one request), keyed by path."""
        return {entry.path: _remote_file(entry) for entry in self._api.get_bucket_paths_info(self.repo_id, paths)}

    def _raise_missing(self) -> None:
        """After a failed upload (hf_xet reports a refused token only as a connection error): raise
        `MissingRepoError` if the bucket does not exist, so the caller creates it."""
        try:
            self._api.bucket_info(self.repo_id)
        except BucketNotFoundError as exc:
            raise MissingRepoError(f"BucketNotFoundError: {self.repo_id}") from exc
        except Exception:  # the Hub is unreachable too: the upload's own error says more
            return

    def squash(self, message: str) -> bool:
        """Buckets have no history: nothing to squash."""
        return False

    def tag_card(self, tag: str = CARD_TAG) -> bool:
        """Buckets have no card: nothing to tag."""
        return False

    def head(self) -> None:
        """Buckets have no commits, so no cheap sign that something changed: `None` tells a reader to list
        again at each look."""
        return None

    @hub_errors()
    def list_files(
        self, prefix: str, *, commit: str | None = None, missing_ok: bool = True
    ) -> dict[str, RemoteFile]:
        """Every file under `prefix` now, keyed by path (`commit` is there for the repo interface: a
        bucket has no commits). A missing bucket or folder gives `{}`, or `MissingRepoError`
        (`what` "repo" or "folder") when `missing_ok` is false."""
        try:
            files = {
                entry.path: _remote_file(entry)
                for entry in self._api.list_bucket_tree(self.repo_id, prefix=prefix or None, recursive=True)
                if entry.type == "file"
            }
        except BucketNotFoundError as exc:
            if missing_ok:
                return {}
            raise MissingRepoError(f"BucketNotFoundError: {self.repo_id}") from exc
        if not files and prefix and not missing_ok:
            raise MissingRepoError(f"there is no folder {prefix!r} in {self.repo_id}", "folder")
        return files

    def fetch_file(self, file: RemoteFile, *, commit: str | None, cache_dir: Path) -> Path:
        """Download one bucket file into `cache_dir` (`buckets--NS--NAME/blobs/XET_HASH`), once: a cached
        file is not fetched again. Returns its path there, which holds the whole file or does not exist:
        hf_xet writes a download in place as it goes, so it goes to a temporary name first."""
        blobs = cache_dir / f"buckets--{self.repo_id.replace('/', '--')}" / "blobs"
        cached = blobs / str(file.xet_hash)
        if cached.is_file() and cached.stat().st_size == file.size:
            return cached
        incomplete = blobs / f"{file.xet_hash}.{os.getpid()}.incomplete"
        blobs.mkdir(parents=True, exist_ok=True)
        incomplete.unlink(missing_ok=True)
        entry = BucketFile(type="file", path=file.path, size=file.size, xetHash=file.xet_hash)
        try:
            with hub_errors():
                self._api.download_bucket_files(self.repo_id, [(entry, incomplete)])
        except HubError:
            incomplete.unlink(missing_ok=True)
            raise
        os.replace(incomplete, cached)
        return cached

    def download(self, prefix: str, dest: Path) -> Path:
        """Fetch every file under `prefix` into `dest` (same layout as the bucket); returns `dest`."""
        files = self.list_files(prefix)
        if files:
            with hub_errors():
                self._api.download_bucket_files(self.repo_id, [(path, str(dest / path)) for path in files])
        return dest

    def commits(self) -> list[CommitSummary]:
        """Buckets have no commits."""
        return []


def _remote_file(entry: BucketFile) -> RemoteFile:
    return RemoteFile(path=entry.path, size=entry.size, git_oid=None, sha256=None, xet_hash=entry.xet_hash)
