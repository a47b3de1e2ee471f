"""Hub I/O: the only package that talks to the Hub.

- `target`: the `PushTarget` interface and the values it returns;
- `errors`: `HubError` and its kinds, and the one translation of huggingface_hub's
  exceptions into them;
- `api`: what the clients share of huggingface_hub (write-access check, offline mode,
  timeouts, repo id rules);
- `repo` and `bucket`: the two push targets;
- `open_client` picks the client for a target (`client_for`: the one a run's settings name);
  `commit_or_create` commits, creating the repo only when the Hub says it is missing;
- `probe`: the first look at a target, bounded in time;
- `ranges`: a byte range of a local file pushed as a file, without a copy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hf_summary.hub.api import check_repo_id, check_write_access, offline_mode, use_timeouts
from hf_summary.hub.errors import (
    HubError,
    MissingRepoError,
    PathConflictError,
    PermanentHubError,
    RateLimitedError,
    TransientHubError,
    classify,
    hub_errors,
)
from hf_summary.hub.probe import probe
from hf_summary.hub.ranges import FileRange, RangeChangedError
from hf_summary.hub.repo import RepoClient
from hf_summary.hub.target import (
    BUCKET,
    CARD_TAG,
    REPO_TYPES,
    TARGET_TYPES,
    CommitResult,
    CommitSummary,
    PushTarget,
    RemoteFile,
    local_xet_hash,
)

if TYPE_CHECKING:
    from pathlib import Path

    from hf_summary.journal import RunSettings

__all__ = [
    "BUCKET",
    "CARD_TAG",
    "REPO_TYPES",
    "TARGET_TYPES",
    "CommitResult",
    "CommitSummary",
    "FileRange",
    "HubError",
    "MissingRepoError",
    "PathConflictError",
    "PermanentHubError",
    "PushTarget",
    "RangeChangedError",
    "RateLimitedError",
    "RemoteFile",
    "RepoClient",
    "TransientHubError",
    "check_repo_id",
    "check_write_access",
    "classify",
    "client_for",
    "commit_or_create",
    "hub_errors",
    "local_xet_hash",
    "offline_mode",
    "open_client",
    "probe",
    "use_timeouts",
]


def open_client(
    *, repo_id: str, repo_type: str, revision: str = "main", endpoint: str | None = None, token: str | None = None
) -> PushTarget:
    """The client for a push target: a `RepoClient` for repos, a `BucketClient` for
    `repo_type="bucket"` (imported only then: a trainer that pushes to a repo never loads it)."""
    if repo_type == BUCKET:
        from hf_summary.hub.bucket import BucketClient

        return BucketClient(repo_id=repo_id, endpoint=endpoint, token=token)
    return RepoClient(repo_id=repo_id, repo_type=repo_type, revision=revision, endpoint=endpoint, token=token)


def client_for(settings: RunSettings, token: str | None) -> PushTarget:
    """The client for the target a run's settings name, with `token` (`None`: the client's usual lookup)."""
    return open_client(repo_id=settings.repo_id, repo_type=settings.repo_type, revision=settings.revision,
                       endpoint=settings.endpoint, token=token)


def commit_or_create(
    client: PushTarget,
    files: list[tuple[Path, str]],
    message: str,
    *,
    private: bool | None,
    never_replace: frozenset[str] = frozenset(),
    deletions: list[str] = (),
) -> CommitResult:
    """`client.commit_files`; the repo (or branch) is created, with `private`, only when the Hub says it is
    missing: the writer made it at start-up (unless offline), and a push under preemption has no request to spare."""
    try:
        return client.commit_files(files, message, never_replace=never_replace, deletions=deletions)
    except MissingRepoError:
        client.ensure_repo(private=private)
        return client.commit_files(files, message, never_replace=never_replace, deletions=deletions)
