"""Shared by the recovery tests: a trainer process driven over stdin, the `hf-summary` CLI as a process, and
the byte-for-byte comparison of a repo folder with a logdir."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
from helpers import REPO_ROOT, event_keys, kill_uploaders, run_script
from huggingface_hub import HfApi
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.summary import scalar

from hf_summary.journal import Journal, RunSettings
from hf_summary.segments import frame_record, segment_name

CLI_TIMEOUT_S = 120

# A trainer that does what it is told, one command per stdin line, and answers with one JSON line:
#   log N         log N steps (a scalar each, a histogram every 10th)      -> {"event": "logged", "step": next}
#   spin          log until killed, acknowledging every step               -> {"event": "step", "step": s} ...
#   push wait|nowait                                                      -> {"event": "pushed", "ok": bool}
#   close                                                                  -> {"event": "closed", "seconds": s}
# Every answer carries the pid of the writer's current uploader child.
TRAINER = """
    import json, os, sys, time
    import numpy as np
    from hf_summary import HFSummaryWriter

    writer = HFSummaryWriter(
        os.environ["REPO"], logdir=os.environ["LOGDIR"], commit_every=float(os.environ.get("COMMIT_EVERY", "60")),
        squash_history=os.environ.get("SQUASH") == "1", repo_type=os.environ.get("REPO_TYPE") or None,
    )
    rng = np.random.default_rng(0)
    step = int(os.environ.get("FIRST_STEP", "0"))

    def say(event, **fields):
        uploader = writer._uploader
        print(json.dumps({"event": event, "uploader": uploader.pid if uploader else None, **fields}), flush=True)

    def log_one():
        global step
        writer.add_scalar("loss", step * 0.5, step)
        if step % 10 == 0:
            writer.add_histogram("weights", rng.normal(size=50), step)
        step += 1

    say("ready", pid=os.getpid())
    for line in sys.stdin:
        command, *args = line.split()
        if command == "log":
            for _ in range(int(args[0])):
                log_one()
            say("logged", step=step)
        elif command == "spin":
            while True:
                log_one()
                say("step", step=step - 1)
                time.sleep(0.002)
        elif command == "push":
            say("pushed", ok=writer.push_to_hub(blocking=args[0] == "wait", timeout=60))
        elif command == "close":
            started = time.monotonic()
            writer.close()
            say("closed", step=step, seconds=time.monotonic() - started)
            break
"""


class Trainer:
    """A trainer process (``script``, by default TRAINER; ``argv_prefix`` runs it under another command, e.g.
    ``unshare``). Use as a context manager: it and every uploader of its logdir are SIGKILLed on the way out."""

    def __init__(self, logdir: Path, env: dict[str, str], cwd: Path, *, script: str = TRAINER,
                 argv_prefix: tuple[str, ...] = ()):
        self.logdir = logdir
        self.proc = run_script(script, {"LOGDIR": str(logdir), **env}, cwd, stdin=subprocess.PIPE,
                               argv_prefix=argv_prefix)
        self.messages: queue.Queue[dict | None] = queue.Queue()
        self.acked = -1  # last step the trainer said it logged (add_* returned)
        self.uploader: int | None = None
        self.stderr: list[str] = []  # drained all along: the uploader inherits the pipe and must never block on it
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self.pid = self.expect("ready", timeout=60)["pid"]

    def _read(self) -> None:
        for line in self.proc.stdout:
            message = json.loads(line)
            if message["event"] == "step":
                self.acked = message["step"]
            elif message["event"] == "logged":
                self.acked = message["step"] - 1
            self.uploader = message.get("uploader") or self.uploader
            self.messages.put(message)
        self.messages.put(None)

    def _drain_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line)

    def send(self, command: str) -> None:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def expect(self, event: str, timeout: float = 60, until=lambda message: True) -> dict:
        """The next message of kind ``event`` for which ``until`` holds (others are skipped)."""
        while True:
            try:
                message = self.messages.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"the trainer said no {event!r} within {timeout} s") from None
            if message is None:
                raise AssertionError(f"the trainer ended (status {self.proc.wait()}): {''.join(self.stderr[-50:])}")
            if message["event"] == event and until(message):
                return message

    def command(self, command: str, event: str, timeout: float = 60) -> dict:
        self.send(command)
        return self.expect(event, timeout)

    def sigkill(self) -> None:
        """SIGKILL the trainer; afterwards ``acked`` is final."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._reader.join(10)

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sigkill()
        kill_uploaders(self.logdir)
        self.proc.stdin.close()


def pid_gone(pid: int) -> bool:
    """The process ended: gone, or a zombie waiting for its parent whose threads have all exited (a SIGKILLed
    process shows as a zombie while its other threads are still being torn down, and cannot be reaped yet)."""
    try:
        process = psutil.Process(pid)
        return process.status() == psutil.STATUS_ZOMBIE and process.num_threads() <= 1
    except psutil.NoSuchProcess:
        return True


def hub_env(hub, user: str = "alice") -> dict[str, str]:
    return {"HF_ENDPOINT": hub.endpoint, "HF_TOKEN": hub.token(user), "HF_HUB_DISABLE_TELEMETRY": "1"}


