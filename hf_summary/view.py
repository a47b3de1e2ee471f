"""`hf-summary view`: a live local TensorBoard of a run on the Hub, in a repo or a bucket, or of a local logdir.

A run on the Hub is mirrored with `hf_summary.mirror.Mirror` and refreshed every few seconds while
TensorBoard watches the mirror. TensorBoard runs in a child interpreter that exits when its stdin closes,
so it never outlives this process, even one that is SIGKILLed.
"""

from __future__ import annotations

import collections
import importlib.util
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hf_summary.hub import BUCKET, HubError, MissingRepoError, PushTarget, check_repo_id, open_client
from hf_summary.mirror import Mirror
from hf_summary.segments import is_event_file

INSTALL_HINT = "TensorBoard is not installed: pip install 'hf-summary[view]'"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 10.0
_URL_LINE = re.compile(r"TensorBoard \S+ at (http://\S+?)/? \(Press CTRL\+C to quit\)")
# Exit as soon as our parent closes the pipe (ends or dies), then run TensorBoard's own main.
_CHILD = (
    "import os, sys, threading\n"
    "threading.Thread(target=lambda: (sys.stdin.buffer.read(), os._exit(0)), daemon=True).start()\n"
    "from tensorboard.main import run_main\n"
    "sys.argv = ['tensorboard', *sys.argv[1:]]\n"
    "run_main()\n"
)


class ViewError(Exception):
    """The run cannot be viewed; the message says why and what to do."""


@dataclass(frozen=True)
class Target:
    """What to view: a repo or bucket (`repo_id` set) or a local logdir (`logdir` set)."""

    repo_id: str | None = None
    logdir: Path | None = None
    repo_type: str = "model"
    revision: str = "main"  # a bucket has none: kept "main", as its client does
    path: str = ""

    @classmethod
    def parse(
        cls, source: str, *, repo_type: str = "model", revision: str | None = None, path: str = ""
    ) -> Target:
        """An existing directory is a local logdir; anything else must be a repo id. `revision` None means
        main; a bucket takes none."""
        if Path(source).is_dir():
            return cls(logdir=Path(source).resolve())
        try:
            check_repo_id(source)
        except ValueError as exc:
            raise ViewError(f"{source!r} is neither a directory nor a repo id: {exc}") from None
        if repo_type == BUCKET and revision is not None:
            raise ViewError("a bucket has no revisions (no commits, no branches): leave out --revision.")
        return cls(repo_id=source, repo_type=repo_type, revision=revision or "main", path=path)

    def describe(self) -> str:
        if self.logdir is not None:
            return str(self.logdir)
        where = f" in folder {self.path!r}" if self.path else ""
        at = "" if self.repo_type == BUCKET else f" @ {self.revision}"
        return f"{self.repo_type} {self.repo_id}{at}{where}"


def require_tensorboard() -> None:
    """Raise `ViewError` with the install command when TensorBoard cannot be imported."""
    if importlib.util.find_spec("tensorboard") is None:
        raise ViewError(INSTALL_HINT)


