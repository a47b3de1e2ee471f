"""The ASGI application: URL routing for the Hub API, downloads, LFS, the CAS and buckets.

Handlers get a `Call` (call.py: the request type every handler module shares). Routing works on the *raw* path, split on `/` before percent-decoding each segment, because the
client sends revisions as one encoded segment (`dev%2Fx`, `refs%2Fpr%2F1`: `huggingface_hub` quotes them with
`safe=""`).
Handlers are plain functions `handler(call) -> Response` run in a worker thread after the body has
been read (with a size cap); the few that stream (LFS PUT) are coroutines and read the body themselves.
"""

from __future__ import annotations

import inspect
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import unquote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from hf_summary.localhub import api, buckets, cas, files, lfs, page, xet
from hf_summary.localhub.auth import identify
from hf_summary.localhub.bucketstore import BucketStore
from hf_summary.localhub.call import Call, Hub
from hf_summary.localhub.casstore import CasStore
from hf_summary.localhub.errors import HubError
from hf_summary.localhub.storage import Storage

MAX_JSON_BODY = 16 * 1024 * 1024
MAX_UPLOAD_BODY = 1024 * 1024 * 1024


Handler = Callable[[Call], Response] | Callable[[Call], Awaitable[Response]]
Routes = dict[str, Handler]

_REPO_API: dict[str, Routes] = {
    "": {"GET": api.repo_info},
    "revision": {"GET": api.repo_info},
    "preupload": {"POST": api.preupload},
    "commit": {"POST": api.commit},
    "tree": {"GET": api.list_tree},
    "paths-info": {"POST": api.paths_info},
    "commits": {"GET": api.list_commits},
    "refs": {"GET": api.list_refs},
    "super-squash": {"POST": api.super_squash},
    "branch": {"POST": api.create_branch, "DELETE": api.delete_branch},
    "xet-write-token": {"GET": xet.token_route("write")},
    "xet-read-token": {"GET": xet.token_route("read")},
}

_BUCKET_API: dict[str, Routes] = {
    "": {"POST": buckets.create, "GET": buckets.info, "DELETE": buckets.delete},
    "settings": {"PUT": buckets.settings},
    "tree": {"GET": buckets.tree},
    "paths-info": {"POST": buckets.paths_info},
    "batch": {"POST": buckets.batch},
    "xet-write-token": {"GET": xet.token_route("write")},
    "xet-read-token": {"GET": xet.token_route("read")},
}

_BIG_BODIES = (api.commit, cas.upload_xorb, cas.upload_shard, buckets.batch)


def route(segments: list[str]) -> tuple[Routes, dict[str, str]]:
    """The handlers (by method) and parameters for a decoded path; ({}, {}) if nothing matches."""
    match segments:
        case ["api", "whoami-v2"]:
            return {"GET": api.whoami}, {}
        case ["api", "repos", "create"]:
            return {"POST": api.create_repo}, {}
        case ["api", "repos", "delete"]:
            return {"DELETE": api.delete_repo}, {}
        case ["api", "validate-yaml"]:
            return {"POST": api.validate_yaml}, {}
        case ["api", "models" | "datasets" | "spaces" as plural, namespace, name, *rest]:
            params = {"type": plural[:-1], "namespace": namespace, "name": name}
            action, *args = rest or [""]
            if action in ("", "refs"):
                if not args:
                    return _REPO_API[action], {**params, "revision": "main"}
            elif action == "tree":
                if args:  # the revision is one (encoded) segment, the folder path may be several
                    return _REPO_API["tree"], {**params, "revision": args[0], "path": "/".join(args[1:])}
            elif action in _REPO_API and args:
                return _REPO_API[action], {**params, "revision": "/".join(args)}
        case ["api", "buckets", namespace]:
            return {"GET": buckets.list_buckets}, {"namespace": namespace}
        case ["api", "buckets", namespace, name, *rest]:
            params = {"type": "bucket", "namespace": namespace, "name": name}
            action, *args = rest or [""]
            if action == "tree":
                return _BUCKET_API["tree"], {**params, "path": "/".join(args)}
            if action in _BUCKET_API and not args:
                return _BUCKET_API[action], params
        case ["buckets", namespace, name, "resolve", *path] if path:
            return {"GET": buckets.resolve, "HEAD": buckets.resolve}, {
                "type": "bucket",
                "namespace": namespace,
                "name": name,
                "path": "/".join(path),
            }
        case ["_localhub", "cas", instance, *rest]:
            return _cas_route(instance, rest)
        case ["_localhub", "lfs", "upload", "model" | "dataset" | "space" as repo_type, namespace, name, oid]:
            return {"PUT": lfs.upload}, {"type": repo_type, "namespace": namespace, "name": name, "oid": oid}
        case ["_localhub", "lfs", "verify", "model" | "dataset" | "space" as repo_type, namespace, name]:
            return {"POST": lfs.verify}, {"type": repo_type, "namespace": namespace, "name": name}
        case ["datasets" | "spaces" as plural, namespace, name, *rest]:
            return _web_route(plural[:-1], namespace, name, rest)
        case [namespace, name, *rest] if namespace not in ("api", "_localhub"):
            return _web_route("model", namespace, name, rest)
    return {}, {}


