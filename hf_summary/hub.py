"""The only module that talks to the Hub (with `_bucket.py` for Storage Buckets): repo creation, commits, squash,
card tag, error classification, and `open_client`, which picks the client for a push target.

Every failure leaves this module as a :class:`TransientHubError` (worth retrying: network errors, timeouts,
408/409/412/429/5xx) or a :class:`PermanentHubError` (retrying will not help until a human acts: bad token,
no write access, missing repo or revision, rejected input).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx2
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, ModelCard, RepoFile, constants
from huggingface_hub.errors import (
    BucketNotFoundError,
    EntryNotFoundError,
    HfHubHTTPError,
    HfUriError,
    HFValidationError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import (
    disable_progress_bars,
    filter_repo_objects,
    set_client_factory,
    validate_repo_id,
)
from huggingface_hub.utils._http import hf_request_event_hook

from hf_summary.segments import file_digests

CARD_TAG = "hf-summary-writer"
REPO_TYPES = ("model", "dataset", "space")
BUCKET = "bucket"
TARGET_TYPES = (*REPO_TYPES, BUCKET)
_RATELIMIT_RESET = re.compile(r"\bt=(\d+)")
_TRANSIENT_STATUSES = {408, 409, 412, 423, 425, 429, 500, 502, 503, 504}


class HubError(Exception):
    """A Hub operation failed."""


class TransientHubError(HubError):
    """A failure worth retrying later; ``retry_after`` is the server's hint in seconds, if it gave one."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class RateLimitedError(TransientHubError):
    """The Hub refused the request for a rate limit (HTTP 429): for a commit, the repo's commit budget."""


class PermanentHubError(HubError):
    """A failure that retrying will not fix: bad token, no write access, missing repo or revision."""


class MissingRepoError(PermanentHubError):
    """The repo, its revision or a folder in it (``what``) does not exist (or the token may not see it)."""

    def __init__(self, message: str, what: str = "repo"):
        super().__init__(message)
        self.what = what


class PathConflictError(PermanentHubError):
    """Files about to be added already hold other content on the Hub: they were pushed by someone else, and
    are never overwritten. ``paths`` lists them."""

    def __init__(self, paths: list[str]):
        super().__init__(
            f"{len(paths)} path(s) already hold other content on the Hub and will not be overwritten "
            f"(first: {paths[0]!r}); another run pushed files with these names. Push this logdir to another "
            "folder: a new path_in_repo or logdir name"
        )
        self.paths = paths


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
        """Whether this file has that size and content (``local``, if given, is a file with exactly that
        content); ``None`` when only downloading it can tell (a regular file and no git blob id to compare
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
    """The Xet hash the Hub reports for a file with ``path``'s content (computed locally, nothing is sent)."""
    import hf_xet  # not at import time: importing it starts its logging, which must see HF_XET_LOG_DEST first

    [info] = hf_xet.hash_files([str(path)])
    return info.hash


def _replaces_other_content(operation: CommitOperationAdd, src: Path) -> bool:
    """After the pre-upload call: whether ``operation``'s path holds other content on the Hub. The client
    keeps the Hub's answer (``_remote_oid``: sha256 for LFS files, git blob id for regular ones) next to its
    own id of the local file, and skips the file when the two are equal; ids of different kinds (the path
    is regular on the Hub, LFS for this upload, or the reverse) are compared by digesting the local file."""
    remote_oid = operation._remote_oid
    if remote_oid is None or remote_oid == operation._local_oid:
        return False
    _, sha256, git_oid = file_digests(src)
    return remote_oid not in (sha256, git_oid)


def offline_mode() -> bool:
    """Whether huggingface_hub refuses network calls (``HF_HUB_OFFLINE``, with its own parsing of truthy values;
    read when huggingface_hub is imported)."""
    return constants.is_offline_mode()


