"""The uploader child: holds the journal's lease and pushes sealed segments, one commit per push.

Started by the writer (see ``_launcher``) as ``python -m hf_summary.uploader LOGDIR --parent-pid P
--parent-create-time T --grace-period G --reverse-fd FD`` in its own session. The first line on stdin carries
the token (JSON); later lines are requests (``push N``, ``preempt N``, ``close``); end of file, or the
parent's death seen through psutil (pid and create time), starts the final drain: seal what the trainer left
open, push everything, exit within ``--drain-timeout`` seconds.

Preemption: SIGTERM, SIGHUP and SIGINT never kill the uploader outright. The first one (or a ``preempt``
request from a trainer that got SIGTERM itself) starts an urgent final drain: ask the trainer to seal (over
the reverse channel), push everything pending at once, skip the card tag and squash, go on sealing and
pushing what the trainer still logs, and exit as soon as the trainer is gone and nothing is pending, or when
``--grace-period`` seconds have passed. A second signal ends the process at once. Whatever is left stays
in the journal, for the next uploader or ``hf-summary recover``; the journal's history records the
preemption and what the final push carried, for ``hf-summary status``.
"""

# ruff: noqa: E402  (stop signals are held before the imports, which take about a second)
from __future__ import annotations

from hf_summary import _early_signals

if __name__ == "__main__":
    _early_signals.hold()

import argparse
import contextlib
import json
import logging
import math
import os
import queue
import random
import shutil
import signal
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil

from hf_summary import compaction
from hf_summary._arguments import DEFAULT_GRACE_PERIOD_S
from hf_summary._faults import fault as _fault
from hf_summary.assets import AssetTracker
from hf_summary.hostshare import HostShare, member_journals, shared_pushes_enabled
from hf_summary.hub import (
    BUCKET,
    CommitResult,
    HubError,
    MissingRepoError,
    PathConflictError,
    PermanentHubError,
    RateLimitedError,
    open_client,
    prepare_uploader_process,
    use_timeouts,
)
from hf_summary.journal import Journal, JournalError, LeaseOwner, RunSettings, SegmentRow
from hf_summary.liveness import lease_owner_alive, process_alive
from hf_summary.overflow import new_record, overflow_bucket, park
from hf_summary.pacing import CommitPacer
from hf_summary.reconcile import JOURNAL_DIR, repo_path, seal_abandoned
from hf_summary.settle import settle
from hf_summary.status import parked_pushes

logger = logging.getLogger("hf_summary")

POLL_INTERVAL_S = 0.5
PREEMPTED_POLL_INTERVAL_S = 0.1
SEAL_REQUEST_INTERVAL_S = 0.5
FIRST_SEAL_WAIT_S = 1.0
HEARTBEAT_INTERVAL_S = 5.0
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 120.0
PREEMPTED_BACKOFF_CAP_S = 1.0
PERMANENT_RETRY_S = 300.0
JOURNAL_RETRY_S = 2.0
DEADLINE_GRACE_S = 2.0
LAST_WORDS_S = 0.5
WATCHDOG_MARGIN_S = 0.5
SHARE_LOCK_WAIT_S = 5.0  # another member's push holds the target's lock at most about this long, usually
PARK_TIME_S = 3.0  # what parking a final push in the overflow bucket needs of the grace period
_EOF = object()
_WAKE = object()



def _flush_logs() -> None:
    for handler in logger.handlers:
        with contextlib.suppress(Exception):
            handler.flush()


