"""Stop signals that reach a long-lived process while it is still starting (its imports take about a second,
its first Hub request more): kept instead of fatal, and replayed to the real handler once it is installed.

Used by the uploader child and by `hf-summary watch`, both of which a scheduler may signal (every process of
the job gets SIGTERM) before they are ready to handle it.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)

_held: list[int] = []


def _keep(signum: int, frame: object) -> None:
    _held.append(signum)


def hold() -> None:
    """From now on, keep each stop signal for `replay` (call it from the main thread, first thing)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _keep)


def replay(handler: Callable[[int, object], None]) -> None:
    """Call `handler` for each stop signal kept so far, in arrival order (once the real handlers are in)."""
    while _held:
        handler(_held.pop(0), None)
