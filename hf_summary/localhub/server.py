"""Start the local Hub: `parse_users` and `serve` (used by `hf-summary hub`)."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import sys
from pathlib import Path

import uvicorn

from hf_summary.localhub.app import HubApp
from hf_summary.localhub.faults import FaultsAndStats

_USER_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")


def parse_users(entries: list[str]) -> dict[str, str]:
    """{"name": "token"} from `NAME:TOKEN` strings; ValueError naming the bad entry otherwise."""
    users: dict[str, str] = {}
    for entry in entries:
        name, sep, token = entry.partition(":")
        if not sep or not _USER_NAME.fullmatch(name) or not token or token != token.strip():
            raise ValueError(f"--user must be NAME:TOKEN (a valid user name, a non-empty token): {entry!r}")
        if name in users:
            raise ValueError(f"user {name!r} is given twice")
        if token in users.values():
            raise ValueError(f"user {name!r} reuses another user's token")
        users[name] = token
    return users


def create_app(
    *,
    data_dir: str | Path,
    users: dict[str, str],
    admin_token: str | None = None,
    regular: bool = False,
    commit_limit: int = 128,
    page_size: int = 1000,
    commit_window_s: float = 3600.0,
) -> FaultsAndStats:
    """The complete ASGI application (Hub routes wrapped in fault injection and statistics)."""
    if commit_limit < 1 or page_size < 1 or not commit_window_s > 0:
        raise ValueError("commit_limit and page_size must be >= 1 and commit_window_s > 0")
    hub = HubApp(
        data_dir=Path(data_dir),
        users=users,
        regular=regular,
        commit_limit=commit_limit,
        page_size=page_size,
        commit_window_s=commit_window_s,
    )
    return FaultsAndStats(hub, admin_token=admin_token, repo_stats=hub.repo_stats)


class _Server(uvicorn.Server):
    """Announces the listening URL on stdout once uvicorn is ready to accept requests."""

    def __init__(self, config: uvicorn.Config, url: str) -> None:
        super().__init__(config)
        self.url = url

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            print(f"Local Hub listening on {self.url}", flush=True)


def serve(
    *,
    host: str,
    port: int,
    data_dir: str | Path,
    users: dict[str, str],
    admin_token: str | None = None,
    regular: bool = False,
    commit_limit: int = 128,
    page_size: int = 1000,
    commit_window_s: float = 3600.0,
) -> None:
    """Serve until SIGTERM/SIGINT. Prints exactly one stdout line, `Local Hub listening on http://HOST:PORT`."""
    app = create_app(
        data_dir=data_dir,
        users=users,
        admin_token=admin_token,
        regular=regular,
        commit_limit=commit_limit,
        page_size=page_size,
        commit_window_s=commit_window_s,
    )
    # Bind ourselves so port 0 resolves to a real port before we announce it. The explicit IPPROTO_TCP
    # matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto says TCP, and without it
    # every keep-alive response waits ~40 ms for a delayed ACK.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    real_port = sock.getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    config = uvicorn.Config(
        app,
        http="h11",
        lifespan="off",
        log_config=None,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=5,
        # longer than clients keep idle connections, so a request never races the server closing one
        timeout_keep_alive=120,
    )
    # uvicorn re-raises the stop signal after its graceful shutdown; by then we are done, so ignore it.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    try:
        asyncio.run(_Server(config, f"http://{shown_host}:{real_port}").serve(sockets=[sock]))
    finally:
        sock.close()
        sys.stdout.flush()