class Preemption:
    """The urgent final drain's state: started by the first stop signal or by the trainer's ``preempt``
    request, bounded by ``grace_s``. Signal-handler safe: it only sets fields and wakes the loop; a watchdog
    thread ends the process a little after the budget even when a push hangs."""

    def __init__(self, grace_s: float, wakeups: queue.Queue):
        self.grace_s = grace_s
        self.cause: str | None = None
        self.started_at: float | None = None  # monotonic
        self.started_wall: float | None = None
        self.recorded = False
        self.last_words: Callable[[], object] | None = None  # run (bounded) before the watchdog exits
        self._signals = 0
        self._wakeups = wakeups

    @property
    def active(self) -> bool:
        return self.started_at is not None

    @property
    def deadline(self) -> float | None:
        return None if self.started_at is None else self.started_at + self.grace_s

    def on_signal(self, signum: int, frame: object) -> None:
        self._signals += 1
        if self._signals > 1:
            logger.error("second %s: exiting now; what is pending stays in the journal for `hf-summary "
                         "recover`", signal.Signals(signum).name)
            _flush_logs()
            os._exit(1)
        self.start(signal.Signals(signum).name)

    def start(self, cause: str) -> None:
        if self.started_at is not None:
            return
        self.cause = cause
        self.started_at = time.monotonic()
        self.started_wall = time.time()
        # Said here, not by the loop: a push may keep the loop busy (the client retrying a Hub that is down).
        logger.warning("preempted (%s): final push within %.1f s", cause, self.grace_s)
        self._wakeups.put(_WAKE)
        threading.Thread(target=self._watchdog, name="preemption-deadline", daemon=True).start()

    def _watchdog(self) -> None:
        time.sleep(self.grace_s + WATCHDOG_MARGIN_S)  # the loop ends by itself at the deadline when it can
        logger.error("grace period of %.1f s ended during a push; exiting, what is pending stays in the "
                     "journal for `hf-summary recover`", self.grace_s)
        if self.last_words is not None:  # bounded: the journal may be locked by the push it interrupts
            words = threading.Thread(target=self.last_words, name="last-words", daemon=True)
            words.start()
            words.join(LAST_WORDS_S)
        _flush_logs()
        os._exit(1)


@dataclass
class _FinalPush:
    """What the pushes since the preemption carried, for the journal's history."""

    segments: int = 0
    bytes: int = 0
    commits: tuple[str, ...] = ()
    parked: int = 0


