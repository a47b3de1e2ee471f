"""The uploader's urgent final drain when its job is being stopped: SIGTERM, SIGHUP and SIGINT never kill the
uploader outright. The first one (or a `preempt` request from a trainer that got SIGTERM itself) starts a
drain bounded by the grace period; a second signal ends the process at once, and so does a watchdog a little
after the grace period when a push hangs. Whatever is left stays in the journal, for the next uploader or
`hf-summary recover`."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("hf_summary")

WATCHDOG_MARGIN_S = 0.5
LAST_WORDS_S = 0.5
WAKE = object()  # put on the uploader's queue to wake its loop


def flush_logs() -> None:
    """Before an `os._exit`: what was logged reaches its files."""
    for handler in logger.handlers:
        with contextlib.suppress(Exception):
            handler.flush()


class Preemption:
    """The urgent final drain's state: started by the first stop signal or by the trainer's `preempt`
    request, bounded by `grace_s`. Signal-handler safe: it only sets fields and wakes the loop; a watchdog
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
            flush_logs()
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
        self._wakeups.put(WAKE)
        threading.Thread(target=self._watchdog, name="preemption-deadline", daemon=True).start()

    def _watchdog(self) -> None:
        time.sleep(self.grace_s + WATCHDOG_MARGIN_S)  # the loop ends by itself at the deadline when it can
        logger.error("grace period of %.1f s ended during a push; exiting, what is pending stays in the "
                     "journal for `hf-summary recover`", self.grace_s)
        if self.last_words is not None:  # bounded: the journal may be locked by the push it interrupts
            words = threading.Thread(target=self.last_words, name="last-words", daemon=True)
            words.start()
            words.join(LAST_WORDS_S)
        flush_logs()
        os._exit(1)