def cli(*args: str, env: dict[str, str], timeout: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run ``hf-summary ARGS`` in a fresh interpreter."""
    full_env = {**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "hf_summary", *args], env=full_env, capture_output=True, text=True, timeout=timeout
    )


def api(hub, user: str = "alice") -> HfApi:
    return HfApi(endpoint=hub.endpoint, token=hub.token(user))


def commit_titles(hub, repo_id: str) -> list[str]:
    return [commit.title for commit in api(hub).list_repo_commits(repo_id)]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def local_segments(logdir: Path) -> dict[str, str]:
    """Logdir-relative path -> sha256 of every event file on disk (the journal's directory excluded)."""
    return {
        path.relative_to(logdir).as_posix(): sha256_of(path)
        for path in sorted(logdir.rglob("*tfevents*"))
        if path.is_file() and ".hf_summary" not in path.relative_to(logdir).parts
    }


def bucket_files(hub, bucket_id: str, prefix: str | None = None) -> dict[str, tuple[int, object]]:
    """Path -> (size, upload time) of every file of the bucket (under ``prefix``): the upload times show
    whether anything was pushed again."""
    return {
        entry.path: (entry.size, entry.uploaded_at)
        for entry in api(hub).list_bucket_tree(bucket_id, prefix=prefix, recursive=True)
        if entry.type == "file"
    }


def assert_repo_matches_logdir(
    hub, repo_id: str, logdir: Path, dest: Path, *, folder: str | None = None, repo_type: str = "model"
) -> None:
    """The repo's (or bucket's) folder holds exactly the logdir's event files, byte for byte: no extra, none
    missing, no path twice."""
    folder = folder or f"tensorboard/{logdir.name}"
    client = api(hub)
    if repo_type == "bucket":
        remote = list(bucket_files(hub, repo_id, folder))
        client.download_bucket_files(repo_id, [(path, str(dest / path)) for path in remote])
        on_hub = {path[len(folder) + 1:]: sha256_of(dest / path) for path in remote}
        assert on_hub == local_segments(logdir)
        return
    remote = [
        entry.path
        for entry in client.list_repo_tree(repo_id, path_in_repo=folder, recursive=True)
        if getattr(entry, "size", None) is not None
    ]
    assert len(remote) == len(set(remote)), f"a path appears twice in the repo: {sorted(remote)}"
    on_hub = {}
    for path in remote:
        copy = client.hf_hub_download(repo_id, path, local_dir=dest)
        on_hub[path[len(folder) + 1:]] = sha256_of(Path(copy))
    assert on_hub == local_segments(logdir)


def loss_steps(logdir: Path) -> set[int]:
    return {key[2] for key in event_keys(logdir) if key[1] == "loss" and key[0] == ""}


def assert_journal_sound(logdir: Path) -> None:
    with Journal(logdir, create=False) as journal:
        assert journal.integrity_check() == "ok"
        assert not journal.pending_segments(), [row.path_in_repo for row in journal.pending_segments()]
        assert not journal.open_segments(), [row.path_in_repo for row in journal.open_segments()]


def dead_pid() -> int:
    """The pid of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_event_file(path: Path, first_step: int, steps: int) -> int:
    """An event file (TFRecord frames) with the ``loss`` scalar for ``steps`` steps; returns its size."""
    events = [Event(wall_time=time.time(), file_version="brain.Event:2")] + [
        Event(wall_time=time.time(), step=step, summary=scalar("loss", step * 0.5))
        for step in range(first_step, first_step + steps)
    ]
    data = b"".join(frame_record(event.SerializeToString()) for event in events)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return len(data)


def fake_dead_run(logdir: Path, *, endpoint: str, repo_id: str, sealed: int = 2, open_tail: bool = True,
                  steps: int = 20, writer_pid: int | None = None, repo_type: str = "model") -> list[Path]:
    """A logdir as a run that died before pushing leaves it, made without a trainer: ``sealed`` segments pending
    in the journal and, with ``open_tail``, one more still open, written by ``writer_pid`` (default: a process
    that is gone). Returns the segment files, in order."""
    settings = RunSettings(
        repo_id=repo_id, repo_type=repo_type, revision="main", path_in_repo=f"tensorboard/{logdir.name}",
        allow_patterns=["*.tfevents.*"], ignore_patterns=None, squash_history=False, commit_every_s=300.0,
        private=None, endpoint=endpoint,
    )
    writer_pid = dead_pid() if writer_pid is None else writer_pid
    files = []
    with Journal(logdir) as journal:
        journal.save_settings(settings)
        for n in range(sealed + int(open_tail)):
            name = segment_name(journal.next_sequence(), "testhost", run_id=journal.run_id())
            row = journal.add_open_segment("", name, f"{settings.path_in_repo}/{name}", writer_pid)
            size = write_event_file(logdir / name, n * steps, steps)
            if n < sealed:
                journal.mark_sealed(row, size, sha256_of(logdir / name))
            files.append(logdir / name)
    return files
