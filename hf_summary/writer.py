"""`HFSummaryWriter`: a tensorboardX ``SummaryWriter`` whose logs reach the Hub, whatever happens to the job."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import psutil
from tensorboardX import SummaryWriter
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.summary_pb2 import Summary
from tensorboardX.summary import hparams, scalar
from tensorboardX.writer import DummyFileWriter
from tensorboardX.x2num import make_np

from hf_summary import hub
from hf_summary._arguments import check_grace_period, check_minutes, check_seconds, join_path_in_repo
from hf_summary._events import ScalarEncoder
from hf_summary._summaries import tensor_scalar, tensor_summary, with_discrete_domains
from hf_summary._tensors import hparam_value, numpy_arguments, scalar_number, tensor_array
from hf_summary.backlog import DEFAULT_LIMIT_BYTES, DISK_EPISODE_KEY, Backlog, Episode, is_storage_error
from hf_summary.journal import Journal, JournalError, RunSettings
from hf_summary.liveness import WriterPresence
from hf_summary.patterns import check_patterns, path_matches
from hf_summary.reconcile import JOURNAL_DIR, logdir_relative, open_or_rebuild, repo_path
from hf_summary.segments import (
    SealedFile,
    Segment,
    is_event_file,
    parse_segment_run_id,
    parse_segment_sequence,
    seal_tail,
    segment_name,
)
from hf_summary.uploader.launcher import UploaderProcess

logger = logging.getLogger("hf_summary")


class ExistingRunError(FileExistsError):
    """The repo folder already holds another run's event files and ``existing_run="error"`` was asked."""

EXISTING_RUN_CHOICES = ("continue", "error")
_SIGNAL_LOCK_WAIT_S = 0.5
_PREPARED_DIR = "prepared"
_PLAIN_NUMBERS = (float, int)
_time = time.time
_COMMIT_EVERY_MIN = 5
_BUCKET_COMMIT_EVERY_MIN = 1  # no commit budget: push sooner
_HELD_RETRY_S = 1.0  # while events are held, the ticker tries to write them out this often
_HELD_CHUNK_BYTES = 1 << 20  # written out per turn of the writer's lock, so that add_* never waits long


