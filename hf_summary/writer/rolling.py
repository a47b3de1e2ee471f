"""Segments and rolls: each event into its run's open segment with one `write(2)`, the next segment made ready
off the training thread, and every open segment sealed and recorded in the journal at each roll."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tensorboardX.proto.event_pb2 import Event

from hf_summary.backlog import Backlog, is_storage_error
from hf_summary.journal import Journal, JournalError, RunSettings
from hf_summary.patterns import path_matches
from hf_summary.reconcile import JOURNAL_DIR, logdir_relative, repo_path
from hf_summary.segments import SealedFile, Segment, seal_tail, segment_name

logger = logging.getLogger("hf_summary")

SIGNAL_LOCK_WAIT_S = 0.5  # how long a signal handler waits for a lock the code it interrupted may hold
_PREPARED_DIR = "prepared"


@dataclass
class _OpenSegment:
    segment: Segment
    row_id: int | None  # None: the file does not match the upload patterns, so the journal ignores it
    target: Path | None = None  # a prepared segment's path in its run dir (it waits under the journal's directory)


class SegmentRolling:
    """The writer's segments: `_write` (the hot path's end), the prepared next segments, `_roll`.

    Mixed into `HFSummaryWriter`, which provides the run's identity (`_settings`, `_logdir_path`, `_run_id`,
    `_host`, `_create_time`, `_filename_suffix`), `_journal`, `_closed`, the held events' `_backlog`
    and `_holding` (`HeldEvents`), and `_ensure_uploader()`.
    """

    _settings: RunSettings
    _logdir_path: Path
    _journal: Journal
    _backlog: Backlog
    _holding: bool
    _closed: bool

    def _init_rolling(self) -> None:
        # Re-entrant: a signal handler (ours, or a framework's calling close()) may seal while the code it
        # interrupted on this thread holds it; _write() then starts a new segment.
        self._lock = threading.RLock()
        self._segments: dict[str, _OpenSegment] = {}
        # The next segment of each run dir that rolled, made ready by the ticker (sequence, journal row, header)
        # under the journal's directory; the first event after a roll only renames it into its run dir.
        self._prepared: dict[str, _OpenSegment] = {}
        # Segments finished on disk whose journal row is still 'open' because the journal write failed (disk
        # full...): (row id, path, summary, or None to re-scan the file). Retried at each roll and in close().
        self._unrecorded: list[tuple[int, Path, SealedFile | None]] = []
        self._record_lock = threading.Lock()

    def _write(self, run: str, data: bytes) -> None:
        """One event to `run`'s segment; held in memory, in order, while the logdir's storage refuses writes."""
        with self._lock:
            if self._holding:  # the ticker writes the backlog out: no retry storm on the training thread
                self._backlog.hold(run, data)
                return
            try:
                self._write_now(run, data)
            except (OSError, sqlite3.OperationalError) as exc:
                if not is_storage_error(exc):
                    raise
                self._backlog.hold(run, data, exc)
                self._holding = True
                logger.warning(
                    "cannot write to %s (%s): events are held in memory (up to %d bytes) and written out, in "
                    "order, as soon as it takes them again; training goes on", self.logdir, exc,
                    self._backlog.limit_bytes,
                )

    def _write_now(self, run: str, data: bytes) -> None:
        """Under the lock: write one event, starting the run's segment if needed."""
        current = self._segments.get(run)
        for _ in range(2):
            if current is None:
                current = self._take_prepared(run) or self._start_segment(run)
            try:
                current.segment.write_record(data)
                return
            except ValueError:  # a SIGTERM handler sealed this segment between our lookup and the write
                self._segments.pop(run, None)
                current = None
        raise RuntimeError("could not write the event: segments keep being sealed under the writer")

    def _start_segment(self, run: str) -> _OpenSegment:
        opened = self._segments[run] = self._new_segment(run, staged=False)
        if opened.row_id is not None:
            self._ensure_uploader()
        return opened

    def _new_segment(self, run: str, *, staged: bool) -> _OpenSegment:
        """A new segment of `run` with its journal row and header record; `staged`: created under the
        journal's directory (no reader sees it there) for `_take_prepared` to rename into `run`."""
        journal = self._journal
        name = segment_name(journal.next_sequence(), self._host, self._filename_suffix, run_id=self._run_id)
        relative = logdir_relative(run, name)
        uploadable = path_matches(relative, self._settings.allow_patterns, self._settings.ignore_patterns)
        row_id = None
        if uploadable:
            row_id = journal.add_open_segment(
                run, name, repo_path(self._settings, run, name), os.getpid(), self._create_time
            )
        path = self._logdir_path / relative
        segment = None
        try:
            if staged:
                target, path = path, self._logdir_path / JOURNAL_DIR / _PREPARED_DIR / name
                if not path.parent.is_dir():
                    path.parent.mkdir(mode=0o700, exist_ok=True)
                    os.chmod(path.parent, 0o700)  # mkdir's mode is subject to the umask
            elif not path.parent.is_dir():
                path.parent.mkdir(parents=True, exist_ok=True)
            segment = Segment(path)
            segment.write_record(Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())
        except BaseException:  # e.g. disk full, or the logdir removed: leave no empty segment behind
            if segment is not None:
                segment.discard()
            if row_id is not None:
                self._unrecorded.append((row_id, path, None))  # no file left: its row gets dropped
                with contextlib.suppress(OSError):
                    self._record_sealed()
            raise
        return _OpenSegment(segment, row_id, target if staged else None)

    def _prepare_next(self, runs: list[str]) -> None:
        """Ticker thread, before a roll: make the next segment of each of `runs` ready, off the training thread.
        If the run's current segment changed meanwhile (the training thread started one the slow way, with a
        later sequence), the prepared one would sort before it: it is discarded."""
        for run in runs:
            if run in self._prepared:
                continue
            current = self._segments.get(run)
            opened = self._new_segment(run, staged=True)
            with self._lock:
                keep = run not in self._prepared and self._segments.get(run) is current
                if keep:
                    self._prepared[run] = opened
            if not keep:
                self._discard(opened)

    def _take_prepared(self, run: str) -> _OpenSegment | None:
        """Under the lock: move the prepared segment of `run` into its run dir (one rename) and make it current."""
        opened = self._prepared.pop(run, None)
        if opened is None:
            return None
        try:
            try:
                os.rename(opened.segment.path, opened.target)
            except FileNotFoundError:  # the run dir is gone (or not made yet): one rename is all a roll costs here
                opened.target.parent.mkdir(parents=True, exist_ok=True)
                os.rename(opened.segment.path, opened.target)
        except OSError:  # e.g. the run dir is on another file system: start one there instead
            self._discard(opened)
            return None
        opened.segment.path, opened.target = opened.target, None
        self._segments[run] = opened
        return opened

    def _discard(self, opened: _OpenSegment) -> None:
        """Forget a prepared segment that got no event: its file and its journal row."""
        opened.segment.discard()
        if opened.row_id is not None:
            try:
                self._journal.drop_segment(opened.row_id)
            except OSError:  # the journal cannot be written now (full...): its row is dropped at the next roll
                self._unrecorded.append((opened.row_id, opened.segment.path, None))

    def _discard_prepared(self) -> None:
        with self._lock:
            prepared = list(self._prepared.values())
            self._prepared.clear()
        for opened in prepared:
            with contextlib.suppress(OSError):
                self._discard(opened)

    def _roll(self, *, interrupting: bool = False) -> int:
        """Seal every open segment and record it in the journal. Returns how many were sealed.

        `interrupting`: called from a signal handler, which may have interrupted the lock's holder on this
        very thread. Records are whole (one write each), so after a short wait sealing goes ahead without the
        lock; if the interrupted write resumes, `_write()` starts a new segment.
        """
        locked = self._lock.acquire(timeout=SIGNAL_LOCK_WAIT_S if interrupting else -1)
        try:
            detached = list(self._segments.values())
            self._segments.clear()
        finally:
            if locked:
                self._lock.release()
        if self._closed:
            self._discard_prepared()
        failure: OSError | None = None
        for opened in detached:
            sealed = None
            try:
                sealed = opened.segment.seal()
            except OSError as exc:  # the file is closed anyway; _record_sealed() finishes it with seal_tail()
                failure = failure or exc
            if opened.row_id is not None:
                self._unrecorded.append((opened.row_id, opened.segment.path, sealed))
        recorded = 0
        try:
            recorded = self._record_sealed(interrupting=interrupting)
        except OSError as exc:  # e.g. the journal's disk is full: kept in _unrecorded, retried at the next roll
            failure = failure or exc
        if failure is not None:
            raise failure
        return len(detached) or recorded

    def _record_sealed(self, *, interrupting: bool = False) -> int:
        """Record in the journal the segments finished on disk (`_unrecorded`), all in one transaction, so that
        none stays 'open' while this process lives; returns how many were sealed. Raises OSError when the journal
        cannot be written (they stay in `_unrecorded`)."""
        if not self._record_lock.acquire(timeout=SIGNAL_LOCK_WAIT_S if interrupting else -1):
            return 0  # we interrupted the call that is recording them
        try:
            if not self._unrecorded:
                return 0
            sealed_rows, dropped = [], []
            for row_id, path, sealed in self._unrecorded:
                if sealed is None and path.exists():
                    sealed = seal_tail(path)
                if sealed is None or sealed.size == 0:
                    dropped.append(row_id)
                else:
                    sealed_rows.append((row_id, sealed.size, sealed.sha256))
            try:
                recorded = self._journal.record_seals(sealed_rows, dropped)  # one transaction: one push carries all
            except JournalError as exc:  # not an I/O error: the journal is unusable; `recover` rebuilds it from disk
                logger.error("could not record %d sealed segment(s) in the journal of %s: %s", len(sealed_rows),
                             self._journal.logdir, exc)
                recorded = 0
            self._unrecorded.clear()
            return recorded
        finally:
            self._record_lock.release()

    def flush(self) -> None:
        """Events are already in the OS when `add_*` returns; this also fsyncs the open segments."""
        with self._lock:
            for opened in self._segments.values():
                opened.segment.sync()
