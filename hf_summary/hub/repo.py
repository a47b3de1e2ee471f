"""A repo (model, dataset or Space) as a push target: `RepoClient`, one atomic commit per push, with the
branch's history, squash and the card tag."""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, ModelCard, RepoFile
from huggingface_hub.errors import EntryNotFoundError, HfUriError

from hf_summary.hub.api import check_write_access, new_api
from hf_summary.hub.errors import (
    MissingRepoError,
    PathConflictError,
    PermanentHubError,
    first_line,
    hub_errors,
)
from hf_summary.hub.ranges import FileRange, quiet_view_fallback, upload_sources
from hf_summary.hub.target import CARD_TAG, CommitResult, CommitSummary, RemoteFile
from hf_summary.segments import file_digests


def _replaces_other_content(operation: CommitOperationAdd, src: Path) -> bool:
    """After the pre-upload call: whether `operation`'s path holds other content on the Hub. The client
    keeps the Hub's answer (`_remote_oid`: sha256 for LFS files, git blob id for regular ones) next to its
    own id of the local file, and skips the file when the two are equal; ids of different kinds (the path
    is regular on the Hub, LFS for this upload, or the reverse) are compared by digesting the local file."""
    remote_oid = operation._remote_oid
    if remote_oid is None or remote_oid == operation._local_oid:
        return False
    _, sha256, git_oid = file_digests(src)
    return remote_oid not in (sha256, git_oid)


def _remote_file(entry: RepoFile) -> RemoteFile:
    return RemoteFile(path=entry.path, size=entry.size, git_oid=entry.blob_id,
                      sha256=entry.lfs.sha256 if entry.lfs else None)


