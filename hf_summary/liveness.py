"""Who writes a logdir and whether they still live: process checks, and the writers' records in the journal.

Each [`HFSummaryWriter`][hf_summary.HFSummaryWriter] keeps a record in its journal's flags, under
`writer:<host>:<pid>:<create time>`: its host, pid and create time, whether it runs offline, when it started,
a heartbeat refreshed every `HEARTBEAT_INTERVAL_S` by a daemon thread (`beats`, a counter, and the
writer's own time of it), and when it closed (`close()` or interpreter exit). The rule that tells whether the
writer of an open segment is alive:

- recorded on this host, or not recorded at all (a writer of an older hf-summary): the process with that pid
  and create time runs (psutil);
- recorded on another host (a shared filesystem seen from a login node, say): it has not closed and its
  heartbeat counter was seen to change less than `STALE_AFTER_S` ago, by this host's clock
  (`HeartbeatWatch`): the two hosts' clocks never meet, so they need not agree. A counter this host
  never saw before counts as just changed. Where the writer's host is known to be gone, the caller says so
  (`recover --take-over`): its writers count as dead at once, and are recorded as lost
  (`record_foreign_writers_lost`) for every later look.

Only a dead writer's open segments may be sealed by someone else (`hf_summary.reconcile.seal_abandoned`).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import psutil

from hf_summary.journal import JOURNAL_DIR, Journal, JournalError, LeaseOwner

logger = logging.getLogger("hf_summary")

HEARTBEAT_INTERVAL_S = 10.0
STALE_AFTER_S = 300.0
_KEY_PREFIX = "writer:"

WriterAlive = Callable[[int, float | None], bool]
HOSTS_DIR = "hosts"  # LOGDIR/.hf_summary/hosts/<host>.json: what <host> saw of other hosts' heartbeats


def process_alive(pid: int, create_time: float | None = None) -> bool:
    """Whether `pid` runs on this host, and is the same process (same create time) when `create_time` is
    given."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(process.create_time() - create_time) < 1e-3
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def lease_owner_alive(owner: LeaseOwner) -> bool:
    """A lease holder on another host cannot be checked from here: it counts as alive."""
    return owner.host != socket.gethostname() or process_alive(owner.pid, owner.create_time)


@dataclass(frozen=True)
class WriterRecord:
    """One writer process of a logdir, as recorded in its journal."""

    host: str
    pid: int
    create_time: float
    offline: bool
    started_at: float
    heartbeat_at: float
    closed_at: float | None = None
    beats: int = 0  # heartbeats so far: another host watches it change, on its own clock
    lost_at: float | None = None  # when a host that took the run over recorded this writer's host as gone

    @property
    def key(self) -> str:
        return f"{_KEY_PREFIX}{self.host}:{self.pid}:{self.create_time!r}"

    def alive(self, local_alive: WriterAlive = process_alive, stalled_for: float = 0.0) -> bool:
        """The liveness rule of the module docstring; `local_alive` checks a process of this host,
        `stalled_for` is how long (this host's clock) the heartbeat counter of a writer of another host has
        been seen not to change (see `HeartbeatWatch`)."""
        if self.host == socket.gethostname():
            return local_alive(self.pid, self.create_time)
        return self.may_beat and stalled_for < STALE_AFTER_S

    @property
    def may_beat(self) -> bool:
        """Whether its heartbeat counter may still move: neither closed nor recorded as lost."""
        return self.closed_at is None and self.lost_at is None

    def wrote(self, pid: int, create_time: float | None) -> bool:
        """Whether this is the process that recorded a segment with `pid` and `create_time`."""
        return pid == self.pid and (create_time is None or abs(create_time - self.create_time) < 1e-3)


def save_record(journal: Journal, record: WriterRecord) -> None:
    """Store (replace) a writer's record."""
    journal.set_value(record.key, asdict(record))


def writer_records(journal: Journal) -> list[WriterRecord]:
    """Every writer recorded in the journal, oldest start first."""
    known = {f.name for f in fields(WriterRecord)}  # a newer hf-summary may record more
    records = [
        WriterRecord(**{k: v for k, v in value.items() if k in known}) for value in journal.values(_KEY_PREFIX).values()
    ]
    return sorted(records, key=lambda record: record.started_at)


