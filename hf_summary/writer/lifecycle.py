"""The writer's lifecycle: its background parts (ticker, uploader, presence, SIGTERM handler, exit hook) started
and stopped; `push_to_hub`; `close()`, reopening after it, and the way out on interpreter exit or SIGTERM."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import threading
import time
from pathlib import Path

from hf_summary._arguments import check_grace_period
from hf_summary.journal import Journal, RunSettings
from hf_summary.liveness import WriterPresence
from hf_summary.uploader.launcher import UploaderProcess
from hf_summary.writer.rolling import SIGNAL_LOCK_WAIT_S
from hf_summary.writer.startup import open_journal

logger = logging.getLogger("hf_summary")


class Lifecycle:
    """Mixed into `HFSummaryWriter`: seals through `SegmentRolling`'s
    `_roll`, writes out or gives up `HeldEvents`, runs
    `Ticker`'s `_tick` on its thread."""

    _settings: RunSettings
    _logdir_path: Path
    _write_to_disk: bool

    def _init_lifecycle(
        self,
        *,
        token: str | None,
        close_timeout: float,
        drain_timeout: float,
        handle_sigterm: bool,
        grace_period: float | None,
        offline: bool,
    ) -> None:
        self._token = token
        self._close_timeout = float(close_timeout)
        self._drain_timeout = float(drain_timeout)
        self._handle_sigterm = handle_sigterm
        self._grace_period = check_grace_period(grace_period)
        self._offline = offline
        self._presence = WriterPresence(offline=offline)
        self._uploader: UploaderProcess | None = None
        self._ticker: threading.Thread | None = None
        self._stop_ticking = threading.Event()
        self._previous_sigterm: object = None
        self._journal: Journal | None = None
        self._closed = True

    def _open_journal(self) -> None:
        self._journal, self._run_id = open_journal(self._logdir_path, self._settings, self._presence)

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

    def push_to_hub(self, *, blocking: bool = True, timeout: float | None = None) -> bool:
        """Seal what was logged so far and push it now instead of at the next tick.

        With `blocking`, wait (up to `timeout` s, default `close_timeout`) until the Hub holds it; returns
        whether it does (at once `False` when a segment's path on the Hub holds another run's file: that one
        is never pushed). Never raises on Hub errors: they are retried in the background. Offline, this only
        seals and returns False: `hf-summary sync` pushes later.
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

    # ---------------------------------------------------------------- closing, exit and signals

    def close(self) -> None:
        """Seal everything, wait (up to `close_timeout`) until the Hub holds it, and stop the uploader."""
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
        """tensorboardX lets `add_*` go on after `close()`: reopen the journal, ticker and uploader."""
        self._open_journal()
        self._start_background()

    def __exit__(self, exc_type, exc_val, exc_tb) -> None:
        self.close()

    def _seal_and_hand_over(self, *, interrupting: bool) -> int | None:
        """Seal and ask for a push without waiting (an urgent one from a signal handler); returns the
        request's number, for `_wait_for_push`. When this process ends, its pipe closes and the uploader
        drains on its own."""
        sealed = 0
        if not (interrupting and self._lock._is_owned()):  # never write into a record we interrupted
            with contextlib.suppress(Exception):
                self._write_out_held(lock_timeout=SIGNAL_LOCK_WAIT_S if interrupting else -1)
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
        """On the way out: wait, up to `grace_period`, until the uploader says the Hub holds what was
        sealed before `request`; return as soon as it does, or as soon as it cannot say so."""
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