class RepoClient:
    """One repo on one Hub, as the uploader sees it: a `PushTarget`.

    `endpoint=None` means huggingface_hub's default (`HF_ENDPOINT` or huggingface.co); `token=None`
    means the client's usual lookup (`HF_TOKEN`, then the stored login).
    """

    def __init__(
        self,
        *,
        repo_id: str,
        repo_type: str = "model",
        revision: str = "main",
        endpoint: str | None = None,
        token: str | None = None,
    ):
        self.repo_id = repo_id
        self.repo_type = repo_type
        self.revision = revision
        self._api = new_api(endpoint, token)
        self.endpoint = self._api.endpoint

    @hub_errors()
    def ensure_repo(self, *, private: bool | None) -> str:
        """Create the repo (and the branch) if missing; never change an existing repo's visibility.

        Returns the repo URL.
        """
        try:
            url = self._api.create_repo(
                self.repo_id,
                repo_type=self.repo_type,
                private=private,
                exist_ok=True,
                space_sdk="static" if self.repo_type == "space" else None,
            )
        except HfUriError:
            # huggingface_hub 2.4 builds the URL of an existing repo it may not create (401-403, then
            # repo_info succeeded) without its own endpoint, so a custom HF_ENDPOINT set after import fails
            # to parse. The repo exists: that is all this call needs to know.
            url = f"{self._api.endpoint}/{self.repo_id}"
        if self.revision != "main":
            self._api.create_branch(self.repo_id, branch=self.revision, repo_type=self.repo_type, exist_ok=True)
        return str(url)

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
        """Push `(local path or byte range, path in repo)` pairs, and delete the `deletions` paths, in one
        atomic commit, uploaded by path (a range: see `hf_summary.hub.ranges`).

        Files the Hub already holds with the same content are skipped by the client; when nothing is left (and
        nothing is deleted) it makes no commit and the current head is returned, so pushing the same files twice
        is a no-op. Deleting a path the Hub does not hold fails the whole commit. A path in `never_replace`
        that holds other content on the Hub stops the push before the commit, with `PathConflictError`:
        the client's pre-upload answer tells, so this costs no extra request.
        """
        with contextlib.ExitStack() as views, hub_errors():
            sources = upload_sources(files)  # a range that changed on disk fails here, or as it is uploaded
            for source in sources:
                if isinstance(source, io.IOBase):
                    views.enter_context(source)
            try:
                operations = [CommitOperationAdd(path_in_repo=dest, path_or_fileobj=source)
                              for source, (_, dest) in zip(sources, files, strict=True)]
                removals = [CommitOperationDelete(path_in_repo=path) for path in deletions]
            except ValueError as exc:  # an invalid path in repo: the same on every retry
                raise PermanentHubError(f"cannot commit these files: {first_line(exc)}") from exc
            # the client uploads a commit's file objects by basic LFS, and all its files with them: apart
            files_and_bytes = [op for op in operations if not isinstance(op.path_or_fileobj, io.IOBase)]
            views_only = [op for op in operations if isinstance(op.path_or_fileobj, io.IOBase)]
            if files_and_bytes:
                self._api.preupload_lfs_files(
                    self.repo_id, additions=files_and_bytes, repo_type=self.repo_type, revision=self.revision
                )
            if views_only:
                with quiet_view_fallback():
                    self._api.preupload_lfs_files(
                        self.repo_id, additions=views_only, repo_type=self.repo_type, revision=self.revision
                    )
            conflicts = [
                operation.path_in_repo
                for operation, (src, _) in zip(operations, files, strict=True)
                if operation.path_in_repo in never_replace and _replaces_other_content(operation, src)
            ]
            if conflicts:
                raise PathConflictError(conflicts)
            info = self._api.create_commit(
                self.repo_id,
                operations + removals,  # pre-uploaded: the client sends no second pre-upload request
                commit_message=message,
                repo_type=self.repo_type,
                revision=self.revision,
            )
        return CommitResult(oid=info.oid, url=info.commit_url)

    @hub_errors()
    def squash(self, message: str) -> bool:
        self._api.super_squash_history(self.repo_id, branch=self.revision, repo_type=self.repo_type,
                                       commit_message=message)
        return True

    @hub_errors()
    def tag_card(self, tag: str = CARD_TAG) -> bool:
        """Add `tag` to the repo card's metadata unless it is there. Returns whether a commit was made."""
        with tempfile.TemporaryDirectory(prefix="hf-summary-card-") as cache:
            try:
                readme = self._api.hf_hub_download(
                    self.repo_id, "README.md", repo_type=self.repo_type, revision=self.revision, cache_dir=cache
                )
                card = ModelCard(Path(readme).read_text(encoding="utf-8"), ignore_metadata_errors=True)
            except EntryNotFoundError:
                card = ModelCard("---\n{}\n---\n")
        tags = list(card.data.get("tags") or [])
        if tag in tags:
            return False
        card.data["tags"] = [*tags, tag]
        self._api.upload_file(
            path_or_fileobj=str(card).encode("utf-8"),
            path_in_repo="README.md",
            repo_id=self.repo_id,
            repo_type=self.repo_type,
            revision=self.revision,
            commit_message=f"Tag the card '{tag}'",
        )
        return True

    @hub_errors()
    def head(self) -> str:
        """The commit id the revision points at now."""
        return str(self._api.repo_info(self.repo_id, repo_type=self.repo_type, revision=self.revision).sha)

    @hub_errors()
    def list_files(self, prefix: str, *, commit: str | None = None, missing_ok: bool = True) -> dict[str, RemoteFile]:
        """Every file under `prefix` at `commit` (default: the revision), keyed by path in repo.

        An absent folder gives `{}`, or `MissingRepoError` when `missing_ok` is false.
        """
        try:
            entries = self._api.list_repo_tree(
                self.repo_id,
                path_in_repo=prefix or None,
                recursive=True,
                repo_type=self.repo_type,
                revision=commit or self.revision,
            )
            return {entry.path: _remote_file(entry) for entry in entries if isinstance(entry, RepoFile)}
        except EntryNotFoundError as exc:
            if missing_ok:
                return {}
            raise MissingRepoError(f"there is no folder {prefix!r} in {self.repo_id}", "folder") from exc

    @hub_errors()
    def file_info(self, paths: list[str]) -> dict[str, RemoteFile]:
        """The files among `paths` that exist at the revision (one request), keyed by path in repo."""
        entries = self._api.get_paths_info(self.repo_id, paths, repo_type=self.repo_type, revision=self.revision)
        return {entry.path: _remote_file(entry) for entry in entries if isinstance(entry, RepoFile)}

    @hub_errors()
    def fetch_file(self, file: RemoteFile, *, commit: str | None, cache_dir: Path) -> Path:
        """Download one file of `commit` into the Hugging Face cache at `cache_dir` (once: a cached file
        is not fetched again); returns the path of its content there."""
        local = self._api.hf_hub_download(
            self.repo_id, file.path, repo_type=self.repo_type, revision=commit or self.revision, cache_dir=cache_dir
        )
        return Path(local).resolve()

    @hub_errors()
    def download(self, prefix: str, dest: Path) -> Path:
        """Fetch every file under `prefix` into `dest` (same layout as the repo); returns `dest`."""
        self._api.snapshot_download(
            self.repo_id,
            repo_type=self.repo_type,
            revision=self.revision,
            local_dir=dest,
            allow_patterns=f"{prefix.strip('/')}/*" if prefix else None,
        )
        return dest

    @hub_errors()
    def commits(self) -> list[CommitSummary]:
        """The branch's commits, newest first."""
        return [
            CommitSummary(oid=c.commit_id, title=c.title, created_at=c.created_at.isoformat())
            for c in self._api.list_repo_commits(self.repo_id, repo_type=self.repo_type, revision=self.revision)
        ]
