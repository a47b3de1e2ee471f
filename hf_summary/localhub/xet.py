"""Xet access: the token routes the client and hf_xet call, CAS tokens, and the Xet fields of file metadata.

`GET /api/{type}s/{ns}/{name}/xet-{read|write}-token/{rev}` (and `/api/buckets/{ns}/{name}/xet-…-token`)
answer `{"accessToken", "exp", "casUrl"}` and the same as `X-Xet-*` headers (huggingface_hub reads the
headers, hf_xet the body). A CAS token is `<payload>.<HMAC>` over the repo key, the user, the scope
(`read` or `write`) and the expiry, signed with the server's secret: the CAS accepts only tokens this Hub
handed out, for the repo and scope they name, and checks again that the user may still see (or write) it.
The CAS lives on this server under `/_localhub/cas/<id>`, `<id>` derived from the data dir's secret, so
hf_xet's per-URL shard cache never mixes two data dirs that happened to use the same port.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse

from hf_summary.localhub.auth import Caller, bearer_token, check_read, check_write
from hf_summary.localhub.casstore import XetFile
from hf_summary.localhub.errors import HubError
from hf_summary.localhub.storage import Repo

if TYPE_CHECKING:
    from hf_summary.localhub.call import Call, Hub

TOKEN_LIFETIME_S = 3600
SCOPES = ("read", "write")


def cas_prefix(secret: bytes) -> str:
    return "/_localhub/cas/" + hashlib.sha256(b"cas\0" + secret).hexdigest()[:16]


def _sign(secret: bytes, payload: str) -> str:
    return hmac.new(secret, b"xet\0" + payload.encode(), hashlib.sha256).hexdigest()


def mint_token(hub: Hub, repo: Repo, user: str | None, scope: str, expires: int) -> str:
    payload = base64.urlsafe_b64encode(
        json.dumps({"repo": repo.key, "user": user, "scope": scope, "exp": expires}).encode()
    ).decode()
    return f"{payload}.{_sign(hub.secret, payload)}"


def cas_repo(hub: Hub, request: Request, scope: str) -> Repo:
    """The repo a CAS request's bearer token grants `scope` on (a write token also grants read); 401 otherwise."""
    token = bearer_token(request) or ""
    payload, _, signature = token.partition(".")
    if not signature or not hmac.compare_digest(_sign(hub.secret, payload), signature):
        raise HubError(401, "Invalid or missing CAS token: get one from the Hub's xet-read-token/xet-write-token route")
    claims = json.loads(base64.urlsafe_b64decode(payload))
    if claims["exp"] < time.time():
        raise HubError(401, "The CAS token has expired: refresh it from the Hub's token route")
    if scope == "write" and claims["scope"] != "write":
        raise HubError(403, "This CAS token is read-only: uploads need a xet-write-token")
    repo_type, namespace, name = claims["repo"].split("/")
    caller = Caller(claims["user"], claims["user"] is not None)
    repo = hub.storage.get_repo(repo_type, namespace, name)
    return check_write(caller, repo) if scope == "write" else check_read(caller, repo)


def token_route(scope: str):
    """The handler of one token route (`scope` is "read" or "write")."""

    def handler(call: Call) -> JSONResponse:
        if call.hub.regular:
            raise HubError(404, "This local Hub runs in regular-only mode: there is no Xet storage")
        repo = call.writable_repo() if scope == "write" else call.readable_repo()
        expires = int(time.time()) + TOKEN_LIFETIME_S
        token = mint_token(call.hub, repo, call.caller.user, scope, expires)
        headers = {"X-Xet-Cas-Url": call.cas_url, "X-Xet-Access-Token": token, "X-Xet-Token-Expiration": str(expires)}
        return JSONResponse({"accessToken": token, "exp": expires, "casUrl": call.cas_url}, headers=headers)

    return handler


def read_token_url(call: Call, repo: Repo, revision: str | None) -> str:
    base = f"{call.base_url}/api/{repo.type}s/{repo.repo_id}/xet-read-token"
    return base if revision is None else f"{base}/{revision}"


def file_headers(call: Call, repo: Repo, revision: str | None, xet_file: XetFile) -> dict[str, str]:
    """What a `/resolve` HEAD carries so the client downloads through Xet (https://huggingface.co/docs/xet/download-protocol)."""
    route = read_token_url(call, repo, revision)
    return {"X-Xet-Hash": xet_file.hash, "X-Xet-Refresh-Route": route, "Link": f'<{route}>; rel="xet-auth"'}