def _cas_route(instance: str, rest: list[str]) -> tuple[Routes, dict[str, str]]:
    match rest:
        case ["v1", "chunks", "default", chunk]:
            return {"GET": cas.chunk_dedup}, {"instance": instance, "hash": chunk}
        case ["v1", "xorbs", "default", xorb]:
            return {"POST": cas.upload_xorb}, {"instance": instance, "hash": xorb}
        case ["v1", "shards"]:
            return {"POST": cas.upload_shard}, {"instance": instance}
        case ["v1", "reconstructions", file_hash]:
            return {"GET": cas.reconstruction}, {"instance": instance, "hash": file_hash}
        case ["fetch", xorb]:
            return {"GET": cas.fetch}, {"instance": instance, "hash": xorb}
    return {}, {}


def _web_route(repo_type: str, namespace: str, name: str, rest: list[str]) -> tuple[Routes, dict[str, str]]:
    params = {"type": repo_type, "namespace": namespace, "name": name}
    match rest:
        case []:
            return {"GET": page.repo_page}, params
        case ["resolve", revision, *path] if path:
            return {"GET": files.resolve, "HEAD": files.resolve}, {
                **params,
                "revision": revision,
                "path": "/".join(path),
            }
        case ["info", "lfs", "objects", "batch"] if name.endswith(".git"):
            return {"POST": lfs.batch}, {**params, "name": name.removesuffix(".git")}
    return {}, {}


class HubApp:
    """ASGI entry point: route, identify the caller, read the body, run the handler, map HubError."""

    def __init__(
        self,
        *,
        data_dir: Path,
        users: dict[str, str],
        regular: bool,
        commit_limit: int,
        page_size: int,
        commit_window_s: float,
    ):
        storage = Storage(data_dir, commit_limit=commit_limit, commit_window_s=commit_window_s)
        secret = _load_secret(data_dir)
        cas_store = CasStore(data_dir, storage.blobs)
        self.hub = Hub(storage, cas_store, BucketStore(storage), dict(users), regular, page_size, secret, xet.cas_prefix(secret))

    def repo_stats(self) -> dict[str, dict[str, int]]:
        """`Storage.repo_stats` for repos, and the same keys for buckets (which have no commits)."""
        return self.hub.storage.repo_stats() | self.hub.buckets.stats()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        try:
            response = await self._handle(request)
        except HubError as e:
            response = e.response()
        await response(scope, receive, send)

    async def _handle(self, request: Request) -> Response:
        raw = request.scope.get("raw_path") or request.url.path.encode()
        segments = [unquote(s) for s in raw.decode("latin-1").split("/")[1:]]
        if segments and segments[-1] == "" and len(segments) > 1:
            segments.pop()
        routes, params = route(segments)
        method = request.method.upper()
        if not routes:
            return JSONResponse({"error": f"Not found: {request.url.path}"}, status_code=404)
        if method not in routes:
            return JSONResponse({"error": f"Method {method} not allowed"}, status_code=405)
        handler = routes[method]
        call = Call(self.hub, request, identify(request, self.hub.users), params)
        if inspect.iscoroutinefunction(handler):
            return await handler(call)
        if method in ("POST", "PUT", "DELETE"):
            call.body = await read_body(request, MAX_UPLOAD_BODY if handler in _BIG_BODIES else MAX_JSON_BODY)
        return await run_in_threadpool(handler, call)


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HubError(413, f"Request body too large ({declared} bytes; the limit is {limit})")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HubError(413, f"Request body too large (the limit is {limit} bytes)")
    return bytes(body)


def _load_secret(data_dir: Path) -> bytes:
    """The key signing LFS upload URLs, CAS tokens and fetch URLs; kept in the data dir so they survive a restart."""
    path = data_dir / "secret"
    if not path.exists():
        tmp = data_dir / "secret.tmp"
        tmp.write_bytes(secrets.token_bytes(32))
        tmp.replace(path)
    return path.read_bytes()