class HFSummaryWriter(SummaryWriter):
    """A drop-in ``SummaryWriter`` that pushes its event files to a Hub repo in the background.

    Each ``add_*`` call hands its whole event to the OS with one ``write(2)`` before returning, so a crash of
    the training process loses nothing that was logged. Every ``commit_every`` minutes the open event files
    ("segments") are sealed and recorded in an SQLite journal in the logdir; a separate uploader process
    pushes them in one commit and survives the trainer: if the trainer dies, the uploader seals what was
    left open and pushes it. ``hf-summary recover LOGDIR`` finishes the job if both died.

    Args:
        repo_id: the repo to push to (``"username/my-run"``); created if missing.
        logdir: where event files are written (default: ``runs/DATE_HOST``, as tensorboardX).
        commit_every: minutes between two pushes (default 5 for repos, whose commits the Hub rate-limits, and 1
            for buckets, which have no commit budget).
        squash_history: squash the branch's history into one commit after each push (not for buckets).
        repo_type, repo_revision, repo_private: the repo's type, branch and (new repos only) visibility.
            ``repo_type="bucket"`` pushes to a Storage Bucket ``repo_id`` instead: no commits, no branch, no card.
        path_in_repo: folder in the repo; the logdir's name is appended (default ``tensorboard``).
        repo_allow_patterns, repo_ignore_patterns: glob patterns on paths relative to the logdir.
        token: Hub token (default: ``HF_TOKEN`` or the stored login). Never written anywhere.
        close_timeout: seconds ``close()``/``__exit__`` wait for the final push (default 120). If the Hub is
            still unreachable then, the uploader keeps trying in the background for up to ``drain_timeout``.
        drain_timeout: seconds the uploader keeps pushing after the trainer closed or died (default 600).
        handle_sigterm: install a SIGTERM handler that seals and asks for an urgent push, then chains at once
            to a previous Python handler, or, when the signal's default action would end the process, first
            waits (up to ``grace_period``) until the Hub holds what was logged (default True; only possible
            from the main thread). With or without it, the uploader turns its own SIGTERM (a job-wide signal)
            into an urgent final push and asks this process to seal.
        grace_period: seconds a stop may spend on the final push: the trainer's wait on its way out (SIGTERM,
            interpreter exit without ``close()``) and the uploader's final drain after a stop signal
            (default ``HF_SUMMARY_GRACE_PERIOD``, else 8: inside ``docker stop``'s 10 s). Set it a little
            below the time your scheduler leaves between SIGTERM and SIGKILL.
        held_events_limit: bytes of events kept in memory while the logdir's filesystem refuses writes (full,
            over quota, I/O errors, removed; default 32 MiB). They are written out, in order, once it takes
            them again; events past the limit are dropped and counted (the oldest are kept). ``add_*`` never
            raises for such an error; a warning says when it starts and ends, and ``hf-summary status`` shows it.
        existing_run: what to do when the repo folder already holds event files of another run (a
            requeued job on a new node, whose fresh logdir has the same name; or another experiment):
            ``"continue"`` (default) logs on into it as the same TensorBoard run, after a warning;
            ``"error"`` refuses to start. No run ever replaces a file of another either way.
        offline: log and journal as usual but never touch the network: no repo check, no uploader, and
            ``close()`` returns at once; ``hf-summary sync LOGDIR`` pushes the run later from a connected
            machine. Also on whenever huggingface_hub is in offline mode (``HF_HUB_OFFLINE``, read when
            huggingface_hub is imported), since it would refuse every request anyway.
        **kwargs: passed to tensorboardX's ``SummaryWriter`` (``comment``, ``purge_step``,
            ``filename_suffix``, ...; ``max_queue`` and ``flush_secs`` are accepted and have nothing to do:
            there is no queue and no buffer).

    Example:
        ```py
        >>> from hf_summary import HFSummaryWriter
        >>> with HFSummaryWriter(repo_id="username/my-run", commit_every=1) as writer:
        ...     for step in range(100):
        ...         writer.add_scalar("loss", 1 / (step + 1), step)
        ```
    """

    _CLEAN_TAGS = True  # tensorboardX cleans tags; torch's flavour keeps them as given

    def __init__(
        self,
        repo_id: str,
        *,
        logdir: str | os.PathLike[str] | None = None,
        commit_every: int | float | None = None,
        squash_history: bool = False,
        repo_type: str | None = None,
        repo_revision: str | None = None,
        repo_private: bool | None = None,
        path_in_repo: str | None = "tensorboard",
        repo_allow_patterns: list[str] | str | None = "*.tfevents.*",
        repo_ignore_patterns: list[str] | str | None = None,
        token: str | None = None,
        close_timeout: float = 120.0,
        drain_timeout: float = 600.0,
        handle_sigterm: bool = True,
        grace_period: float | None = None,
        existing_run: str = "continue",
        offline: bool = False,
        held_events_limit: int = DEFAULT_LIMIT_BYTES,
        **kwargs,
    ):
        if commit_every is None:
            commit_every = _BUCKET_COMMIT_EVERY_MIN if repo_type == hub.BUCKET else _COMMIT_EVERY_MIN
        _check_arguments(repo_id, commit_every, repo_type, repo_private, token, close_timeout, drain_timeout)
        if existing_run not in EXISTING_RUN_CHOICES:
            raise ValueError(f"existing_run must be one of {', '.join(EXISTING_RUN_CHOICES)}, got {existing_run!r}")
        if repo_type == hub.BUCKET and (squash_history or repo_revision not in (None, "main")):
            raise ValueError("a bucket has no history and no branches: squash_history and repo_revision do not apply")
        if isinstance(held_events_limit, bool) or not isinstance(held_events_limit, int) or held_events_limit < 0:
            raise ValueError(f"held_events_limit must be a number of bytes >= 0, got {held_events_limit!r}")
        resolved_logdir = _resolve_logdir(logdir, kwargs)
        self._token = token
        self._close_timeout = float(close_timeout)
        self._drain_timeout = float(drain_timeout)
        self._handle_sigterm = handle_sigterm
        self._grace_period = check_grace_period(grace_period)
        self._existing_run = existing_run
        self._offline = bool(offline) or hub.offline_mode()
        self._presence = WriterPresence(offline=self._offline)
        self._settings = RunSettings(
            repo_id=repo_id,
            repo_type=repo_type or "model",
            revision=repo_revision or "main",
            path_in_repo=join_path_in_repo(path_in_repo, resolved_logdir.resolve().name),
            allow_patterns=check_patterns("repo_allow_patterns", repo_allow_patterns),
            ignore_patterns=check_patterns("repo_ignore_patterns", repo_ignore_patterns),
            squash_history=bool(squash_history),
            commit_every_s=float(commit_every) * 60.0,
            private=repo_private,
            endpoint=os.environ.get("HF_ENDPOINT"),
        )
        self._logdir_path = resolved_logdir.resolve()
        self._host = socket.gethostname()
        self._create_time = psutil.Process().create_time()
        # Re-entrant: a signal handler (ours, or a framework's calling close()) may seal while the code it
        # interrupted on this thread holds it; _write() then starts a new segment.
        self._lock = threading.RLock()
        self._segments: dict[str, _OpenSegment] = {}
        # The next segment of each run dir that rolled, made ready by the ticker (sequence, journal row, header)
        # under the journal's directory; the first event after a roll only renames it into its run dir.
        self._prepared: dict[str, _OpenSegment] = {}
        self._scalar_encoder = ScalarEncoder(clean_tags=self._CLEAN_TAGS)  # add_scalar's lean path
        comet_config = kwargs.get("comet_config", {"disabled": True})  # tensorboardX's default: its logger is a no-op
        self._comet_on = not (isinstance(comet_config, dict) and comet_config.get("disabled") is True)
        # Segments finished on disk whose journal row is still 'open' because the journal write failed (disk
        # full...): (row id, path, summary, or None to re-scan the file). Retried at each roll and in close().
        self._unrecorded: list[tuple[int, Path, SealedFile | None]] = []
        self._record_lock = threading.Lock()
        # Events the logdir's filesystem refused, in order; while it holds any (``_holding``), add_* only appends.
        self._backlog = Backlog(held_events_limit)
        self._holding = False
        self._episode_recorded = False  # the current episode's start is in the journal's history
        self._uploader: UploaderProcess | None = None
        self._ticker: threading.Thread | None = None
        self._stop_ticking = threading.Event()
        self._previous_sigterm: object = None
        self._journal: Journal | None = None
        self._closed = True
        self.repo_id = self._settings.repo_id
        self.repo_type = self._settings.repo_type
        self.repo_revision = self._settings.revision

        if not kwargs.get("write_to_disk", True):  # tensorboardX's dry run: create nothing, send nothing
            super().__init__(logdir=str(resolved_logdir), **kwargs)
            return
        _prepare_logdir(resolved_logdir)
        self._open_journal()
        try:
            if self._offline:
                logger.warning(
                    "hf-summary is offline (HF_HUB_OFFLINE or offline=True): %s is logged and journaled here and "
                    "nothing is pushed; push it later from a connected machine with `hf-summary sync %s`",
                    resolved_logdir, resolved_logdir,
                )
            else:
                self._check_repo_access()
            super().__init__(logdir=str(resolved_logdir), **kwargs)
            self._start_background()
        except BaseException:
            self._presence.stop()
            self._journal.close()
            raise

    # ---------------------------------------------------------------- start-up

    def _open_journal(self) -> None:
        journal, _ = open_or_rebuild(self._logdir_path, self._settings)
        try:
            self._presence.announce(journal)  # first: another host seeing this journal must know it is written
            previous = journal.load_settings()
            if previous is not None and previous.destination != self._settings.destination and (
                journal.pending_segments() or journal.open_segments()
            ):
                raise ValueError(
                    f"{self._logdir_path} has segments pending for {previous.repo_type} {previous.repo_id!r} "
                    f"(path {previous.path_in_repo!r}); push them first with `hf-summary recover "
                    f"{self._logdir_path}`, or log to another logdir"
                )
            journal.save_settings(self._settings)
            self._run_id = journal.run_id()
        except BaseException:
            self._presence.stop()
            journal.close()
            raise
        self._journal = journal

    def _check_repo_access(self) -> None:
        """Create the repo now, as the original does, so that a bad token or repo fails at once. An unreachable
        Hub only delays the push: the check then gives up after a few seconds and the uploader retries."""
        client = hub.client_for(self._settings, self._token)

        def attempt() -> dict[str, hub.RemoteFile]:
            client.ensure_repo(private=self._settings.private)
            client.check_write_access()
            return client.list_files(self._settings.path_in_repo)

        try:
            remote = hub.probe(attempt, doing="logging")
        except hub.PermanentHubError as exc:
            raise PermissionError(
                f"cannot write to {self._settings.repo_type} repo {self._settings.repo_id!r}: {exc}. "
                "Check the token (HF_TOKEN, `hf auth login` or token=) and that it may write to this namespace."
            ) from None
        if remote is not None:
            self._check_existing_run(remote)

    def _check_existing_run(self, remote: dict[str, hub.RemoteFile]) -> None:
        """Say so, once, when the repo folder holds event files that another run pushed; continue that run
        (naming new segments after its files, so TensorBoard reads them in order) or refuse."""
        ours = {row.path_in_repo for row in self._journal.segments()}
        others: dict[str, int] = {}
        highest = 0
        for path in remote:
            name = path.rpartition("/")[2]
            if not is_event_file(name) or path in ours or parse_segment_run_id(name) == self._run_id:
                continue
            run_id = parse_segment_run_id(name) or "unknown"
            others[run_id] = others.get(run_id, 0) + 1
            highest = max(highest, parse_segment_sequence(name) or 0)
        if not others:
            return
        folder = self._settings.path_in_repo
        described = ", ".join(f"{run_id} ({count} file(s))" for run_id, count in sorted(others.items()))
        message = (
            f"{self._settings.repo_type} repo {self._settings.repo_id!r} already holds event files of another "
            f"run in {folder!r}: run(s) {described}; this run is {self._run_id}."
        )
        if self._existing_run == "error":
            raise ExistingRunError(
                f"{message} Pass existing_run='continue' to log on into it as the same TensorBoard run (a "
                "requeued job), or choose another path_in_repo or logdir name."
            )
        logger.warning(
            "%s Logging on into it as the same TensorBoard run (right for a requeued job on a new node). If "
            "this is another experiment, choose another path_in_repo or logdir name; existing_run='error' "
            "refuses instead.", message,
        )
        self._journal.ensure_sequence_above(highest)

    def _start_background(self) -> None:
        self._closed = False
        self._stop_ticking.clear()
        self._ticker = threading.Thread(target=self._tick, name="hf-summary-ticker", daemon=True)
        self._ticker.start()
        if self._handle_sigterm and threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)
        atexit.register(self._at_exit)
        if self._journal.pending_segments() or self._journal.open_segments():
            self._ensure_uploader()
        self._presence.start(self._journal)

    def _ensure_uploader(self) -> None:
        if self._offline:
            return
        if self._uploader is None or not self._uploader.is_running():
            self._uploader = UploaderProcess(
                self._logdir_path,
                token=self._token,
                drain_timeout=self._drain_timeout,
                grace_period=self._grace_period,
                on_seal=self._seal_on_request,
            )

    def _seal_on_request(self) -> None:
        """The uploader asks for a seal (it was preempted): seal what was logged and ask for its push."""
        if not self._closed and self._roll() and self._uploader is not None:
            self._uploader.request_push()

    # ---------------------------------------------------------------- the FileWriter seam

    def _get_file_writer(self) -> _RunWriter | DummyFileWriter:
        """tensorboardX's hook for the default writer: ours writes segments (and reopens after close())."""
        if not self._write_to_disk:
            return super()._get_file_writer()
        if self._closed and self._ticker is not None:
            self._reopen()
        if self.all_writers is None or self.file_writer is None:
            self.file_writer = self._run_writer(self.logdir)
            if self.purge_step is not None:
                self.file_writer.add_event(Event(step=self.purge_step, file_version="brain.Event:2"))
                self.file_writer.add_event(Event(step=self.purge_step, session_log=_session_start()))
                self.purge_step = None  # once per writer, not once per segment
            self.all_writers = {self.file_writer.get_logdir(): self.file_writer}
        return self.file_writer

    def _run_writer(self, run_logdir: str) -> _RunWriter | DummyFileWriter:
        writers = self.all_writers if self.all_writers is not None else {}
        existing = writers.get(run_logdir)
        if isinstance(existing, (_RunWriter, DummyFileWriter)):
            return existing
        if not self._write_to_disk:
            return DummyFileWriter(run_logdir)
        run = Path(run_logdir).resolve().relative_to(self._logdir_path).as_posix()
        return _RunWriter(self, run_logdir, "" if run == "." else run)

    def _write(self, run: str, data: bytes) -> None:
        """One event to ``run``'s segment; held in memory, in order, while the logdir's storage refuses writes."""
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
        """A new segment of ``run`` with its journal row and header record; ``staged``: created under the
        journal's directory (no reader sees it there) for :meth:`_take_prepared` to rename into ``run``."""
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
        """Ticker thread, before a roll: make the next segment of each of ``runs`` ready, off the training thread.
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
        """Under the lock: move the prepared segment of ``run`` into its run dir (one rename) and make it current."""
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

    # ---------------------------------------------------------------- rolling and pushing

    def _roll(self, *, interrupting: bool = False) -> int:
        """Seal every open segment and record it in the journal. Returns how many were sealed.

        ``interrupting``: called from a signal handler, which may have interrupted the lock's holder on this
        very thread. Records are whole (one write each), so after a short wait sealing goes ahead without the
        lock; if the interrupted write resumes, ``_write()`` starts a new segment.
        """
        locked = self._lock.acquire(timeout=_SIGNAL_LOCK_WAIT_S if interrupting else -1)
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
        """Record in the journal the segments finished on disk (``_unrecorded``), oldest first, so that none
        stays 'open' while this process lives; returns how many were sealed. Raises OSError when the journal
        cannot be written (they stay in ``_unrecorded``)."""
        if not self._record_lock.acquire(timeout=_SIGNAL_LOCK_WAIT_S if interrupting else -1):
            return 0  # we interrupted the call that is recording them
        recorded = 0
        try:
            while self._unrecorded:
                row_id, path, sealed = self._unrecorded[0]
                if sealed is None and path.exists():
                    sealed = seal_tail(path)
                try:
                    if sealed is None or sealed.size == 0:
                        self._journal.drop_segment(row_id)
                    else:
                        self._journal.mark_sealed(row_id, sealed.size, sealed.sha256)
                        recorded += 1
                except JournalError:  # no longer open: an earlier attempt's commit took, though it reported an
                    pass  # I/O error (SQLite can, on a failing disk); nothing is left to record for this one
                self._unrecorded.pop(0)
        finally:
            self._record_lock.release()
        return recorded

    def _tick(self) -> None:
        """Ticker thread: roll and ask for a push every ``commit_every``; while events are held, try to write
        them out every ``_HELD_RETRY_S`` in between."""
        next_roll = time.monotonic() + self._settings.commit_every_s
        while not self._stop_ticking.wait(self._until_next_turn(next_roll)):
            if self._logdir_removed() and not self._recreate_logdir():
                continue  # nothing is written into the removed journal meanwhile: the events are held
            self._write_out_held()
            if time.monotonic() < next_roll:
                continue
            next_roll = time.monotonic() + self._settings.commit_every_s
            self._roll_and_push()

    def _logdir_removed(self) -> bool:
        """Whether the journal, or the file of an open segment, was removed under the writer (``rm -rf``)."""
        return not self._journal.path.exists() or any(o.segment.unlinked() for o in list(self._segments.values()))

    def _recreate_logdir(self) -> bool:
        """Ticker: the logdir (or part of it) was removed while the writer ran. Read back what the removed open
        segments held and hold it ahead of any held event (written out again next); if the journal went too, make
        the logdir again with a fresh journal (which adopts the segments still on disk) and restart the uploader
        on it. What was pushed stays on the Hub; the run goes on there under the same run id, with later
        sequences. Returns whether it could."""
        journal_gone = not self._journal.path.exists()
        with self._lock:
            self._holding = True  # add_* only appends meanwhile
            removed = {run: o for run, o in self._segments.items() if journal_gone or o.segment.unlinked()}
            for run in removed:
                del self._segments[run]
            prepared, self._prepared = (list(self._prepared.values()), {}) if journal_gone else ([], self._prepared)
            if journal_gone:
                self._unrecorded.clear()  # rows of the lost journal; files still on disk are adopted anew
        salvaged: list[tuple[str, bytes]] = []
        last_sequence = 0
        for run, opened in removed.items():
            last_sequence = max(last_sequence, parse_segment_sequence(opened.segment.path.name) or 0)
            if opened.segment.unlinked():
                salvaged.extend((run, data) for data in opened.segment.salvage()[1:])  # not its header record
                if not journal_gone and opened.row_id is not None:
                    self._unrecorded.append((opened.row_id, opened.segment.path, None))  # its row gets dropped
            else:
                with contextlib.suppress(OSError):
                    opened.segment.seal()
        for opened in prepared:
            with contextlib.suppress(OSError):
                opened.segment.discard()
        cause = f"{self.logdir} was removed"
        if journal_gone and not self._replace_journal(last_sequence, len(salvaged)):
            with self._lock:
                self._backlog.put_first(salvaged, cause)
            return False
        with self._lock:
            self._backlog.put_first(salvaged, cause)
        self._episode_recorded = False
        logger.warning("%s (or part of it) was removed while the writer ran: %s; %d event(s) of the removed open "
                       "segments are written out again", self.logdir,
                       "made it again with a new journal" if journal_gone else "its journal is intact", len(salvaged))
        return True

    def _replace_journal(self, last_sequence: int, salvaged: int) -> bool:
        """The journal was removed: stop its uploader and presence, and go on with a new one (False: not yet)."""
        if self._uploader is not None and self._uploader.is_running():  # it drains the removed journal
            os.kill(self._uploader.pid, signal.SIGKILL)
            self._uploader.wait(_SIGNAL_LOCK_WAIT_S)
        self._uploader = None
        self._presence.stop()
        # Closed before the new one opens: closing SQLite's last connection deletes its WAL file by path, which
        # would then be the new journal's.
        with contextlib.suppress(Exception):
            self._journal.close()
        try:
            journal = self._new_journal(last_sequence, salvaged)
        except (OSError, sqlite3.Error) as exc:  # e.g. the disk is full too: held, and tried again next turn
            logger.warning("%s was removed and cannot be made again yet (%s); retrying", self.logdir, exc)
            return False
        with self._lock:
            self._journal = journal
        with contextlib.suppress(OSError, sqlite3.Error):
            self._presence.start(journal)
        return True

    def _new_journal(self, last_sequence: int, salvaged: int) -> Journal:
        """The logdir made again, with a journal that goes on with this run (its run id, later sequences)."""
        _prepare_logdir(Path(self.logdir))
        journal, _ = open_or_rebuild(self._logdir_path, self._settings)
        try:
            journal.set_value("run_id", self._run_id)
            journal.ensure_sequence_above(last_sequence)
            journal.record_event("disk", f"{self.logdir} was removed while the writer ran: made it again; "
                                         f"{salvaged} event(s) of its open segments written out again",
                                 salvaged=salvaged)
        except BaseException:
            journal.close()
            raise
        return journal

    def _until_next_turn(self, next_roll: float) -> float:
        wait = max(0.0, next_roll - time.monotonic())
        return min(wait, _HELD_RETRY_S) if self._holding else wait

    def _roll_and_push(self) -> None:
        """One tick. A storage error (disk full, journal full...) skips only the step it hit: what was not
        sealed or recorded is retried at the next tick, so the journal's states stay exact."""
        try:
            self._prepare_next(list(self._segments))
        except Exception as exc:  # the next segments are then started the slow way, on the first event
            self._log_tick_failure("prepare the next segments of", exc)
        try:
            self._roll()
            if not self._offline and self._journal.pending_segments():
                with self._lock:  # _start_segment may be starting one too
                    self._ensure_uploader()  # a new one if the last died
                self._uploader.request_push()
        except Exception as exc:
            self._log_tick_failure("seal the event segments of", exc)

    def _log_tick_failure(self, what: str, exc: Exception) -> None:
        if is_storage_error(exc):  # expected on a full disk: no traceback every tick
            logger.warning("could not %s %s (%s); retrying at the next tick", what, self.logdir, exc)
        else:
            logger.exception("could not %s %s", what, self.logdir)

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
        """Under the lock: up to ``_HELD_CHUNK_BYTES`` of held events; the error that stopped it, if any."""
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
        """Keep the journal's record of a disk episode current (for ``status``); the history gets its start and
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

    def push_to_hub(self, *, blocking: bool = True, timeout: float | None = None) -> bool:
        """Seal what was logged so far and push it now instead of at the next tick.

        With ``blocking``, wait (up to ``timeout`` s, default ``close_timeout``) until the Hub holds it; returns
        whether it does (at once ``False`` when a segment's path on the Hub holds another run's file: that one
        is never pushed). Never raises on Hub errors: they are retried in the background. Offline, this only
        seals and returns False: ``hf-summary sync`` pushes later.
        """
        if not self._write_to_disk:
            return True
        if self._closed:
            raise RuntimeError("the writer is closed; close() already pushed what was logged")
        self._roll()
        if self._offline:
            return False
        targets = {row.id for row in self._journal.pending_segments()}
        if not targets:
            return True
        self._ensure_uploader()
        self._uploader.request_push()
        if not blocking:
            return False
        deadline = time.monotonic() + (self._close_timeout if timeout is None else timeout)
        while time.monotonic() < deadline:
            waiting = targets & {row.id for row in self._journal.pending_segments()}
            conflicting = waiting & self._journal.conflicts()  # never pushed: the uploader logged why
            if waiting == conflicting:
                return not conflicting
            time.sleep(0.05)
        return False

    def flush(self) -> None:
        """Events are already in the OS when ``add_*`` returns; this also fsyncs the open segments."""
        with self._lock:
            for opened in self._segments.values():
                opened.segment.sync()

    # ---------------------------------------------------------------- closing, exit and signals

    def close(self) -> None:
        """Seal everything, wait (up to ``close_timeout``) until the Hub holds it, and stop the uploader."""
        if self._closed:
            return
        self._closed = True
        self._stop_ticking.set()
        if self._ticker is not None and self._ticker is not threading.current_thread():
            self._ticker.join()
        if self._logdir_removed() and not self._recreate_logdir():  # no journal to close with: end here
            self._give_up_held()
            super().close()
            self._restore_sigterm()
            atexit.unregister(self._at_exit)
            logger.error("%s was removed and cannot be made again; what it held on disk is lost", self.logdir)
            return
        self._write_out_held()
        self._give_up_held()
        try:
            self._roll()
        except OSError as exc:  # e.g. disk full: the files are sealed on disk; still stop the uploader cleanly
            logger.error(
                "could not record %d sealed segment(s) of %s in its journal (%s); they are safe on disk, and "
                "`hf-summary recover %s` pushes them once the journal can be written",
                len(self._unrecorded), self.logdir, exc, self.logdir,
            )
        super().close()
        self._restore_sigterm()
        atexit.unregister(self._at_exit)
        if self._journal.pending_segments():
            self._ensure_uploader()
        if self._uploader is not None:
            self._uploader.request_close()
            if not self._uploader.wait(self._close_timeout):
                status = self._journal.status()
                logger.warning(
                    "%d segment(s) (%d bytes) of %s are not on the Hub after %.0f s; the uploader (pid %d) keeps "
                    "trying for up to %.0f s. `hf-summary status %s` tells where it stands; "
                    "`hf-summary recover %s` finishes the job.",
                    status["pending_segments"], status["pending_bytes"], self.logdir, self._close_timeout,
                    self._uploader.pid, self._drain_timeout, self.logdir, self.logdir,
                )
            self._uploader = None
        self._presence.stop()
        self._journal.close()

    def _reopen(self) -> None:
        """tensorboardX lets ``add_*`` go on after ``close()``: reopen the journal, ticker and uploader."""
        self._open_journal()
        self._start_background()

    def __exit__(self, exc_type, exc_val, exc_tb) -> None:
        self.close()

    def _seal_and_hand_over(self, *, interrupting: bool) -> int | None:
        """Seal and ask for a push without waiting (an urgent one from a signal handler); returns the
        request's number, for ``_wait_for_push``. When this process ends, its pipe closes and the uploader
        drains on its own."""
        sealed = 0
        if not (interrupting and self._lock._is_owned()):  # never write into a record we interrupted
            with contextlib.suppress(Exception):
                self._write_out_held(lock_timeout=_SIGNAL_LOCK_WAIT_S if interrupting else -1)
        with contextlib.suppress(Exception):
            sealed = self._roll(interrupting=interrupting)
        if self._offline:
            return None
        with contextlib.suppress(Exception):
            if sealed or self._uploader is not None:
                self._ensure_uploader()
                if interrupting:
                    return self._uploader.request_preempted_push()
                return self._uploader.request_push()
        return None

    def _wait_for_push(self, request: int | None) -> None:
        """On the way out: wait, up to ``grace_period``, until the uploader says the Hub holds what was
        sealed before ``request``; return as soon as it does, or as soon as it cannot say so."""
        if self._uploader is not None and not self._uploader.wait_drained(request, self._grace_period):
            logger.warning("exiting before the Hub confirmed the last push of %s; `hf-summary status %s` "
                           "tells where it stands", self.logdir, self.logdir)

    def _at_exit(self) -> None:
        """Interpreter exit without close() (the end of the script, sys.exit, an uncaught exception)."""
        request = self._seal_and_hand_over(interrupting=False)
        self._give_up_held()
        self._wait_for_push(request)
        self._presence.stop()

    def _on_sigterm(self, signum: int, frame: object) -> None:
        request = self._seal_and_hand_over(interrupting=True)
        previous = self._previous_sigterm
        if callable(previous):  # at once: their checkpoint matters more than our push, which runs meanwhile
            previous(signum, frame)
            return
        if previous == signal.SIG_IGN:
            return
        self._wait_for_push(request)  # the default action ends the process: not before the push
        self._give_up_held()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        # Still here: PID 1 of a PID namespace, where the default action of SIGTERM is to ignore it (as plain
        # Python does there). Stay ready for the next one.
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def _restore_sigterm(self) -> None:
        if self._previous_sigterm is None:
            return
        if signal.getsignal(signal.SIGTERM) == self._on_sigterm:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
        self._previous_sigterm = None

    # ---------------------------------------------------------------- the SummaryWriter surface

    @property
    def log_dir(self) -> str:
        """torch.utils.tensorboard's name for ``logdir``."""
        return self.logdir

    def get_logdir(self) -> str:
        return self.logdir

    @property
    def max_queue(self) -> int:
        return self._max_queue

    @property
    def flush_secs(self) -> int:
        return self._flush_secs

    @property
    def filename_suffix(self) -> str:
        return self._filename_suffix

    def add_scalar(
        self,
        tag: str,
        scalar_value,
        global_step: int | None = None,
        walltime: float | None = None,
        display_name: str = "",
        summary_description: str = "",
        *,
        new_style: bool = False,
        double_precision: bool = False,
    ) -> None:
        """tensorboardX's ``add_scalar``, plus torch's ``new_style`` tensor scalars (``double_precision`` applies
        to those only, as in torch: without ``new_style`` the value is a float32 ``simple_value``). Takes what
        torch's takes: a number, a numpy scalar or array, a tensor of any dtype, ``bfloat16`` included."""
        value = scalar_value if type(scalar_value) in _PLAIN_NUMBERS else scalar_number(scalar_value)
        if not (new_style or display_name or summary_description) and self._add_lean_scalar(
            self.file_writer, tag, value, global_step, walltime
        ):
            if self._comet_on:
                self._get_comet_logger().log_metric(tag, "", scalar_value, global_step)
            return
        if new_style:
            self._get_file_writer().add_summary(tensor_scalar(tag, value, double_precision), global_step, walltime)
            return
        self._add_simple_scalar(tag, value, global_step, walltime, display_name, summary_description)

    def _add_simple_scalar(self, tag: str, value, global_step, walltime, display_name: str, description: str) -> None:
        """A ``simple_value`` scalar the lean path left (a NaN, a display name...), ``value`` converted by
        :func:`scalar_number`."""
        SummaryWriter.add_scalar(self, tag, value, global_step, walltime, display_name, description)

    def _add_lean_scalar(self, writer: object, tag: str, value, step, walltime) -> bool:
        """``add_scalar``'s hot path into ``writer`` (a run dir's): a Python float/int (numpy and torch scalars
        are made one by :func:`scalar_number` first), its Event encoded directly (the same bytes protobuf writes)
        and written. Returns False, having done nothing, for anything else."""
        if (
            type(value) not in _PLAIN_NUMBERS
            or (step is not None and type(step) is not int)
            or type(writer) is not _RunWriter  # tensorboardX's dry run
            or self._closed  # the slow path reopens
        ):
            return False
        if writer._default_metadata:
            step, walltime = writer.stamp(step, walltime)
        elif walltime is None:
            walltime = _time()
        data = self._scalar_encoder.encode(tag, value, step, walltime)
        if data is None:
            return False
        self._write(writer._run, data)
        return True

    # tensorboardX's, taking torch tensors of any dtype (its own conversion has no bfloat16)
    add_histogram = numpy_arguments(SummaryWriter.add_histogram)
    add_histogram_raw = numpy_arguments(SummaryWriter.add_histogram_raw)
    add_image = numpy_arguments(SummaryWriter.add_image)
    add_images = numpy_arguments(SummaryWriter.add_images)
    add_image_with_boxes = numpy_arguments(SummaryWriter.add_image_with_boxes)
    add_video = numpy_arguments(SummaryWriter.add_video)
    add_embedding = numpy_arguments(SummaryWriter.add_embedding, keep=("metadata",))
    add_pr_curve = numpy_arguments(SummaryWriter.add_pr_curve)
    add_pr_curve_raw = numpy_arguments(SummaryWriter.add_pr_curve_raw)
    add_mesh = numpy_arguments(SummaryWriter.add_mesh)

    @numpy_arguments
    def add_audio(self, tag: str, snd_tensor, *args, **kwargs) -> None:
        """tensorboardX's ``add_audio``, taking ``float16`` (and ``bfloat16``) sound too, as ``float32``, which
        holds it exactly (tensorboardX's WAV encoder has no ``float16``)."""
        if getattr(snd_tensor, "dtype", None) == np.float16:
            snd_tensor = snd_tensor.astype(np.float32)
        SummaryWriter.add_audio(self, tag, snd_tensor, *args, **kwargs)

    def add_tensor(self, tag: str, tensor, global_step: int | None = None, walltime: float | None = None) -> None:
        """torch's ``add_tensor``: a tensor (or numpy array) of any dtype torch's takes, as a TensorProto."""
        self._get_file_writer().add_summary(tensor_summary(tag, *tensor_array(tensor)), global_step, walltime)

    def add_scalars(self, main_tag: str, tag_scalar_dict: dict, global_step=None, walltime=None) -> None:
        """Each tag goes to its own sub-run ``logdir/main_tag/tag``, which rolls like the main run. As in
        tensorboardX, the values are also kept in ``scalar_dict`` for ``export_scalars_to_json``, as
        ``(walltime, step, value)`` tuples (the garbage collector stops tracking those; lists would make its
        full collections ever longer in a long run)."""
        walltime = _time() if walltime is None else walltime
        fw_logdir = str(self._get_file_writer().get_logdir())
        for tag, scalar_value in tag_scalar_dict.items():
            value = scalar_number(scalar_value)
            run_logdir = os.path.join(fw_logdir, main_tag, tag)
            writer = self._sub_run_writer(run_logdir)
            if not self._add_lean_scalar(writer, main_tag, value, global_step, walltime):
                writer.add_summary(scalar(main_tag, value), global_step, walltime)
            kept = float(value) if type(value) in _PLAIN_NUMBERS else float(make_np(value).squeeze())
            self.scalar_dict.setdefault(run_logdir, []).append((walltime, global_step, kept))
        if self._comet_on:
            self._get_comet_logger().log_metrics(tag_scalar_dict, main_tag, step=global_step)

    def _sub_run_writer(self, run_logdir: str) -> _RunWriter | DummyFileWriter:
        """The writer of the sub-run ``run_logdir`` of ``add_scalars``, made on first use."""
        writer = self.all_writers.get(run_logdir)
        if writer is None:
            writer = self.all_writers[run_logdir] = self._run_writer(run_logdir)
        return writer

    def add_hparams(
        self,
        hparam_dict: dict,
        metric_dict: dict,
        name: str | None = None,
        global_step: int | None = None,
        *,
        hparam_domain_discrete: dict | None = None,
        run_name: str | None = None,
    ) -> None:
        """tensorboardX's ``add_hparams`` (a sub-run ``logdir/name``), plus torch's keyword arguments."""
        if type(hparam_dict) is not dict or type(metric_dict) is not dict:
            raise TypeError("hparam_dict and metric_dict should be dictionary.")
        hparam_dict = {key: hparam_value(value) for key, value in hparam_dict.items()}
        metric_dict = {key: scalar_number(value) for key, value in metric_dict.items()}
        experiment, start, end = hparams(hparam_dict, metric_dict)
        if hparam_domain_discrete:
            experiment = with_discrete_domains(experiment, hparam_domain_discrete)
        sub_run = os.path.join(self._get_file_writer().get_logdir(), run_name or name or str(time.time()))
        writer = self.all_writers.setdefault(sub_run, self._run_writer(sub_run))
        for summary in (experiment, start, end):
            writer.add_summary(summary)
        for key, value in metric_dict.items():
            writer.add_summary(scalar(key, value), global_step)
        self._get_comet_logger().log_parameters(hparam_dict, step=global_step)


