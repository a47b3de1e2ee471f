"""The errors of Hub I/O, and the one place that turns what huggingface_hub raises into them.

Every failure leaves the hub package as a `TransientHubError` (worth retrying: network errors, timeouts,
408/409/412/429/5xx) or a `PermanentHubError` (retrying will not help until a human acts: bad token,
no write access, missing repo or revision, rejected input).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import httpx2
from huggingface_hub.errors import (
    BucketNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

_RATELIMIT_RESET = re.compile(r"\bt=(\d+)")
_TRANSIENT_STATUSES = {408, 409, 412, 423, 425, 429, 500, 502, 503, 504}


class HubError(Exception):
    """A Hub operation failed."""


class TransientHubError(HubError):
    """A failure worth retrying later; `retry_after` is the server's hint in seconds, if it gave one."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class RateLimitedError(TransientHubError):
    """The Hub refused the request for a rate limit (HTTP 429): for a commit, the repo's commit budget."""


class PermanentHubError(HubError):
    """A failure that retrying will not fix: bad token, no write access, missing repo or revision."""


class MissingRepoError(PermanentHubError):
    """The repo, its revision or a folder in it (`what`) does not exist (or the token may not see it)."""

    def __init__(self, message: str, what: str = "repo"):
        super().__init__(message)
        self.what = what


class PathConflictError(PermanentHubError):
    """Files about to be added already hold other content on the Hub: they were pushed by someone else, and
    are never overwritten. `paths` lists them."""

    def __init__(self, paths: list[str]):
        super().__init__(
            f"{len(paths)} path(s) already hold other content on the Hub and will not be overwritten "
            f"(first: {paths[0]!r}); another run pushed files with these names. Push this logdir to another "
            "folder: a new path_in_repo or logdir name"
        )
        self.paths = paths


def classify(exc: BaseException) -> HubError:
    """Map an exception raised by huggingface_hub (or its HTTP stack) to a transient or permanent error."""
    if isinstance(exc, HubError):
        return exc
    if isinstance(exc, (RepositoryNotFoundError, RevisionNotFoundError, BucketNotFoundError)):
        what = "revision" if isinstance(exc, RevisionNotFoundError) else "repo"
        return MissingRepoError(f"{type(exc).__name__}: {first_line(exc)}", what)
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else None
        if status == 429:
            return RateLimitedError(f"HTTP 429: {first_line(exc)}", retry_after=_retry_after(exc))
        if status is None or status in _TRANSIENT_STATUSES:
            return TransientHubError(f"HTTP {status}: {first_line(exc)}", retry_after=_retry_after(exc))
        return PermanentHubError(f"HTTP {status}: {first_line(exc)}")
    if isinstance(exc, (httpx2.TransportError, ConnectionError, TimeoutError, OSError)):
        return TransientHubError(f"{type(exc).__name__}: {first_line(exc) or 'network error'}")
    return TransientHubError(f"unexpected {type(exc).__name__}: {first_line(exc)}")


@contextlib.contextmanager
def hub_errors() -> Iterator[None]:
    """Let only `HubError` out of the block (or the function it decorates): anything else is raised as
    what `classify` makes of it, with the original as its cause."""
    try:
        yield
    except HubError:
        raise
    except Exception as exc:
        raise classify(exc) from exc


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _retry_after(exc: HfHubHTTPError) -> float | None:
    """The server's hint of when to try again, in seconds: `Retry-After`, else the reset time `t` of a
    `RateLimit: "api";r=0;t=55` header (as huggingface_hub's own backoff reads them)."""
    headers = exc.response.headers if exc.response is not None else {}
    value = headers.get("Retry-After")
    if value is None and (match := _RATELIMIT_RESET.search(headers.get("RateLimit", ""))):
        value = match.group(1)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