class Uploader:
    """Drains one journal into one repo. ``parent`` is the trainer to watch (None: nobody, drain and exit);
    ``reverse_fd`` is the pipe to its reverse channel (see ``_launcher``)."""

    def __init__(
        self,
        journal: Journal,
        settings: RunSettings,
        *,
        token: str | None,
        parent: tuple[int, float] | None,
        drain_timeout: float,
        wakeups: queue.Queue | None = None,
        closing: threading.Event | None = None,
        preemption: Preemption | None = None,
        reverse_fd: int | None = None,
    ):
        self.journal = journal
        self.settings = settings
        self._token = token
        self.client = open_client(
            repo_id=settings.repo_id,
            repo_type=settings.repo_type,
            revision=settings.revision,
            endpoint=settings.endpoint,
            token=token,
        )
        self.parent = parent
        self.drain_timeout = drain_timeout
        self.wakeups = wakeups if wakeups is not None else queue.Queue()
        self.preemption = preemption if preemption is not None else Preemption(DEFAULT_GRACE_PERIOD_S, self.wakeups)
        self.owner = LeaseOwner(os.getpid(), psutil.Process().create_time(), socket.gethostname())
        self._reverse_fd = reverse_fd
        if reverse_fd is not None:
            os.set_blocking(reverse_fd, False)
        self._closing = parent is None
        self._closing_deadline: float | None = None
        self._next_attempt = 0.0
        self._failures = 0
        self._permanent_error: str | None = None
        self._next_heartbeat = 0.0
        self._next_seal_request = 0.0
        self._requested = 0  # the newest request number read from the trainer
        self._answered = 0  # the newest one answered with "drained"
        self._final = _FinalPush()
        self._finished = False
        self._conflicts = journal.conflicts()
        self.assets = AssetTracker(journal.logdir, settings)
        self.preemption.last_words = lambda: self._finish(1)
        self.may_replace: set[str] = set()  # paths of our own committed files found damaged on the Hub
        self.pacer = CommitPacer(settings.commit_every_s)
        self._parked: set[int] = set()  # segment ids this process parked in the overflow bucket
        self._settle_due = settings.repo_type != BUCKET  # parked pushes of this run folder, moved in first
        self.share = HostShare(settings, self.owner, journal.logdir) if (
            parent is not None and settings.repo_type != BUCKET and shared_pushes_enabled()) else None
        if closing is not None and math.isfinite(drain_timeout):  # set by the pipe reader on "close" or EOF
            threading.Thread(target=self._watch_deadline, args=(closing,), name="deadline", daemon=True).start()

    # ---------------------------------------------------------------- lifecycle

    def run(self) -> int:
        """Take the lease (waiting while another live drainer holds it), drain until done; exit status."""
        while not self.journal.acquire_lease(self.owner, lease_owner_alive):
            self._wait(POLL_INTERVAL_S)
            if (self._closing or self.preemption.active) and not self._parent_alive():
                logger.info("another uploader holds the lease of %s and will drain it", self.journal.logdir)
                return 0
        if self.share is not None:
            try:
                self.share.join()
            except OSError as exc:
                logger.warning("cannot share pushes with this host's other uploaders (%s); pushing alone", exc)
                self.share = None
        try:
            return self.drain()
        finally:
            if self.share is not None:
                self.share.leave()
            with contextlib.suppress(OSError, sqlite3.Error):  # a dead holder's lease is taken over anyway
                self.journal.release_lease(self.owner)

    def drain(self) -> int:
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
                    return 1
                self._wait(JOURNAL_RETRY_S)

    def _drain(self) -> int:
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
            pending = self.pushable()
            if pending and time.monotonic() >= self._next_attempt:
                self.push(pending)
                continue
            if not pending:
                self._answer_drained(requested)
            outcome = self._outcome(pending)
            if outcome is not None:
                return outcome
            self._wait(self._poll_interval())

    def _outcome(self, pending: list[SegmentRow]) -> int | None:
        """The exit status once the drain is over, ``None`` while it goes on."""
        if not (self._closing or self.preemption.active):
            return None
        trainer_logging = self._parent_alive() and (self.preemption.active or self._parent_open_segments())
        if not pending and not trainer_logging:
            return self._finish(0)
        if self._permanent_error is not None and not trainer_logging:
            logger.error("giving up on %s: %s", self.journal.logdir, self._permanent_error)
            return self._finish(2)
        if time.monotonic() >= self._deadline():
            if pending:
                logger.error(
                    "drain deadline passed with %d segment(s) pending in %s; run `hf-summary recover %s`",
                    len(pending), self.journal.logdir, self.journal.logdir,
                )
                return self._finish(1)
            logger.info("grace period over; trainer %s still runs, and its next tick starts a new uploader",
                        self.parent)
            return self._finish(0)
        return None

    def _deadline(self) -> float | None:
        deadlines = [d for d in (self._closing_deadline, self.preemption.deadline) if d is not None]
        return min(deadlines, default=None)

    def _finish(self, status: int) -> int:
        """Record how a preempted drain ended (once: the loop and the watchdog may both get here)."""
        if self.preemption.active and not self._finished:
            self._finished = True
            self._record_preemption()  # the loop may never have got to it
            pending = self.pushable()
            last_commit = self.journal.history("commit", limit=1)
            self.journal.record_event(
                "final_push",
                f"final drain after {self.preemption.cause}: {self._final.segments} segment(s), "
                f"{self._final.bytes} bytes in {len(self._final.commits)} commit(s); {self._final.parked} parked "
                f"in the overflow bucket; {len(pending)} pending",
                segments=self._final.segments,
                parked=self._final.parked,
                bytes=self._final.bytes,
                commits=list(self._final.commits),
                pending=len(pending),
                last_commit=last_commit[0]["oid"] if last_commit else None,
            )
        return status

    def _poll_interval(self) -> float:
        if self.preemption.active:
            return PREEMPTED_POLL_INTERVAL_S
        return max(0.0, min(POLL_INTERVAL_S, self._next_attempt - time.monotonic())) or POLL_INTERVAL_S

    def _heartbeat_when_due(self) -> None:
        if time.monotonic() >= self._next_heartbeat:  # an fsynced write: not on every poll
            self.journal.heartbeat(self.owner)
            self._next_heartbeat = time.monotonic() + HEARTBEAT_INTERVAL_S

    def _watch_deadline(self, closing: threading.Event) -> None:
        """Watchdog thread. The loop checks the deadline between pushes, but a push can outlast it (it may have
        started before the close request; huggingface_hub retries some requests on its own; a connection can
        hang): end the process a little after the deadline regardless. What was not pushed stays pending in
        the journal for ``hf-summary recover``."""
        closing.wait()
        time.sleep(self.drain_timeout + DEADLINE_GRACE_S)
        logger.error("drain deadline passed during a push; giving up on %s. Run `hf-summary recover %s`",
                     self.journal.logdir, self.journal.logdir)
        _flush_logs()
        os._exit(1)

    def _wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for a message from the trainer (or a signal), then take all that came."""
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
        if message is _EOF or message == "close":
            self._closing = True
            return
        if not isinstance(message, str):
            return
        verb, _, number = message.partition(" ")
        if verb in ("push", "preempt") and number.isdigit():
            self._requested = max(self._requested, int(number))
        if verb == "preempt":
            self.preemption.start("SIGTERM to the trainer")

    # ---------------------------------------------------------------- the trainer

    def _parent_alive(self) -> bool:
        return self.parent is not None and process_alive(*self.parent)

    def _writer_alive(self, pid: int, create_time: float | None) -> bool:
        if self.parent is not None and pid == self.parent[0]:
            return self._parent_alive()
        return process_alive(pid, create_time)

    def _parent_open_segments(self) -> list[SegmentRow]:
        if self.parent is None or not self._parent_alive():
            return []
        return [row for row in self.journal.open_segments() if row.writer_pid == self.parent[0]]

    def _tell_trainer(self, line: str) -> None:
        if self._reverse_fd is None:
            return
        try:
            os.write(self._reverse_fd, (line + "\n").encode())
        except OSError:  # gone, or not reading: it has its own way out
            pass

    def _answer_drained(self, requested: int) -> None:
        if requested > self._answered:
            self._tell_trainer(f"drained {requested}")
            self._answered = requested

    def _keep_trainer_sealing(self) -> None:
        """While preempted: at once, record the preemption and get what the trainer logged so far sealed;
        then ask for a seal every ``SEAL_REQUEST_INTERVAL_S``, so that what it still logs (a checkpoint
        handler that keeps training) follows within the grace period."""
        if not self.preemption.recorded:
            self._record_preemption()
            self._next_attempt = 0.0  # no backoff now
            self._wait_for_first_seal()
        if time.monotonic() >= self._next_seal_request and self._parent_alive():
            self._tell_trainer("seal")
            self._next_seal_request = time.monotonic() + SEAL_REQUEST_INTERVAL_S

    def _record_preemption(self) -> None:
        if not self.preemption.recorded:
            self.preemption.recorded = True
            self.journal.record_event("preemption", f"preempted ({self.preemption.cause})",
                                      signal=self.preemption.cause)

    def _wait_for_first_seal(self) -> None:
        """Ask the trainer to seal and wait (up to ``FIRST_SEAL_WAIT_S``) until every segment it opened before
        the preemption is sealed, so that the first push carries all of it."""
        self._tell_trainer("seal")
        self._next_seal_request = time.monotonic() + SEAL_REQUEST_INTERVAL_S
        until = time.monotonic() + FIRST_SEAL_WAIT_S
        while time.monotonic() < until and any(
            row.created_at < self.preemption.started_wall for row in self._parent_open_segments()
        ):
            self._wait(PREEMPTED_POLL_INTERVAL_S / 2)

    # ---------------------------------------------------------------- one push

    def pushable(self) -> list[SegmentRow]:
        """The sealed segments to push now (those whose path on the Hub holds another run's file left out)."""
        return [row for row in self.journal.pending_segments()
                if row.id not in self._conflicts and row.id not in self._parked]

    def push(self, pending: list[SegmentRow]) -> bool:
        """One commit carrying every pending segment (and, when this host's uploaders share pushes to the
        target, those of the other members: see :mod:`hf_summary.hostshare`); returns whether the Hub took it."""
        if self.share is None:
            return self._push(pending, [])
        with self.share.pushing(timeout=SHARE_LOCK_WAIT_S) as held:
            if not held:
                return False
            others = self.share.members()
            age = self.share.last_commit_age()
            if others and not (self._closing or self.preemption.active) and age < self.settings.commit_every_s:
                self._next_attempt = time.monotonic() + self.settings.commit_every_s - age  # one commit per tick
                return False
            pending = self.pushable()  # another member's push may have carried ours
            with member_journals(others) as members:
                others = [(journal, rows) for journal, rows in members if rows]
                if not pending and not others:
                    return True
                pushed = self._push(pending, others)
            if pushed:
                self.share.note_commit()
            return pushed

    def _push(self, pending: list[SegmentRow], others: list[tuple[Journal, list[SegmentRow]]]) -> bool:
        _fault("after_claim")
        rows, files = [], []
        for row in pending:
            path = row.local_path(self.journal.logdir)
            if path.is_file() and not path.is_symlink():
                rows.append(row)
                files.append((path, row.path_in_repo))
            else:
                self.journal.record_failure([row.id], f"{path} is missing from disk", permanent=True)
                self.journal.drop_segment(row.id)
                logger.error("segment %s vanished from disk before it was pushed", path)
        if not rows and not others:
            return False
        if self._settle_due and not self.preemption.active and not self._settle_parked(rows):
            return False
        files += [(row.local_path(journal.logdir), row.path_in_repo) for journal, their in others for row in their]
        never_replace = frozenset(dest for _, dest in files) - self.may_replace
        pushed_assets = self.journal.get_value("assets", {})
        assets = self.assets.changed(pushed_assets, full=self._closing)  # a final drain looks everywhere
        for relative in assets:
            run, _, name = relative.rpartition("/")
            files.append((self.journal.logdir / relative, repo_path(self.settings, run, name)))
        size = sum(row.size or 0 for row in rows)
        try:
            # -- compaction rides in this commit (hf_summary/compaction.py): none in an urgent drain; a final
            # drain finishes interrupted merges but plans no new one
            ride = compaction.Ride() if self.preemption.active else compaction.prepare(
                self.journal, self.settings, self.client, {row.run for row in rows}, plan=not self._closing
            )
            _fault("during_upload")
            result = self._commit(
                files + ride.additions,
                f"hf-summary: {len(rows)} segment(s), {size} bytes"
                + (f", {len(ride.compaction_ids)} merge(s)" if ride.compaction_ids else "")
                + (f", and {sum(len(their) for _, their in others)} of {len(others)} other run(s) of this host"
                   if others else ""),
                never_replace,
                ride.deletions,
            )
        except PathConflictError as exc:
            self._on_conflict([row for row in rows if row.path_in_repo in exc.paths], exc)
            return False
        except HubError as exc:
            for journal, their in others:
                journal.record_failure([row.id for row in their], str(exc), permanent=isinstance(exc, PermanentHubError))
            self._on_failure(rows, exc, permanent=isinstance(exc, PermanentHubError))
            return False
        _fault("after_commit")
        for journal, their in others:
            journal.mark_committed([row.id for row in their], result.oid, result.url)
        if ride.compaction_ids:
            _fault("after_compaction_commit")
        self.journal.mark_committed([row.id for row in rows], result.oid, result.url, ride.compaction_ids)
        compaction.apply(self.journal)  # -- end of compaction
        if assets:
            self.journal.set_value("assets", {**pushed_assets, **assets})
        logger.info("pushed %d segment(s), %d bytes, in commit %s", len(rows), size, result.oid)
        self._failures = 0
        self._permanent_error = None
        self._next_attempt = time.monotonic() + self._paced()
        if self.preemption.active:  # the card tag and the squash wait for a later, unhurried push
            self._final.segments += len(rows)
            self._final.bytes += size
            self._final.commits += (result.oid,)
        else:
            self._after_commit()
        return True

    def _commit(
        self, files: list[tuple[Path, str]], message: str, never_replace: frozenset[str], deletions: list[str]
    ) -> CommitResult:
        """Commit; create the repo (or branch) only when the Hub says it is missing: the writer made it at
        start-up, and a push under preemption has no request to spare."""
        try:
            return self.client.commit_files(files, message, never_replace=never_replace, deletions=deletions)
        except MissingRepoError:
            self.client.ensure_repo(private=self.settings.private)
            return self.client.commit_files(files, message, never_replace=never_replace, deletions=deletions)

    def _after_commit(self) -> None:
        if self.settings.squash_history:
            _fault("during_squash")
            try:
                self.client.squash(f"Squash {self.settings.path_in_repo} history (hf-summary)")
                self.journal.record_event("squash", "history squashed")
            except HubError as exc:
                logger.warning("could not squash the history (will try after the next commit): %s", exc)
        if not self.journal.get_value("card_tagged", False):
            try:
                self.client.tag_card()
                self.journal.set_value("card_tagged", True)
            except HubError as exc:
                logger.warning("could not tag the repo card (will try after the next commit): %s", exc)

    def _on_conflict(self, rows: list[SegmentRow], exc: PathConflictError) -> None:
        """Segments whose path on the Hub holds another run's file: never pushed (the Hub's file stays), kept
        on disk and in the journal, and left out of later pushes so the rest of the run goes on."""
        self.journal.record_failure([row.id for row in rows], str(exc), permanent=True)
        self._conflicts.update(row.id for row in rows)
        self.journal.add_conflicts([row.id for row in rows])
        logger.error("not pushing %d segment(s) of %s: %s", len(rows), self.journal.logdir, exc)
        self._next_attempt = 0.0  # push the others now

    def _paced(self) -> float:
        """After an accepted commit: the wait before the next one (see :mod:`hf_summary.pacing`)."""
        was_bound = self.pacer.budget_bound
        gap = self.pacer.committed()
        if was_bound and not self.pacer.budget_bound:
            self.journal.record_event("budget", "the repo takes commits again: no more spacing", gap_s=0.0)
        return 0.0 if self.preemption.active else gap

    def _on_failure(self, rows: list[SegmentRow], exc: Exception, *, permanent: bool) -> None:
        if isinstance(exc, RateLimitedError) and (self.preemption.active or not self._closing):
            self._on_budget_spent(rows, exc)  # (a close() the trainer waits on retries as for other errors)
            return
        message = str(exc)
        self.journal.record_failure([row.id for row in rows], message, permanent=permanent)
        self._failures += 1
        if permanent:
            if message != self._permanent_error:
                logger.error(
                    "push to %s %r failed and retrying will not help until this is fixed: %s",
                    self.settings.repo_type, self.settings.repo_id, message,
                )
            self._permanent_error = message
            delay = PERMANENT_RETRY_S
        else:
            retry_after = getattr(exc, "retry_after", None)
            backoff = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (self._failures - 1))
            delay = retry_after if retry_after is not None else backoff * random.uniform(0.5, 1.0)
            logger.warning("push failed (attempt %d), retrying in %.1f s: %s", self._failures, delay, message)
        if self.preemption.active:  # no time to wait for a better moment
            delay = min(delay, PREEMPTED_BACKOFF_CAP_S)
        self._next_attempt = time.monotonic() + delay


    def _on_budget_spent(self, rows: list[SegmentRow], exc: RateLimitedError) -> None:
        """A commit refused for the repo's commit budget. Unhurried: space the commits (the segments wait and
        ride together in the next one). Preempted: wait for the Hub's hint if it falls within the grace period,
        else park the push in the overflow bucket, where no commit is needed."""
        if rows:
            self.journal.record_failure([row.id for row in rows], str(exc), permanent=False)
        if self.preemption.active:
            left = self.preemption.deadline - time.monotonic()
            if exc.retry_after is not None and exc.retry_after + PARK_TIME_S < left:
                self._next_attempt = time.monotonic() + exc.retry_after
            elif not self._park(rows, exc):
                self._next_attempt = time.monotonic() + PREEMPTED_BACKOFF_CAP_S
            return
        refusal = self.pacer.refused(exc.retry_after)
        self._next_attempt = time.monotonic() + refusal.delay_s
        logger.warning("the repo's commit budget is spent (%s); next try in %.0f s, commits spaced by %.0f s",
                       exc, refusal.delay_s, refusal.gap_s)
        if refusal.first:
            self.journal.record_event(
                "budget", f"the Hub refused a commit for the repo's commit budget; commits spaced by "
                f"{refusal.gap_s:.0f} s", gap_s=refusal.gap_s, retry_after=exc.retry_after,
            )

    def _park(self, rows: list[SegmentRow], exc: HubError) -> bool:
        """Put ``rows`` in the overflow bucket with the record a later settle needs; returns whether the bucket
        took them. They stay pending in the journal (a surviving logdir pushes them as usual; settle then finds
        them in the repo and only removes the bucket's copies) but this process pushes them no more."""
        bucket_id = overflow_bucket(self.settings.repo_id)
        bucket = open_client(repo_id=bucket_id, repo_type=BUCKET, endpoint=self.settings.endpoint, token=self._token)
        record = new_record(
            repo_id=self.settings.repo_id, repo_type=self.settings.repo_type, revision=self.settings.revision,
            folder=self.settings.path_in_repo, run_id=self.journal.run_id(), host=self.owner.host,
            reason=str(exc),
            files=[(row.local_path(self.journal.logdir), row.path_in_repo, row.size or 0, row.sha256 or "")
                   for row in rows],
        )
        try:
            park(bucket, record, [row.local_path(self.journal.logdir) for row in rows])
        except HubError as error:
            logger.error("could not park the final push in bucket %s either: %s", bucket_id, error)
            return False
        size = sum(row.size or 0 for row in rows)
        self._parked.update(row.id for row in rows)
        self._final.parked += len(rows)
        self.journal.record_event(
            "overflow", f"{len(rows)} segment(s) parked in bucket {bucket_id}: the repo's commit budget is spent",
            bucket=bucket_id, record=record.path, segments=len(rows), bytes=size,
        )
        logger.warning(
            "the repo's commit budget is spent: parked %d segment(s), %d bytes, in bucket %s (%s); `hf-summary "
            "settle %s` moves them into the repo once the budget allows", len(rows), size, bucket_id, record.path,
            self.settings.repo_id,
        )
        return True

    def _settle_parked(self, rows: list[SegmentRow]) -> bool:
        """Move this run folder's parked pushes (an earlier uploader's, on any machine) into the repo before
        pushing anything newer; returns whether the push may go on. When the bucket cannot be read, the push
        goes on unless this journal recorded parked pushes (those must land before a compaction could replace
        their files)."""
        bucket = open_client(repo_id=overflow_bucket(self.settings.repo_id), repo_type=BUCKET,
                             endpoint=self.settings.endpoint, token=self._token)
        try:
            report = settle(self.client, bucket, folder=self.settings.path_in_repo)
        except RateLimitedError as exc:
            self._on_budget_spent([], exc)
            return False
        except HubError as exc:
            if parked_pushes(self.journal) is None:
                return True
            self._on_failure(rows, exc, permanent=isinstance(exc, PermanentHubError))
            return False
        self._settle_due = False
        if report.records:
            self.journal.record_event(
                "settled", f"moved {report.settled_records} parked push(es) from bucket {bucket.repo_id} into "
                "the repo", bucket=bucket.repo_id, records=report.settled_records, commit=report.commit,
            )
            logger.info("moved %d parked push(es) from bucket %s into the repo", report.settled_records, bucket.repo_id)
        return True


