"""The request types shared by every handler module: server-wide `Hub` state and the per-request `Call`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request

from hf_summary.localhub.auth import Caller, check_read, check_write
from hf_summary.localhub.bucketstore import BucketStore
from hf_summary.localhub.casstore import CasStore
from hf_summary.localhub.errors import bad_request
from hf_summary.localhub.storage import Repo, Storage

TYPE_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/", "bucket": "buckets/"}


@dataclass
class Hub:
    """Server-wide state shared by all requests.

    `regular` is the regular-only mode for old clients (every file "regular", no LFS, no Xet);
    `cas_prefix` is the path the CAS is mounted under, unique to the data dir (see xet.py).
    """

    storage: Storage
    cas: CasStore
    buckets: BucketStore
    users: dict[str, str]
    regular: bool
    page_size: int
    secret: bytes
    cas_prefix: str


@dataclass
class Call:
    """One request: who is calling, the route parameters and the (already read) body."""

    hub: Hub
    request: Request
    caller: Caller
    params: dict[str, str]
    body: bytes = b""

    @property
    def base_url(self) -> str:
        """`http://host:port` as the client addressed us, so returned URLs match HF_ENDPOINT."""
        return str(self.request.base_url).rstrip("/")

    @property
    def cas_url(self) -> str:
        return f"{self.base_url}{self.hub.cas_prefix}"

    def query(self, name: str, default: str | None = None) -> str | None:
        return self.request.query_params.get(name, default)

    def flag(self, name: str) -> bool:
        return (self.query(name) or "").lower() in ("1", "true")

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise bad_request(f"Request body is not valid JSON: {e}") from None

    def json_object(self) -> dict:
        payload = self.json()
        if not isinstance(payload, dict):
            raise bad_request("Request body must be a JSON object")
        return payload

    def readable_repo(self) -> Repo:
        return check_read(self.caller, self._lookup())

    def writable_repo(self) -> Repo:
        return check_write(self.caller, self._lookup())

    def _lookup(self) -> Repo | None:
        return self.hub.storage.get_repo(self.params["type"], self.params["namespace"], self.params["name"])

    def repo_url(self, repo: Repo) -> str:
        return f"{self.base_url}/{TYPE_PREFIX[repo.type]}{repo.repo_id}"

    def next_link(self, **params: str) -> dict[str, str]:
        """A `Link: <absolute url>; rel="next"` header for the same path with `params` as query."""
        path = self.request.scope.get("raw_path", b"").decode("latin-1") or self.request.url.path
        return {"Link": f'<{self.base_url}{path}?{urlencode(params)}>; rel="next"'}