class _RunWriter:
    """The tensorboardX ``FileWriter`` surface for one run directory, writing through the owner's segments."""

    def __init__(self, owner: HFSummaryWriter, logdir: str, run: str):
        self._owner = owner
        self._logdir = logdir
        self._run = run
        self._default_metadata: dict = {}

    def get_logdir(self) -> str:
        return self._logdir

    def stamp(self, step: int | None, walltime: float | None) -> tuple[int | None, float]:
        """The step and wall time an event gets: the arguments, else ``use_metadata``'s, else now."""
        if walltime is None:
            walltime = self._default_metadata.get("walltime") or time.time()
        if step is None:
            step = self._default_metadata.get("global_step")
        return (None if step is None else int(step)), walltime

    def add_event(self, event: Event, step: int | None = None, walltime: float | None = None) -> None:
        step, event.wall_time = self.stamp(step, walltime)
        if step is not None:
            event.step = step
        self._owner._write(self._run, event.SerializeToString())

    def add_summary(self, summary, global_step: int | None = None, walltime: float | None = None) -> None:
        if not isinstance(summary, Summary):  # torch.utils.tensorboard's own protos (Lightning's log_hyperparams)
            summary = Summary.FromString(summary.SerializeToString())
        self.add_event(Event(summary=summary), global_step, walltime)

    def add_graph(self, graph_profile, walltime: float | None = None) -> None:
        from tensorboardX.proto.event_pb2 import TaggedRunMetadata

        graph, stepstats = graph_profile
        self.add_event(Event(graph_def=graph.SerializeToString()), None, walltime)
        run_metadata = TaggedRunMetadata(tag="profiler", run_metadata=stepstats.SerializeToString())
        self.add_event(Event(tagged_run_metadata=run_metadata), None, walltime)

    def add_onnx_graph(self, graph, walltime: float | None = None) -> None:
        self.add_event(Event(graph_def=graph.SerializeToString()), None, walltime)

    add_openvino_graph = add_onnx_graph

    def flush(self) -> None:
        """Nothing waits in user space; the owner's ``flush()`` fsyncs."""

    def close(self) -> None:
        """Segments are sealed by the owner, all runs at once."""

    def reopen(self) -> None:
        """Nothing to reopen: the next event starts a new segment."""

    @contextlib.contextmanager
    def use_metadata(self, *, global_step: int | None = None, walltime: float | None = None) -> Iterator[_RunWriter]:
        if self._default_metadata:
            raise RuntimeError("Default metadata is already set.")
        if global_step is None and walltime is None:
            raise ValueError("At least one of `global_step` or `walltime` must be provided.")
        self._default_metadata = {"global_step": global_step, "walltime": walltime}
        try:
            yield self
        finally:
            self._default_metadata = {}