class TensorBoard:
    """A TensorBoard server on `logdir` in a child process (context manager); `url` once started.

    It uses TensorBoard's Python loader (`--load_fast=false`): after a compaction the merged file sorts before
    the file being read, and the Python loader skips it, keeping every event once, while rustboard's step
    preemption would hide every step logged after the merged range until a restart (see TensorBoard's
    `directory_watcher.py` and rustboard's `reservoir.rs` in https://github.com/tensorflow/tensorboard).
    """

    def __init__(self, logdir: Path, *, host: str = "127.0.0.1", port: int | None = None, reload_s: float = 2.0):
        require_tensorboard()
        self.command = [sys.executable, "-c", _CHILD, "--logdir", str(logdir), "--host", host,
                        "--reload_interval", f"{reload_s:g}", "--load_fast", "false"]
        if port is not None:
            self.command += ["--port", str(port)]
        self.url = ""
        self._process: subprocess.Popen[str] | None = None
        self._output: collections.deque[str] = collections.deque(maxlen=20)

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("TensorBoard is not running")
        return self._process.pid

    def __enter__(self) -> TensorBoard:
        self._process = subprocess.Popen(
            self.command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        found = threading.Event()
        threading.Thread(target=self._read_output, args=(found,), daemon=True).start()
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not found.wait(0.1):
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise ViewError(f"TensorBoard did not start: {self.last_output()}")
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _read_output(self, found: threading.Event) -> None:
        assert self._process is not None and self._process.stderr is not None
        for line in self._process.stderr:
            self._output.append(line.rstrip())
            match = _URL_LINE.search(line)
            if match and not found.is_set():
                self.url = match.group(1)
                found.set()

    def last_output(self) -> str:
        return " / ".join(line for line in self._output if line) or "no output"

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """Close its stdin (it exits at once), then kill it by its pid if it has not exited in time."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin:
            process.stdin.close()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _not_found(target: Target, client: PushTarget, token: str | None, exc: MissingRepoError) -> ViewError:
    bucket = target.repo_type == BUCKET
    if exc.what == "folder":
        at = "" if bucket else f" at revision {target.revision!r}"
        return ViewError(f"{target.repo_id} has no folder {target.path!r}{at}.")
    if exc.what == "revision":
        return ViewError(f"{target.repo_id} has no revision {target.revision!r}.")
    from huggingface_hub import get_token

    hint = ("the token in use cannot read it: use a token of a user who can"
            if token or get_token() else "log in (`hf auth login`) or set HF_TOKEN")
    what = "bucket" if bucket else f"{target.repo_type} repo"
    return ViewError(f"No {what} {target.repo_id!r} on {client.endpoint}. If it is private, {hint}.")


def _local_event_files(logdir: Path) -> Iterator[Path]:
    return (p for p in logdir.rglob("*") if p.is_file() and is_event_file(p.name))


@contextmanager
def serve(
    target: Target,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    cache_dir: Path | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> Iterator[Callable[[], None]]:
    """Mirror the run (if on the Hub), start TensorBoard on it and yield a `refresh()` function to call
    every few seconds. `say` gets the TensorBoard URL and every change. `endpoint` and `token`
    default to huggingface_hub's (`HF_ENDPOINT`, `HF_TOKEN` or the stored login). Raises
    `ViewError` when the repo, revision or folder does not exist or holds no event files;
    TensorBoard is stopped on exit."""
    require_tensorboard()
    if target.logdir is not None:
        if next(_local_event_files(target.logdir), None) is None:
            raise ViewError(f"{target.logdir} holds no event files (files named *tfevents*).")
        logdir, refresh = target.logdir, _alive_check
    else:
        client = open_client(repo_id=target.repo_id, repo_type=target.repo_type, revision=target.revision,
                             endpoint=endpoint, token=token)
        mirror = Mirror(client, target.path, cache_dir=cache_dir)
        try:
            first = mirror.refresh()
        except MissingRepoError as exc:
            raise _not_found(target, client, token, exc) from None
        except HubError as exc:
            raise ViewError(f"{target.describe()}: {exc}") from None
        except OSError as exc:
            raise ViewError(f"cannot write the mirror in {mirror.logdir}: {exc}") from None
        if not len(mirror):
            raise ViewError(f"{target.describe()} holds no event files (files named *tfevents*).")
        say(f"Mirroring {target.describe()} into {mirror.logdir} "
            f"({len(first.added)} file(s) fetched, {len(mirror) - len(first.added)} already there)")
        logdir, refresh = mirror.logdir, _mirror_refresher(mirror, say)
    with TensorBoard(logdir, host=host, port=port) as board:
        say(f"TensorBoard at {board.url}/ (pid {board.pid})")

        def check() -> None:
            if not board.alive():
                raise ViewError(f"TensorBoard exited: {board.last_output()}")
            refresh()

        yield check


def _alive_check() -> None:
    """A local logdir needs no refresh: TensorBoard watches it directly."""


def _mirror_refresher(mirror: Mirror, say: Callable[[str], None]) -> Callable[[], None]:
    def refresh() -> None:
        try:
            change = mirror.refresh()
        except (HubError, OSError) as exc:  # the Hub may be down for a while: keep showing what is mirrored
            say(f"refresh failed, retrying: {exc}")
            return
        if change.added or change.removed:
            say(f"fetched {len(change.added)} new event file(s), removed {len(change.removed)}")

    return refresh


def run(
    target: Target,
    *,
    interval_s: float = 5.0,
    host: str = "127.0.0.1",
    port: int | None = None,
    cache_dir: Path | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> None:
    """`serve` and refresh every `interval_s` seconds until interrupted (KeyboardInterrupt)."""
    with serve(target, host=host, port=port, cache_dir=cache_dir, endpoint=endpoint, token=token, say=say) as refresh:
        while True:
            time.sleep(interval_s)
            refresh()