def check_repo_id(repo_id: object) -> None:
    """Raise ValueError with a readable message when ``repo_id`` cannot name a Hub repo."""
    if not isinstance(repo_id, str) or not repo_id:
        raise ValueError(f"repo_id must be a non-empty string like 'username/my-run', got {repo_id!r}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise ValueError(f"Invalid repo_id {repo_id!r}: {exc}") from None


def path_matches(path: str, allow_patterns: list[str] | None, ignore_patterns: list[str] | None) -> bool:
    """Whether ``path`` passes the allow/ignore glob patterns, with the Hub client's own matching rules."""
    return any(True for _ in filter_repo_objects([path], allow_patterns=allow_patterns, ignore_patterns=ignore_patterns))


def _retry_after(exc: HfHubHTTPError) -> float | None:
    """The server's hint of when to try again, in seconds: ``Retry-After``, else the reset time ``t`` of a
    ``RateLimit: "api";r=0;t=55`` header (as huggingface_hub's own backoff reads them)."""
    headers = exc.response.headers if exc.response is not None else {}
    value = headers.get("Retry-After")
    if value is None and (match := _RATELIMIT_RESET.search(headers.get("RateLimit", ""))):
        value = match.group(1)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def classify(exc: BaseException) -> HubError:
    """Map an exception raised by huggingface_hub (or its HTTP stack) to a transient or permanent error."""
    if isinstance(exc, HubError):
        return exc
    if isinstance(exc, (RepositoryNotFoundError, RevisionNotFoundError, BucketNotFoundError)):
        what = "revision" if isinstance(exc, RevisionNotFoundError) else "repo"
        return MissingRepoError(f"{type(exc).__name__}: {_first_line(exc)}", what)
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else None
        if status == 429:
            return RateLimitedError(f"HTTP 429: {_first_line(exc)}", retry_after=_retry_after(exc))
        if status is None or status in _TRANSIENT_STATUSES:
            return TransientHubError(f"HTTP {status}: {_first_line(exc)}", retry_after=_retry_after(exc))
        return PermanentHubError(f"HTTP {status}: {_first_line(exc)}")
    if isinstance(exc, (httpx2.TransportError, ConnectionError, TimeoutError, OSError)):
        return TransientHubError(f"{type(exc).__name__}: {_first_line(exc) or 'network error'}")
    return TransientHubError(f"unexpected {type(exc).__name__}: {_first_line(exc)}")


def use_timeouts(*, connect_s: float = 10.0, io_s: float = 120.0) -> None:
    """Give every request of this process timeouts (huggingface_hub's default client waits forever), so a hung
    Hub is retried instead of blocking a drain past its deadline. Only the uploader, which owns its
    interpreter, calls this: the trainer's own huggingface_hub settings are left alone."""

    def factory() -> httpx2.Client:
        return httpx2.Client(
            event_hooks={"request": [hf_request_event_hook]},
            follow_redirects=True,
            timeout=httpx2.Timeout(io_s, connect=connect_s),
        )

    set_client_factory(factory)


def check_write_access(api: HfApi, target_id: str) -> None:
    """Raise :class:`PermanentHubError` when ``api``'s token clearly cannot write to ``target_id`` (a repo or a
    bucket): a read-only token, or a namespace that is neither the token's user nor one of its organisations."""
    try:
        me = api.whoami()
    except Exception as exc:
        raise classify(exc) from exc
    namespace = target_id.split("/")[0] if "/" in target_id else me.get("name")
    allowed = {me.get("name")} | {org.get("name") for org in me.get("orgs") or []}
    role = ((me.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        raise PermanentHubError(f"the token of {me.get('name')!r} is read-only")
    if namespace not in allowed:
        raise PermanentHubError(f"{me.get('name')!r} may not write to the namespace {namespace!r}")


def open_client(
    *, repo_id: str, repo_type: str, revision: str = "main", endpoint: str | None = None, token: str | None = None
) -> HubClient:
    """The client for a push target: a :class:`HubClient` for repos, a ``BucketClient`` (same interface) for
    ``repo_type="bucket"``."""
    if repo_type == BUCKET:
        from hf_summary._bucket import BucketClient  # it builds on this module's errors

        return BucketClient(repo_id=repo_id, endpoint=endpoint, token=token)
    return HubClient(repo_id=repo_id, repo_type=repo_type, revision=revision, endpoint=endpoint, token=token)


def prepare_uploader_process(scratch: Path) -> None:
    """Settings for the uploader's own interpreter (only it calls this): no progress bars (Xet uploads draw
    them on the stderr it shares with the trainer's log), and hf_xet's cache and logs in ``scratch``, not in
    the user's HF_HOME (segments are uploaded once: nothing to deduplicate against later), and its temporary
    files there too, so that one killed mid-way leaves nothing in the temp dir."""
    disable_progress_bars()
    os.environ["HF_XET_CACHE"] = str(scratch / "cache")
    os.environ["HF_XET_LOG_DEST"] = str(scratch / "logs") + os.sep  # a trailing "/": a folder
    temp = scratch / "tmp"  # the card's download, and whatever else needs a temporary file
    with contextlib.suppress(OSError):
        temp.mkdir(parents=True, exist_ok=True)
        tempfile.tempdir = str(temp)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


class HubClient:
    """One repo on one Hub, as the uploader sees it. Methods raise only :class:`HubError` subclasses.

    ``endpoint=None`` means huggingface_hub's default (``HF_ENDPOINT`` or huggingface.co); ``token=None``
    means the client's usual lookup (``HF_TOKEN``, then the stored login).
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
        self._api = HfApi(endpoint=endpoint, token=token, library_name="hf-summary")
        self.endpoint = self._api.endpoint

    def ensure_repo(self, *, private: bool | None) -> str:
        """Create the repo (and the branch) if missing; never change an existing repo's visibility.

        Returns the repo URL.
        """
        try:
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
                self._api.create_branch(
                    self.repo_id, branch=self.revision, repo_type=self.repo_type, exist_ok=True
                )
        except Exception as exc:
            raise classify(exc) from exc
        return str(url)

    def check_write_access(self) -> None:
        """Raise :class:`PermanentHubError` when the token clearly cannot write to the repo: a read-only token,
        or a namespace that is neither the token's user nor one of its organisations. (``create_repo`` alone
        does not tell: on an existing public repo it succeeds for any reader.)"""
        check_write_access(self._api, self.repo_id)

    def commit_files(
        self,
        files: list[tuple[Path, str]],
        message: str,
        *,
        never_replace: frozenset[str] = frozenset(),
        deletions: list[str] = (),
    ) -> CommitResult:
        """Push ``(local path, path in repo)`` pairs, and delete the ``deletions`` paths, in one atomic commit,
        uploaded by path.

        Files the Hub already holds with the same content are skipped by the client; when nothing is left (and
        nothing is deleted) it makes no commit and the current head is returned, so pushing the same files twice
        is a no-op. Deleting a path the Hub does not hold fails the whole commit. A path in ``never_replace``
        that holds other content on the Hub stops the push before the commit, with :class:`PathConflictError`:
        the client's pre-upload answer tells, so this costs no extra request.
        """
        try:
            operations = [CommitOperationAdd(path_in_repo=dest, path_or_fileobj=str(src)) for src, dest in files]
            removals = [CommitOperationDelete(path_in_repo=path) for path in deletions]
        except ValueError as exc:  # an invalid path in repo: the same on every retry
            raise PermanentHubError(f"cannot commit these files: {_first_line(exc)}") from exc
        try:
            self._api.preupload_lfs_files(
                self.repo_id, additions=operations, repo_type=self.repo_type, revision=self.revision
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
        except PathConflictError:
            raise
        except Exception as exc:
            raise classify(exc) from exc
        return CommitResult(oid=info.oid, url=info.commit_url)

    def squash(self, message: str) -> None:
        try:
            self._api.super_squash_history(
                self.repo_id, branch=self.revision, repo_type=self.repo_type, commit_message=message
            )
        except Exception as exc:
            raise classify(exc) from exc

    def tag_card(self, tag: str = CARD_TAG) -> bool:
        """Add ``tag`` to the repo card's metadata unless it is there. Returns whether a commit was made."""
        try:
            with tempfile.TemporaryDirectory(prefix="hf-summary-card-") as cache:
                try:
                    readme = self._api.hf_hub_download(
                        self.repo_id,
                        "README.md",
                        repo_type=self.repo_type,
                        revision=self.revision,
                        cache_dir=cache,
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
        except Exception as exc:
            raise classify(exc) from exc
        return True

    def head(self) -> str:
        """The commit id the revision points at now."""
        try:
            return str(self._api.repo_info(self.repo_id, repo_type=self.repo_type, revision=self.revision).sha)
        except Exception as exc:
            raise classify(exc) from exc

    def list_files(self, prefix: str, *, commit: str | None = None, missing_ok: bool = True) -> dict[str, RemoteFile]:
        """Every file under ``prefix`` at ``commit`` (default: the revision), keyed by path in repo.

        An absent folder gives ``{}``, or :class:`MissingRepoError` when ``missing_ok`` is false.
        """
        try:
            entries = self._api.list_repo_tree(
                self.repo_id,
                path_in_repo=prefix or None,
                recursive=True,
                repo_type=self.repo_type,
                revision=commit or self.revision,
            )
            files = {}
            for entry in entries:
                if isinstance(entry, RepoFile):
                    files[entry.path] = RemoteFile(
                        path=entry.path,
                        size=entry.size,
                        git_oid=entry.blob_id,
                        sha256=entry.lfs.sha256 if entry.lfs else None,
                    )
            return files
        except EntryNotFoundError as exc:
            if missing_ok:
                return {}
            raise MissingRepoError(f"there is no folder {prefix!r} in {self.repo_id}", "folder") from exc
        except Exception as exc:
            raise classify(exc) from exc

    def file_info(self, paths: list[str]) -> dict[str, RemoteFile]:
        """The files among ``paths`` that exist at the revision (one request), keyed by path in repo."""
        try:
            entries = self._api.get_paths_info(
                self.repo_id, paths, repo_type=self.repo_type, revision=self.revision
            )
        except Exception as exc:
            raise classify(exc) from exc
        return {
            entry.path: RemoteFile(
                path=entry.path, size=entry.size, git_oid=entry.blob_id, sha256=entry.lfs.sha256 if entry.lfs else None
            )
            for entry in entries
            if isinstance(entry, RepoFile)
        }

    def fetch_file(self, file: RemoteFile, *, commit: str, cache_dir: Path) -> Path:
        """Download one file of ``commit`` into the Hugging Face cache at ``cache_dir`` (once: a cached file
        is not fetched again); returns the path of its content there."""
        try:
            local = self._api.hf_hub_download(
                self.repo_id, file.path, repo_type=self.repo_type, revision=commit, cache_dir=cache_dir
            )
        except Exception as exc:
            raise classify(exc) from exc
        return Path(local).resolve()

    def download(self, prefix: str, dest: Path) -> Path:
        """Fetch every file under ``prefix`` into ``dest`` (same layout as the repo); returns ``dest``."""
        try:
            self._api.snapshot_download(
                self.repo_id,
                repo_type=self.repo_type,
                revision=self.revision,
                local_dir=dest,
                allow_patterns=f"{prefix.strip('/')}/*" if prefix else None,
            )
        except Exception as exc:
            raise classify(exc) from exc
        return dest

    def commits(self) -> list[CommitSummary]:
        """The branch's commits, newest first."""
        try:
            return [
                CommitSummary(oid=c.commit_id, title=c.title, created_at=c.created_at.isoformat())
                for c in self._api.list_repo_commits(self.repo_id, repo_type=self.repo_type, revision=self.revision)
            ]
        except Exception as exc:
            raise classify(exc) from exc
