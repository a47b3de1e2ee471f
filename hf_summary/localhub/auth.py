"""Who is calling, and may they read or write a repo.

Users are configured as name -> bearer token. A user owns the namespace of their name; there are no
organisations. Private repos are visible to their owner only; unknown tokens count as anonymous for
reads (so a private repo answers exactly as a missing one), and are refused for writes.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from starlette.requests import Request

from hf_summary.localhub.errors import HubError, repo_not_found
from hf_summary.localhub.storage import Repo

INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


@dataclass(frozen=True)
class Caller:
    user: str | None  # None: anonymous, or a token no user has
    sent_token: bool

    def require_user(self) -> str:
        if self.user is None:
            raise HubError(
                401, INVALID_CREDENTIALS if self.sent_token else "Authorization header is required"
            )
        return self.user


def bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def identify(request: Request, users: dict[str, str]) -> Caller:
    token = bearer_token(request)
    user = next((name for name, t in users.items() if token and hmac.compare_digest(t, token)), None)
    return Caller(user, token is not None)


def check_read(caller: Caller, repo: Repo | None) -> Repo:
    """The repo if `caller` may see it; RepoNotFound (401 anonymous / 404 authenticated) otherwise."""
    if repo is None or (repo.private and caller.user != repo.namespace):
        raise repo_not_found(authenticated=caller.user is not None)
    return repo


def check_write(caller: Caller, repo: Repo | None) -> Repo:
    repo = check_read(caller, repo)
    user = caller.require_user()
    if user != repo.namespace:
        raise HubError(403, f"You don't have the rights to write to {repo.repo_id}")
    return repo


def check_namespace(caller: Caller, namespace: str) -> str:
    """The caller's name if they may create or delete repos in `namespace`."""
    user = caller.require_user()
    if user != namespace:
        raise HubError(403, f"You don't have the rights to create or delete repos in namespace {namespace!r}")
    return user
