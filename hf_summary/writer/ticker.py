"""The ticker thread: a roll and a push every `commit_every`, the held events written out in between, and a
removed logdir noticed and made again."""

from __future__ import annotations

import logging
import threading
import time

from hf_summary.backlog import is_storage_error
from hf_summary.journal import RunSettings

logger = logging.getLogger("hf_summary")

_HELD_RETRY_S = 1.0  # while events are held, the ticker tries to write them out this often


class Ticker:
    """The ticker's loop, mixed into `HFSummaryWriter`: it drives the writer's rolls
    (`SegmentRolling`), held events (`HeldEvents`)
    and logdir recovery (`LogdirRecovery`), and asks the uploader for pushes."""

    _settings: RunSettings
    _stop_ticking: threading.Event
    _holding: bool

    def _tick(self) -> None:
        """Ticker thread: roll and ask for a push every `commit_every`; while events are held, try to write
        them out every `_HELD_RETRY_S` in between."""
        next_roll = time.monotonic() + self._settings.commit_every_s
        while not self._stop_ticking.wait(self._until_next_turn(next_roll)):
            if self._logdir_removed() and not self._recreate_logdir():
                continue  # nothing is written into the removed journal meanwhile: the events are held
            self._write_out_held()
            if time.monotonic() < next_roll:
                continue
            next_roll = time.monotonic() + self._settings.commit_every_s
            self._roll_and_push()

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
            # a running uploader is asked at every tick: an asset (a projector file...) may be all that changed
            if not self._offline and (self._journal.pending_segments() or self._uploader is not None):
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