def _read_wakeups(stream: IO[str], wakeups: queue.Queue, closing: threading.Event) -> None:
    for line in stream:
        wakeups.put(line.strip())
        if line.strip() == "close":
            closing.set()
    closing.set()
    wakeups.put(_EOF)


def _configure_logging(logdir: Path) -> None:
    log_path = logdir / JOURNAL_DIR / "uploader.log"
    handlers: list[logging.Handler] = []
    try:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError as exc:  # e.g. a full disk: log to stderr only, and push anyway
        print(f"hf-summary uploader: cannot open {log_path}: {exc}", file=sys.stderr)
    else:
        to_file = logging.StreamHandler(os.fdopen(fd, "a", encoding="utf-8"))
        to_file.setLevel(logging.INFO)
        handlers.append(to_file)
    to_stderr = logging.StreamHandler(sys.stderr)
    to_stderr.setLevel(logging.WARNING)
    handlers.append(to_stderr)
    formatter = logging.Formatter(f"%(asctime)s hf-summary uploader[{os.getpid()}] %(levelname)s %(message)s")
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hf_summary.uploader", description=__doc__)
    parser.add_argument("logdir", type=Path)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--parent-create-time", type=float, required=True)
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument("--grace-period", type=float, default=DEFAULT_GRACE_PERIOD_S)
    parser.add_argument("--reverse-fd", type=int, default=None)
    args = parser.parse_args(argv)
    _configure_logging(args.logdir)
    wakeups: queue.Queue = queue.Queue()
    preemption = Preemption(args.grace_period, wakeups)
    for signum in _early_signals.STOP_SIGNALS:  # from now on a stop signal means "push now", never "die"
        signal.signal(signum, preemption.on_signal)
    _early_signals.replay(preemption.on_signal)
    hello = json.loads(sys.stdin.readline() or "{}")
    closing = threading.Event()
    threading.Thread(target=_read_wakeups, args=(sys.stdin, wakeups, closing), daemon=True).start()
    use_timeouts()
    scratch = _scratch_dir(args.logdir)
    prepare_uploader_process(scratch)
    try:
        with Journal(args.logdir, create=False) as journal:
            settings = journal.load_settings()
            if settings is None:
                logger.error("journal of %s has no settings; nothing to push", args.logdir)
                return 2
            uploader = Uploader(
                journal,
                settings,
                token=hello.get("token"),
                parent=(args.parent_pid, args.parent_create_time),
                drain_timeout=args.drain_timeout,
                wakeups=wakeups,
                closing=closing,
                preemption=preemption,
                reverse_fd=args.reverse_fd,
            )
            return uploader.run()
    except JournalError as exc:
        logger.error("cannot use the journal of %s: %s", args.logdir, exc)
        return 2
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _scratch_dir(logdir: Path) -> Path:
    """``LOGDIR/.hf_summary/xet/<pid>``, this process's scratch for hf_xet (never uploaded: the journal's
    directory is not). Those of uploaders that are gone (a SIGKILL, the deadline's ``os._exit``) are removed
    first, so they never pile up."""
    root = logdir / JOURNAL_DIR / "xet"
    with contextlib.suppress(OSError):
        for entry in root.iterdir():
            if not (entry.name.isdigit() and process_alive(int(entry.name))):
                shutil.rmtree(entry, ignore_errors=True)
    mine = root / str(os.getpid())
    with contextlib.suppress(OSError):  # e.g. a full disk: hf_xet then says so on its own
        for folder in (root, mine):  # each level private, whatever the umask
            folder.mkdir(exist_ok=True, mode=0o700)
    return mine


if __name__ == "__main__":
    sys.exit(main())