def record_foreign_writers_lost(journal: Journal) -> list[WriterRecord]:
    """Record every writer of another host that has not closed as lost: its machine is known to be gone (the
    caller took the run over). A writer that is in fact alive records itself again at its next heartbeat."""
    here, now = socket.gethostname(), time.time()
    lost = [replace(record, lost_at=now) for record in writer_records(journal)
            if record.host != here and record.closed_at is None and record.lost_at is None]
    for record in lost:
        save_record(journal, record)
    return lost


class HeartbeatWatch:
    """What this host saw of the heartbeat counters of other hosts' writers of one logdir, kept in
    `LOGDIR/.hf_summary/hosts/<this host>.json` (only this host writes it): per writer, the counter last seen
    and when (this host's clock) it was first seen at that value. `keep=False` reads it but never writes
    it (`status` changes nothing)."""

    def __init__(self, logdir: str | os.PathLike[str], *, keep: bool = True):
        self.path = Path(logdir) / JOURNAL_DIR / HOSTS_DIR / f"{socket.gethostname()}.json"
        self._keep = keep
        self._observations: dict[str, list] | None = None  # read at the first look: most runs' writers closed

    @property
    def _seen(self) -> dict[str, list]:
        if self._observations is None:
            try:
                self._observations = json.loads(self.path.read_text())
            except (OSError, ValueError):
                self._observations = {}
        return self._observations

    def stalled_for(self, record: WriterRecord) -> float:
        """Seconds, by this host's clock, since `record`'s counter was first seen at its current value (0 when
        it changed, or was never seen before)."""
        now = time.time()
        beats, since = self._seen.get(record.key, (None, now))
        if beats != record.beats:
            self._seen[record.key] = [record.beats, now]
            self._save()
            return 0.0
        return max(0.0, now - since)

    def alive(self, record: WriterRecord, local_alive: WriterAlive = process_alive) -> bool:
        """`WriterRecord.alive`, with the counter of a writer of another host looked at now."""
        beating_elsewhere = record.host != socket.gethostname() and record.may_beat
        return record.alive(local_alive, self.stalled_for(record) if beating_elsewhere else 0.0)

    def _save(self) -> None:
        if not self._keep:
            return
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(json.dumps(self._seen))
            os.replace(temporary, self.path)
        except OSError as exc:  # a read-only logdir: the next look starts the count again
            logger.debug("could not keep heartbeat observations in %s: %s", self.path, exc)


def host_aware(journal: Journal, local_alive: WriterAlive, *, others_gone: bool = False) -> WriterAlive:
    """A `(pid, create_time) -> alive` check applying the module's rule to the writers recorded now;
    `local_alive` judges processes of this host (and writers without a record); `others_gone`: the
    writers of other hosts are known to be gone (their machines are)."""
    records = writer_records(journal)
    watch = HeartbeatWatch(journal.logdir)

    def record_alive(record: WriterRecord) -> bool:
        if others_gone and record.host != socket.gethostname():
            return False
        return watch.alive(record, local_alive)

    def alive(pid: int, create_time: float | None) -> bool:
        matching = [record for record in records if record.wrote(pid, create_time)]
        if not matching:
            return local_alive(pid, create_time)
        return any(record_alive(record) for record in matching)

    return alive


class WriterPresence:
    """A writer's record in its journal, with a heartbeat thread while the writer is open."""

    def __init__(self, *, offline: bool):
        me = psutil.Process()
        now = time.time()
        self._journal: Journal | None = None
        self._record = WriterRecord(socket.gethostname(), me.pid, me.create_time(), offline, now, now)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def announce(self, journal: Journal) -> None:
        """Record the writer as open in `journal` at once, before its other start-up writes: another host that
        sees the journal then knows it has a live writer (`hf_summary.crosshost`). `start` follows."""
        self._journal = journal
        self._record = replace(self._record, heartbeat_at=time.time(), closed_at=None)
        save_record(journal, self._record)

    def start(self, journal: Journal) -> None:
        """Record the writer as open in `journal` (the writer's current one) and start heartbeating."""
        self.announce(journal)
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="hf-summary-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop heartbeating and record the writer as closed (nothing to do if it never started)."""
        if self._journal is None:
            return
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None
        self._record = replace(self._record, closed_at=time.time())
        self._save()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_INTERVAL_S):
            self._record = replace(self._record, heartbeat_at=time.time(), beats=self._record.beats + 1)
            self._save()

    def _save(self) -> None:
        try:
            save_record(self._journal, self._record)
        except (OSError, sqlite3.Error, JournalError) as exc:  # e.g. a full disk: the next beat retries
            logger.debug("could not record the writer's heartbeat in %s: %s", self._journal, exc)
