"""`LocalHub`: run the local Hub in a subprocess for tests.

    with LocalHub() as hub:
        api = HfApi(endpoint=hub.endpoint, token=hub.token("alice"))

The server is `python -m hf_summary hub` (the same interpreter), on 127.0.0.1 and a free port, with
a temporary data dir unless one is given. It is only ever signalled by its own PID.
"""

from __future__ import annotations

import json
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

DEFAULT_USERS = {"alice": "hf_alice_token", "bob": "hf_bob_token"}
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
READY_PREFIX = "Local Hub listening on "


class LocalHub:
    """A local Hub server process (context manager). See the module docstring."""

    def __init__(
        self,
        *,
        users: dict[str, str] | None = None,
        admin_token: str = "hf_admin_token",
        regular: bool = False,
        commit_limit: int = 128,
        page_size: int | None = None,
        data_dir: str | Path | None = None,
        commit_window_s: float = 3600.0,
    ) -> None:
        self.users = dict(DEFAULT_USERS if users is None else users)
        self.admin_token = admin_token
        self.regular = regular
        self.commit_limit = commit_limit
        self.commit_window_s = commit_window_s
        self.page_size = page_size
        self._own_data_dir = data_dir is None
        self.data_dir = Path(tempfile.mkdtemp(prefix="localhub-")) if data_dir is None else Path(data_dir)
        self.port = 0
        self._process: subprocess.Popen[str] | None = None

    # -- lifecycle ----------------------------------------------------------------------------------

    def __enter__(self) -> LocalHub:
        try:
            self.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        if self._own_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the local Hub is not running")
        return self._process.pid

    def start(self) -> None:
        """Start the server (on the same port as before if it ran already) and wait until it listens."""
        if self._process is not None:
            raise RuntimeError("the local Hub is already running")
        command = [
            sys.executable,
            "-m",
            "hf_summary",
            "hub",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--admin-token",
            self.admin_token,
            "--commit-limit",
            str(self.commit_limit),
            "--commit-window",
            repr(self.commit_window_s),
        ]
        command += [arg for name, token in self.users.items() for arg in ("--user", f"{name}:{token}")]
        command += ["--regular"] if self.regular else []
        command += ["--page-size", str(self.page_size)] if self.page_size is not None else []
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        line = _first_line(self._process.stdout, START_TIMEOUT_S)
        if not line.startswith(READY_PREFIX):
            self.kill()
            raise RuntimeError(f"the local Hub did not start (first stdout line: {line!r}); see its stderr")
        self.port = int(line.strip().rsplit(":", 1)[1])

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited in time. The port closes; the data dir stays."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL, as in a crash."""
        self._end(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _end(self, sig: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout:
            process.stdout.close()

    # -- users and admin API ------------------------------------------------------------------------

    def token(self, user: str = "alice") -> str:
        return self.users[user]

    def set_faults(self, rules: list[dict], bandwidth_bps: int | None = None) -> None:
        """Replace the fault rules (see hf_summary.localhub.faults for their fields)."""
        self._admin("POST", "/_localhub/faults", {"rules": rules, "bandwidth_bps": bandwidth_bps})

    def fired(self) -> list[int]:
        """How often each fault rule has fired, in the order they were set."""
        return [rule["fired"] for rule in self._admin("GET", "/_localhub/faults")["rules"]]

    def clear_faults(self) -> None:
        self._admin("DELETE", "/_localhub/faults")

    def stats(self) -> dict:
        return self._admin("GET", "/_localhub/stats")

    def _admin(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            self.endpoint + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.admin_token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.load(response)
        except urllib.error.HTTPError as e:
            raise RuntimeError(
                f"{method} {path} failed: {e.code} {e.read().decode(errors='replace')}"
            ) from None


def _first_line(stream: IO[str] | None, timeout: float) -> str:
    """The first line of `stream`, or "" if it closes or `timeout` passes first."""
    if stream is None:
        return ""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        return ""
