"""The uploader's drain loop: holds the journal's lease and pushes what the trainer seals, one commit per push
(through a `Pusher`), until the trainer is gone and nothing is pending.

The trainer's requests and its end (end of file on the pipe, or its death seen through psutil: pid and create
time) come through `Uploader.wakeups`; a final drain seals what the trainer left open, pushes everything
and ends within `drain_timeout` seconds. A preemption (`preemption`) makes it
urgent: ask the trainer to seal (over the reverse channel), push everything pending at once, skip the card
tag and squash, go on sealing and pushing what the trainer still logs, and end as soon as the trainer is gone
and nothing is pending, or when the grace period has passed. The journal's history records the preemption
and what the final push carried, for `hf-summary status`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass

import psutil

from hf_summary._arguments import DEFAULT_GRACE_PERIOD_S
from hf_summary.exit_status import ExitStatus
from hf_summary.journal import Journal, LeaseOwner, SegmentRow
from hf_summary.liveness import lease_owner_alive, process_alive
from hf_summary.reconcile import seal_abandoned
from hf_summary.uploader import protocol
from hf_summary.uploader.preemption import Preemption, flush_logs
from hf_summary.uploader.pusher import Pushed, Pusher

logger = logging.getLogger("hf_summary")

POLL_INTERVAL_S = 0.5
PREEMPTED_POLL_INTERVAL_S = 0.1
SEAL_REQUEST_INTERVAL_S = 0.5
FIRST_SEAL_WAIT_S = 1.0
HEARTBEAT_INTERVAL_S = 5.0
JOURNAL_RETRY_S = 2.0
DEADLINE_GRACE_S = 2.0
EOF = object()  # put on the queue when the trainer's pipe ends


def this_lease_owner() -> LeaseOwner:
    """This process, as the holder of a journal's lease."""
    return LeaseOwner(os.getpid(), psutil.Process().create_time(), socket.gethostname())


@dataclass
class _FinalPush:
    """What the pushes since the preemption carried, for the journal's history."""

    segments: int = 0
    bytes: int = 0
    commits: tuple[str, ...] = ()

    def add(self, pushed: Pushed) -> None:
        self.segments += pushed.segments
        self.bytes += pushed.bytes
        self.commits += (pushed.oid,)


