"""Held events: while the logdir's filesystem refuses writes (full, over quota, I/O errors, removed), `_write`
holds the events in memory, in order; these write them out once it takes them again, keep the journal's record
of the disk episode current, and give up on the way out."""

from __future__ import annotations

import logging
import sqlite3
import threading

from hf_summary.backlog import DISK_EPISODE_KEY, Backlog, Episode, is_storage_error
from hf_summary.journal import Journal

logger = logging.getLogger("hf_summary")

_HELD_CHUNK_BYTES = 1 << 20  # written out per turn of the writer's lock, so that add_* never waits long


class HeldEvents:
    """The held events' backlog and its disk episodes, mixed into `HFSummaryWriter`; events are written out
    through `SegmentRolling`'s `_write_now`, under its `_lock`."""

    _lock: threading.RLock
    _journal: Journal | None

    def _init_held(self, limit_bytes: int) -> None:
        # Events the logdir's filesystem refused, in order; while it holds any (`_holding`), add_* only appends.
        self._backlog = Backlog(limit_bytes)
        self._holding = False
        self._episode_recorded = False  # the current episode's start is in the journal's history

    def _write_out_held(self, lock_timeout: float = -1) -> None:
        """Write the held events out, oldest first, a chunk per turn of the lock; end the episode once none is
        left, and keep the journal's record of it current. Stops at the first refused write (retried later)."""
        if not self._holding:
            return
        refused: BaseException | None = None
        while refused is None:
            if not self._lock.acquire(timeout=lock_timeout):
                return
            try:
                refused = self._write_out_chunk()
                if refused is None and not self._backlog:
                    self._holding = False
                    episode = self._backlog.end()
                    break
            finally:
                self._lock.release()
        if refused is not None:
            self._record_episode(self._backlog.episode, ended=False)
            return
        logger.warning("%s can be written again: %s", self.logdir, episode.describe())
        self._record_episode(episode, ended=True)

    def _write_out_chunk(self) -> BaseException | None:
        """Under the lock: up to `_HELD_CHUNK_BYTES` of held events; the error that stopped it, if any."""
        written = 0
        while self._backlog and written < _HELD_CHUNK_BYTES:
            run, data = self._backlog.peek()
            try:
                self._write_now(run, data)
            except (OSError, sqlite3.OperationalError) as exc:
                if not is_storage_error(exc):
                    logger.exception("could not write a held event of %s", self.logdir)
                return exc
            self._backlog.pop()
            written += len(data)
        return None

    def _record_episode(self, episode: Episode | None, *, ended: bool) -> None:
        """Keep the journal's record of a disk episode current (for `status`); the history gets its start and
        its end. The journal may sit on the full disk too: a failure here is retried at the next turn."""
        if episode is None or self._journal is None:
            return
        try:
            self._journal.set_value(DISK_EPISODE_KEY, episode.as_dict())
            if not self._episode_recorded:
                self._journal.record_event("disk", f"{self.logdir}: writes refused ({episode.cause})",
                                           **episode.as_dict())
                self._episode_recorded = True
            if ended:
                self._journal.record_event("disk", f"{self.logdir}: {episode.describe()}", **episode.as_dict())
                self._episode_recorded = False
        except (OSError, sqlite3.Error) as exc:
            logger.debug("could not record the disk episode of %s in its journal: %s", self.logdir, exc)

    def _give_up_held(self) -> None:
        """On the way out (close, exit, a fatal signal): the events still held could not be written. Say how
        many were lost, in the log and (if it can be written) the journal."""
        if not self._holding:
            return
        self._holding = False
        episode = self._backlog.abandon()
        logger.error("%s: %d held event(s) could not be written before the writer closed and are lost (%s)",
                     self.logdir, episode.lost, episode.describe())
        self._record_episode(episode, ended=True)
