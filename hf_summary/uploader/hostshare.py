"""Shared pushes: the uploaders of one host that push to the same repo and branch make one commit per tick
between them, instead of one each.

How they find each other: a *rendezvous* folder on the host's own disk (`HF_SUMMARY_RUNTIME_DIR`, else
`$XDG_RUNTIME_DIR/hf-summary`, else `/tmp/hf-summary-<uid>`; never the logdir, which may be on a shared
filesystem), one sub-folder per host name and per target (a hash of endpoint, repo type, repo id and branch).
Each uploader registers there (a file named by its pid and create time, holding its logdir) while it runs.

Who pushes: whoever holds the folder's `flock` for the time of one push. A member whose tick comes takes the
lock, and unless the last shared commit is younger than its tick (then it waits for the next), commits its own
sealed segments and those of every live member whose journal lease it holds, in one commit, marks them
committed in each journal, and notes the time of the shared commit. Each journal keeps its own lease, its own
uploader and its own trainer's pipes: per-logdir guarantees (`recover`, `status`, preemption, a trainer's
crash) are those of a lone writer; a member whose journal is pushed by another simply finds nothing pending.

When the pushing uploader dies, the kernel releases its lock; the next member to tick takes it. Nothing was
in flight but the commit: its segments are still sealed in their journals, and the next push carries them
again (pushing a file twice is a no-op). A member that is gone (its registration names a dead process) is
left out, and its registration removed; its journal waits for its next uploader or `recover`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hf_summary.journal import Journal, JournalError, LeaseOwner, RunSettings, SegmentRow
from hf_summary.liveness import process_alive

RUNTIME_DIR_ENV = "HF_SUMMARY_RUNTIME_DIR"
SHARED_PUSHES_ENV = "HF_SUMMARY_SHARED_PUSHES"
LOCK_POLL_S = 0.05
_LAST_COMMIT = "last-commit"
_LOCK = "lock"


def shared_pushes_enabled() -> bool:
    """Whether uploaders share pushes (`HF_SUMMARY_SHARED_PUSHES`, on unless `0`/`false`/`no`/`off`)."""
    return os.environ.get(SHARED_PUSHES_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def rendezvous_root() -> Path:
    named = os.environ.get(RUNTIME_DIR_ENV) or (
        os.path.join(os.environ["XDG_RUNTIME_DIR"], "hf-summary") if os.environ.get("XDG_RUNTIME_DIR") else None
    )
    return Path(named) if named else Path("/tmp", f"hf-summary-{os.getuid()}")


@dataclass
class Member:
    """Another uploader of the same host and target, whose sealed segments a push may carry."""

    logdir: Path
    owner: LeaseOwner


class HostShare:
    """One uploader's membership of its host's rendezvous for its target."""

    def __init__(self, settings: RunSettings, owner: LeaseOwner, logdir: Path):
        target = "\n".join([settings.endpoint or "", settings.repo_type, settings.repo_id, settings.revision])
        self.folder = rendezvous_root() / _safe(socket.gethostname()) / hashlib.sha256(target.encode()).hexdigest()[:24]
        self.owner = owner
        self.logdir = logdir
        self._registration = self.folder / f"{owner.pid}-{owner.create_time!r}.member"
        self._lock_fd: int | None = None

    def join(self) -> None:
        """Register (folders private to the user: they name logdirs)."""
        for folder in (self.folder.parent.parent, self.folder.parent, self.folder):
            folder.mkdir(mode=0o700, exist_ok=True)
        temporary = self._registration.with_suffix(".tmp")
        temporary.write_text(json.dumps({"logdir": str(self.logdir), "pid": self.owner.pid,
                                         "create_time": self.owner.create_time}))
        os.replace(temporary, self._registration)

    def leave(self) -> None:
        with contextlib.suppress(OSError):
            self._registration.unlink()

    @contextlib.contextmanager
    def pushing(self, timeout: float) -> Iterator[bool]:
        """Hold the target's lock for one push; yields whether it was had within `timeout` seconds."""
        fd = os.open(self.folder / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(LOCK_POLL_S)
            yield True
        finally:
            os.close(fd)  # releases the lock

    def last_commit_age(self) -> float:
        """Seconds since the last shared commit (infinite when there was none)."""
        try:
            return max(0.0, time.time() - (self.folder / _LAST_COMMIT).stat().st_mtime)
        except OSError:
            return float("inf")

    def note_commit(self) -> None:
        (self.folder / _LAST_COMMIT).touch()

    def members(self) -> list[Member]:
        """The other live members (registrations of dead processes are removed)."""
        found = []
        for path in self.folder.glob("*.member"):
            if path == self._registration:
                continue
            try:
                data = json.loads(path.read_text())
                owner = LeaseOwner(int(data["pid"]), float(data["create_time"]), self.owner.host)
                logdir = Path(data["logdir"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if process_alive(owner.pid, owner.create_time):
                found.append(Member(logdir, owner))
            else:
                with contextlib.suppress(OSError):
                    path.unlink()
        return found


@contextlib.contextmanager
def member_journals(members: list[Member]) -> Iterator[list[tuple[Journal, list[SegmentRow]]]]:
    """Each member's journal (only those whose lease the member holds: a journal is pushed only on behalf of its
    live drainer) with its sealed segments ready to push; closed on the way out."""
    opened: list[tuple[Journal, list[SegmentRow]]] = []
    try:
        for member in members:
            try:
                journal = Journal(member.logdir, create=False)
            except (OSError, sqlite3.Error, JournalError):
                continue
            try:
                lease = journal.lease_owner()
                if lease is None or lease[0] != member.owner:
                    journal.close()
                    continue
                conflicts = journal.conflicts()
                rows = [row for row in journal.pending_segments() if row.id not in conflicts]
                rows = [row for row in rows if row.local_path(member.logdir).is_file()]
            except (OSError, sqlite3.Error, JournalError):
                journal.close()
                continue
            opened.append((journal, rows))
        yield opened
    finally:
        for journal, _ in opened:
            journal.close()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "localhost"