class Uploader:
    """Drains one journal through `pusher`. `parent` is the trainer to watch (None: nobody, drain and
    exit); `owner` is who holds the lease (default: this process); `reverse_fd` is the pipe to the
    trainer's reverse channel (see `protocol`)."""

    def __init__(
        self,
        pusher: Pusher,
        *,
        parent: tuple[int, float] | None,
        drain_timeout: float,
        owner: LeaseOwner | None = None,
        wakeups: queue.Queue | None = None,
        closing: threading.Event | None = None,
        preemption: Preemption | None = None,
        reverse_fd: int | None = None,
    ):
        self.pusher = pusher
        self.journal: Journal = pusher.journal
        self.parent = parent
        self.drain_timeout = drain_timeout
        self.wakeups = wakeups if wakeups is not None else queue.Queue()
        self.preemption = preemption if preemption is not None else Preemption(DEFAULT_GRACE_PERIOD_S, self.wakeups)
        self.owner = owner if owner is not None else this_lease_owner()
        self._reverse_fd = reverse_fd
        if reverse_fd is not None:
            os.set_blocking(reverse_fd, False)
        self._closing = parent is None
        self._closing_deadline: float | None = None
        self._next_heartbeat = 0.0
        self._next_seal_request = 0.0
        self._requested = 0  # the newest request number read from the trainer
        self._answered = 0  # the newest one answered with "drained"
        self._assets_seen = 0  # the newest request after which the changed assets were pushed
        self._assets_seen_final = False  # whether every asset was looked at (listing all) since closing
        self._final = _FinalPush()
        self._finished = False
        self.preemption.last_words = lambda: self._finish(ExitStatus.INCOMPLETE)
        if closing is not None and math.isfinite(drain_timeout):  # set by the pipe reader on "close" or EOF
            threading.Thread(target=self._watch_deadline, args=(closing,), name="deadline", daemon=True).start()

    # ---------------------------------------------------------------- lifecycle

    def run(self) -> ExitStatus:
        """Take the lease (waiting while another live drainer holds it), drain until done; exit status.

        Several writers may share one logdir (nested or concurrent in one process, or a train and an eval
        process): the lease holder pushes every writer's segments, so an uploader told to close that waits
        for the lease is done as soon as none of its trainer's sealed segments is left to push."""
        while not self.journal.acquire_lease(self.owner, lease_owner_alive):
            self._wait(POLL_INTERVAL_S)
            if (self._closing or self.preemption.active) and (
                not self._parent_alive() or (self._closing and not self._parent_pending())
            ):
                logger.info("another uploader holds the lease of %s and will drain it", self.journal.logdir)
                return ExitStatus.OK
        try:
            return self.drain()
        finally:
            with contextlib.suppress(OSError, sqlite3.Error):  # a dead holder's lease is taken over anyway
                self.journal.release_lease(self.owner)

    def drain(self) -> ExitStatus:
        """Push until nothing is pending or the drain deadline passes; the caller holds the lease. Exit status.

        A journal that cannot be written for a while (disk full, I/O error, a lock held past the busy timeout)
        is retried, not fatal: the segments are safe on disk meanwhile."""
        while True:
            try:
                return self._drain()
            except (OSError, sqlite3.OperationalError) as exc:
                logger.warning("cannot use the journal of %s (%s); retrying in %.0f s",
                               self.journal.logdir, exc, JOURNAL_RETRY_S)
                if self._closing and self._closing_deadline is None:
                    self._closing_deadline = time.monotonic() + self.drain_timeout
                if (deadline := self._deadline()) is not None and time.monotonic() >= deadline:
                    logger.error("drain deadline passed; run `hf-summary recover %s`", self.journal.logdir)
                    return ExitStatus.INCOMPLETE
                self._wait(JOURNAL_RETRY_S)

    def _drain(self) -> ExitStatus:
        seal_abandoned(self.journal, self._writer_alive)
        while True:
            self._heartbeat_when_due()
            if not self._closing and not self._parent_alive():
                self._closing = True
            if self._closing:
                if self._closing_deadline is None:  # once, however the end was told (pipe, psutil, "close")
                    logger.info("final drain of %s (trainer %s %s)", self.journal.logdir, self.parent,
                                "still running" if self._parent_alive() else "is gone")
                    self._closing_deadline = time.monotonic() + self.drain_timeout
                seal_abandoned(self.journal, self._writer_alive)
            if self.preemption.active:
                self._keep_trainer_sealing()
            requested = self._requested  # read before the query, so that "drained" covers it
            pending = self.pusher.pushable()
            if pending and self.pusher.due():
                self._push(pending, requested)
                continue
            assets_due = not pending and self._assets_due(requested)
            if assets_due and self.pusher.due():
                self._push_assets(requested)
                continue
            if not pending and not assets_due:
                self._answer_drained(requested)
            outcome = self._outcome(pending, assets_due)
            if outcome is not None:
                return outcome
            self._wait(self._poll_interval())

    def _assets_due(self, requested: int) -> bool:
        """Whether to look for changed assets though no segment is pending: a push was asked for since the last
        look (an asset may be all that changed in a tick), or the final drain has not looked at all of them."""
        return requested > self._assets_seen or (self._closing and not self._assets_seen_final)

    def _outcome(self, pending: list[SegmentRow], assets_due: bool) -> ExitStatus | None:
        """The exit status once the drain is over, `None` while it goes on."""
        if not (self._closing or self.preemption.active):
            return None
        # Preempted, the trainer may still log (a checkpoint handler): keep taking its seals until the deadline.
        # Told to close, its writer sealed all it wrote: open segments of the same process are another writer's
        # on this logdir, whose own uploader takes the lease once this one is gone.
        trainer_logging = self.preemption.active and self._parent_alive()
        if not pending and not assets_due and not trainer_logging:
            return self._finish(ExitStatus.OK)
        if self.pusher.permanent_error is not None and not trainer_logging:
            logger.error("giving up on %s: %s", self.journal.logdir, self.pusher.permanent_error)
            return self._finish(ExitStatus.FAILED)
        if time.monotonic() >= self._deadline():
            if pending:
                logger.error(
                    "drain deadline passed with %d segment(s) pending in %s; run `hf-summary recover %s`",
                    len(pending), self.journal.logdir, self.journal.logdir,
                )
                return self._finish(ExitStatus.INCOMPLETE)
            if assets_due:
                logger.error("drain deadline passed before the changed files of %s other than event files were "
                             "pushed; the next push carries them", self.journal.logdir)
                return self._finish(ExitStatus.INCOMPLETE)
            logger.info("grace period over; trainer %s still runs, and its next tick starts a new uploader",
                        self.parent)
            return self._finish(ExitStatus.OK)
        return None

    def _deadline(self) -> float | None:
        deadlines = [d for d in (self._closing_deadline, self.preemption.deadline) if d is not None]
        return min(deadlines, default=None)

    def _finish(self, status: ExitStatus) -> ExitStatus:
        """Record how a preempted drain ended (once: the loop and the watchdog may both get here)."""
        if self.preemption.active and not self._finished:
            self._finished = True
            self._record_preemption()  # the loop may never have got to it
            pending = self.pusher.pushable()
            last_commit = self.journal.history("commit", limit=1)
            self.journal.record_event(
                "final_push",
                f"final drain after {self.preemption.cause}: {self._final.segments} segment(s), "
                f"{self._final.bytes} bytes in {len(self._final.commits)} commit(s); "
                f"{self.pusher.parked_segments} parked in the overflow bucket; {len(pending)} pending",
                segments=self._final.segments,
                parked=self.pusher.parked_segments,
                bytes=self._final.bytes,
                commits=list(self._final.commits),
                pending=len(pending),
                last_commit=last_commit[0]["oid"] if last_commit else None,
            )
        return status

    def _poll_interval(self) -> float:
        if self.preemption.active:
            return PREEMPTED_POLL_INTERVAL_S
        return max(0.0, min(POLL_INTERVAL_S, self.pusher.next_attempt - time.monotonic())) or POLL_INTERVAL_S

    def _heartbeat_when_due(self) -> None:
        if time.monotonic() >= self._next_heartbeat:  # an fsynced write: not on every poll
            self.journal.heartbeat(self.owner)
            self._next_heartbeat = time.monotonic() + HEARTBEAT_INTERVAL_S

    def _watch_deadline(self, closing: threading.Event) -> None:
        """Watchdog thread. The loop checks the deadline between pushes, but a push can outlast it (it may have
        started before the close request; huggingface_hub retries some requests on its own; a connection can
        hang): end the process a little after the deadline regardless. What was not pushed stays pending in
        the journal for `hf-summary recover`."""
        closing.wait()
        time.sleep(self.drain_timeout + DEADLINE_GRACE_S)
        logger.error("drain deadline passed during a push; giving up on %s. Run `hf-summary recover %s`",
                     self.journal.logdir, self.journal.logdir)
        flush_logs()
        os._exit(1)

    def _wait(self, timeout: float) -> None:
        """Wait up to `timeout` s for a message from the trainer (or a signal), then take all that came."""
        try:
            message = self.wakeups.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            self._take(message)
            try:
                message = self.wakeups.get_nowait()
            except queue.Empty:
                return

    def _take(self, message: object) -> None:
        """One item of `wakeups`: a line from the trainer, `EOF`, or a wake-up."""
        if message is EOF:
            self._closing = True
            return
        if not isinstance(message, str):
            return
        word, number = protocol.decode(message)
        if word == protocol.CLOSE:
            self._closing = True
        if word in (protocol.PUSH, protocol.PREEMPT) and number is not None:
            self._requested = max(self._requested, number)
        if word == protocol.PREEMPT:
            self.preemption.start("SIGTERM to the trainer")

    # ---------------------------------------------------------------- the trainer

    def _parent_alive(self) -> bool:
        return self.parent is not None and process_alive(*self.parent)

    def _writer_alive(self, pid: int, create_time: float | None) -> bool:
        if self.parent is not None and pid == self.parent[0]:
            return self._parent_alive()
        return process_alive(pid, create_time)

    def _parent_pending(self) -> bool:
        """Whether a segment its trainer sealed is still to be pushed."""
        return self.parent is not None and any(
            row.writer_pid == self.parent[0] for row in self.journal.pending_segments()
        )

    def _parent_open_segments(self) -> list[SegmentRow]:
        if self.parent is None or not self._parent_alive():
            return []
        return [row for row in self.journal.open_segments() if row.writer_pid == self.parent[0]]

    def _tell_trainer(self, word: str, number: int | None = None) -> None:
        if self._reverse_fd is None:
            return
        try:
            os.write(self._reverse_fd, protocol.encode(word, number))
        except OSError:  # gone, or not reading: it has its own way out
            pass

    def _answer_drained(self, requested: int) -> None:
        if requested > self._answered:
            self._tell_trainer(protocol.DRAINED, requested)
            self._answered = requested

    def _keep_trainer_sealing(self) -> None:
        """While preempted: at once, record the preemption and get what the trainer logged so far sealed;
        then ask for a seal every `SEAL_REQUEST_INTERVAL_S`, so that what it still logs (a checkpoint
        handler that keeps training) follows within the grace period."""
        if not self.preemption.recorded:
            self._record_preemption()
            self.pusher.retry_now()  # no backoff now
            self._wait_for_first_seal()
        if time.monotonic() >= self._next_seal_request and self._parent_alive():
            self._tell_trainer(protocol.SEAL)
            self._next_seal_request = time.monotonic() + SEAL_REQUEST_INTERVAL_S

    def _record_preemption(self) -> None:
        if not self.preemption.recorded:
            self.preemption.recorded = True
            self.journal.record_event("preemption", f"preempted ({self.preemption.cause})",
                                      signal=self.preemption.cause)

    def _wait_for_first_seal(self) -> None:
        """Ask the trainer to seal and wait (up to `FIRST_SEAL_WAIT_S`) until every segment it opened before
        the preemption is sealed, so that the first push carries all of it."""
        self._tell_trainer(protocol.SEAL)
        self._next_seal_request = time.monotonic() + SEAL_REQUEST_INTERVAL_S
        until = time.monotonic() + FIRST_SEAL_WAIT_S
        while time.monotonic() < until and any(
            row.created_at < self.preemption.started_wall for row in self._parent_open_segments()
        ):
            self._wait(PREEMPTED_POLL_INTERVAL_S / 2)

    def _push(self, pending: list[SegmentRow], requested: int) -> None:
        final = self._closing
        pushed = self.pusher.push(pending, urgent=self.preemption.active, final=final,
                                  deadline=self.preemption.deadline)
        if pushed is not None:
            self._assets_pushed(requested, final)  # a push carries the assets that changed
            if self.preemption.active:
                self._final.add(pushed)

    def _push_assets(self, requested: int) -> None:
        final = self._closing
        if self.pusher.push_assets(urgent=self.preemption.active, final=final, deadline=self.preemption.deadline):
            self._assets_pushed(requested, final)

    def _assets_pushed(self, requested: int, final: bool) -> None:
        self._assets_seen = max(self._assets_seen, requested)
        self._assets_seen_final = self._assets_seen_final or final
