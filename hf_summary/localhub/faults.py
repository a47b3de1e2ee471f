"""Fault injection, request-body throttling and statistics: an ASGI middleware around the Hub app.

Admin endpoints (bearer `--admin-token`; any other token gets 403, none 401) are served here and are
never faulted, throttled or counted:

- `POST /_localhub/faults` `{"rules": [...], "bandwidth_bps": N|null}` replaces the rule set. A rule
  `{"method", "path", "status", "times", "probability", "delay_s", "retry_after", "reset"}` (all
  optional) matches requests whose method equals `method` (any if absent) and whose decoded URL path
  contains a match of the regex `path` (any if absent). A match *fires* with `probability` (default 1)
  until the rule has fired `times` times (default unlimited). Firing: sleep `delay_s` (if given), then
  either drop the connection without a response (`reset`), answer `status` (with `Retry-After:
  retry_after`, integer seconds, if given; the request body is read first so the client sees the answer), or, with
  neither, serve the request normally. The first rule that fires wins. `bandwidth_bps` limits how
  fast each request body is read. Rules live in memory and are gone after a restart.
- `GET /_localhub/faults` lists the rules in order with how often each has fired: `{"rules": [{"method",
  "path", "fired"}]}` (so a test can wait until a held request is in flight).
- `DELETE /_localhub/faults` clears rules and bandwidth limit.
- `GET /_localhub/stats`: `{"requests": N, "bytes_received": N, "bytes_received_by_route": {"cas": N,
  "lfs": N, "other": N}, "downloads": {...}, "reconstructions": {...}, "repos": {...}}`. `requests` counts
  every non-admin request (faulted ones included) and `bytes_received` every request-body byte read from
  them (commit bodies, xorbs and shards, LFS PUTs, preupload and other JSON bodies alike), both since the
  server started; `bytes_received_by_route` splits the bytes into the CAS's (`/_localhub/cas/`), basic LFS
  uploads' (`/_localhub/lfs/`) and the rest. `downloads` maps `<type>/<namespace>/<name>/<path>` to the
  number of `GET .../resolve/<any revision>/<path>` requests for it (HEADs are not counted);
  `reconstructions` maps a Xet file hash to the number of CAS `GET v1/reconstructions/<hash>` requests for
  it (one per Xet download, the only way bucket files are downloaded). `repos` maps
  `<type>/<namespace>/<name>` to `{"commits", "files", "bytes"}` as defined by `Storage.repo_stats`
  (commits in `main`'s history; files and total bytes at `main`'s head).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import random
import re
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ADMIN_PATHS = ("/_localhub/faults", "/_localhub/stats")
ROUTE_KINDS = {"cas": "/_localhub/cas/", "lfs": "/_localhub/lfs/"}
MAX_ADMIN_BODY = 1024 * 1024
_RECONSTRUCTION_PATH = re.compile(r"/_localhub/cas/[^/]+/v1/reconstructions/([0-9a-f]{64})")
RULE_KEYS = {"method", "path", "status", "times", "probability", "delay_s", "retry_after", "reset"}


@dataclass
class Rule:
    method: str | None = None
    path: re.Pattern[str] | None = None
    status: int | None = None
    times: int | None = None
    probability: float = 1.0
    delay_s: float = 0.0
    retry_after: int | None = None
    reset: bool = False
    fired: int = field(default=0)

    def fires(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        if self.path is not None and not self.path.search(path):
            return False
        if self.times is not None and self.fired >= self.times:
            return False
        if random.random() >= self.probability:
            return False
        self.fired += 1
        return True


def parse_rule(raw: object) -> Rule:
    """A Rule from its JSON form; ValueError with the reason if malformed."""
    if not isinstance(raw, dict) or not RULE_KEYS.issuperset(raw):
        raise ValueError(f"a rule must be an object with keys among {sorted(RULE_KEYS)}: {raw!r}")

    def number(key: str, low: float, high: float | None = None, integer: bool = False) -> Any:
        value = raw.get(key)
        if value is None:
            return None
        kind = int if integer else (int, float)
        if (
            isinstance(value, bool)
            or not isinstance(value, kind)
            or value < low
            or (high is not None and value > high)
        ):
            raise ValueError(f"{key!r} must be a{'n integer' if integer else ' number'} >= {low}: {value!r}")
        return value

    method, path = raw.get("method"), raw.get("path")
    if method is not None and not isinstance(method, str):
        raise ValueError(f"'method' must be a string: {method!r}")
    if path is not None and not isinstance(path, str):
        raise ValueError(f"'path' must be a regex string: {path!r}")
    if not isinstance(raw.get("reset", False), bool):
        raise ValueError("'reset' must be a boolean")
    probability = number("probability", 0, 1)
    try:
        pattern = re.compile(path) if path is not None else None
    except re.error as e:
        raise ValueError(f"'path' is not a valid regex: {e}") from None
    return Rule(
        method=method.upper() if method else None,
        path=pattern,
        status=number("status", 100, 599, integer=True),
        times=number("times", 0, integer=True),
        probability=1.0 if probability is None else probability,
        delay_s=number("delay_s", 0) or 0.0,
        retry_after=number("retry_after", 0, integer=True),
        reset=raw.get("reset", False),
    )


class FaultsAndStats:
    def __init__(self, app: ASGIApp, *, admin_token: str | None, repo_stats: Callable[[], dict]) -> None:
        self.app = app
        self.admin_token = admin_token
        self.repo_stats = repo_stats
        self.rules: list[Rule] = []
        self.bandwidth_bps: int | None = None
        self.requests = 0
        self.bytes_received = 0
        self.downloads: dict[str, int] = {}
        self.reconstructions: dict[str, int] = {}
        self.bytes_by_route = dict.fromkeys([*ROUTE_KINDS, "other"], 0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in ADMIN_PATHS:
            response = await self._admin(Request(scope, receive))
            await response(scope, receive, send)
            return
        self.requests += 1
        if scope["method"] == "GET" and (key := _download_key(scope)):
            self.downloads[key] = self.downloads.get(key, 0) + 1
        if scope["method"] == "GET" and (file_hash := _reconstruction_hash(scope)):
            self.reconstructions[file_hash] = self.reconstructions.get(file_hash, 0) + 1
        kind = next((k for k, prefix in ROUTE_KINDS.items() if scope["path"].startswith(prefix)), "other")
        server_receive, receive = receive, self._metered(receive, kind)
        rule = next((r for r in self.rules if r.fires(scope["method"], scope["path"])), None)
        if rule is None:
            await self.app(scope, receive, send)
            return
        if rule.delay_s:
            await asyncio.sleep(rule.delay_s)
        if rule.reset:
            await _drop_connection(server_receive)
        elif rule.status is not None:
            while (await receive()).get("more_body"):
                pass
            headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else {}
            await JSONResponse({"error": "Injected fault"}, status_code=rule.status, headers=headers)(
                scope, receive, send
            )
        else:
            await self.app(scope, receive, send)

    def _metered(self, receive: Receive, kind: str) -> Receive:
        """Wrap `receive` to count body bytes and, with a bandwidth limit, pace them."""
        started, total = time.monotonic(), 0

        async def metered() -> Message:
            nonlocal total
            message = await receive()
            if message["type"] == "http.request":
                size = len(message.get("body", b""))
                self.bytes_received += size
                self.bytes_by_route[kind] += size
                total += size
                if self.bandwidth_bps:
                    await asyncio.sleep(max(0.0, started + total / self.bandwidth_bps - time.monotonic()))
            return message

        return metered

    async def _admin(self, request: Request) -> JSONResponse:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return JSONResponse({"error": "Admin token required"}, status_code=401)
        if self.admin_token is None or not hmac.compare_digest(token.strip(), self.admin_token):
            return JSONResponse(
                {"error": "Not the admin token (or no --admin-token configured)"}, status_code=403
            )
        match request.method, request.url.path:
            case "GET", "/_localhub/stats":
                repos = await run_in_threadpool(self.repo_stats)
                return JSONResponse(
                    {
                        "requests": self.requests,
                        "bytes_received": self.bytes_received,
                        "downloads": self.downloads,
                        "reconstructions": self.reconstructions,
                        "bytes_received_by_route": dict(self.bytes_by_route),
                        "repos": repos,
                    }
                )
            case "GET", "/_localhub/faults":
                return JSONResponse(
                    {
                        "rules": [
                            {"method": r.method, "path": r.path.pattern if r.path else None, "fired": r.fired}
                            for r in self.rules
                        ]
                    }
                )
            case "DELETE", "/_localhub/faults":
                self.rules, self.bandwidth_bps = [], None
                return JSONResponse({"rules": 0})
            case "POST", "/_localhub/faults":
                return await self._set_faults(request)
        return JSONResponse({"error": f"Method {request.method} not allowed"}, status_code=405)

    async def _set_faults(self, request: Request) -> JSONResponse:
        body = await request.body()
        try:
            if len(body) > MAX_ADMIN_BODY:
                raise ValueError("body too large")
            payload = json.loads(body)
            if not isinstance(payload, dict) or not isinstance(payload.get("rules", []), list):
                raise ValueError('expected {"rules": [...], "bandwidth_bps": N}')
            rules = [parse_rule(raw) for raw in payload.get("rules", [])]
            bandwidth = payload.get("bandwidth_bps")
            if bandwidth is not None and (
                isinstance(bandwidth, bool) or not isinstance(bandwidth, int) or bandwidth <= 0
            ):
                raise ValueError(f"'bandwidth_bps' must be a positive integer or null: {bandwidth!r}")
        except ValueError as e:  # json.JSONDecodeError is a ValueError
            return JSONResponse({"error": f"Invalid faults: {e}"}, status_code=400)
        self.rules, self.bandwidth_bps = rules, bandwidth
        return JSONResponse({"rules": len(rules)})


def _download_key(scope: Scope) -> str | None:
    """`<type>/<namespace>/<name>/<path>` of a `/resolve/` request, or None for any other path."""
    raw = scope.get("raw_path") or scope["path"].encode()
    segments = [unquote(s) for s in raw.decode("latin-1").split("/")[1:]]
    repo_type = {"datasets": "dataset", "spaces": "space"}.get(segments[0] if segments else "", "model")
    rest = segments if repo_type == "model" else segments[1:]
    if len(rest) < 5 or rest[2] != "resolve":
        return None
    return "/".join([repo_type, rest[0], rest[1], *rest[4:]])


def _reconstruction_hash(scope: Scope) -> str | None:
    """The Xet file hash of a CAS `v1/reconstructions/<hash>` request, or None for any other path."""
    match = _RECONSTRUCTION_PATH.fullmatch(scope["path"])
    return match[1] if match else None


async def _drop_connection(receive: Receive) -> None:
    """Close the client's TCP connection with a reset and no response.

    ASGI has no "abort" message, so this reaches the transport through uvicorn's `receive`, a bound
    method of its h11 RequestResponseCycle (the server pins `http="h11"`). Waiting for
    `http.disconnect` afterwards keeps uvicorn from answering 500 on our behalf.
    """
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    if transport is None:
        raise RuntimeError("cannot reach the connection's transport to reset it")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    while (await receive())["type"] != "http.disconnect":
        pass