@dataclass
class _OpenSegment:
    segment: Segment
    row_id: int | None  # None: the file does not match the upload patterns, so the journal ignores it
    target: Path | None = None  # a prepared segment's path in its run dir (it waits under the journal's directory)


def _session_start():
    from tensorboardX.proto.event_pb2 import SessionLog

    return SessionLog(status=SessionLog.START)


def _check_arguments(repo_id, commit_every, repo_type, repo_private, token, close_timeout, drain_timeout) -> None:
    hub.check_repo_id(repo_id)
    check_minutes("commit_every", commit_every)
    if repo_type is not None and repo_type not in hub.TARGET_TYPES:
        raise ValueError(f"repo_type must be one of {', '.join(hub.TARGET_TYPES)}, got {repo_type!r}")
    if repo_private is not None and not isinstance(repo_private, bool):
        raise TypeError(f"repo_private must be True, False or None, got {repo_private!r}")
    if token is not None and not isinstance(token, str):
        raise TypeError(f"token must be a string or None, got a {type(token).__name__}")
    check_seconds("close_timeout", close_timeout)
    check_seconds("drain_timeout", drain_timeout)


def _resolve_logdir(logdir, kwargs: dict) -> Path:
    """tensorboardX's logdir rule (``logdir``, else torch's ``log_dir``, else ``runs/DATE_HOST+comment``)."""
    log_dir = kwargs.pop("log_dir", None)
    chosen = logdir if logdir is not None else log_dir
    if chosen is None:
        stamp = datetime.now().strftime("%b%d_%H-%M-%S")
        chosen = os.path.join("runs", f"{stamp}_{socket.gethostname()}{kwargs.get('comment', '')}")
    return Path(os.fspath(chosen))


def _prepare_logdir(logdir: Path) -> None:
    resolved = logdir.resolve()
    if resolved.parent == resolved:
        raise ValueError(
            f"logdir {str(logdir)!r} is a filesystem root: the writer keeps its journal in the logdir and adopts the "
            "event files it finds under it, so give it a directory of its own (e.g. logdir='runs/exp1')"
        )
    if logdir.exists() and not logdir.is_dir():
        raise NotADirectoryError(f"logdir {str(logdir)!r} exists and is not a directory")
    try:
        logdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot create logdir {str(logdir)!r}: {exc.strerror}") from None
    if not os.access(logdir, os.W_OK | os.X_OK):
        raise PermissionError(f"logdir {str(logdir)!r} is not writable")
