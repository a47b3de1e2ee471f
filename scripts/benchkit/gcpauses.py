"""The garbage collections during a measured loop, to tell which slow calls a collection explains."""

from __future__ import annotations

import array
import gc
import time
from collections.abc import Callable, Iterable


class GCPauses:
    """While entered, records the span of every garbage collection (any thread's) on `clock`, in its units
    (default `time.perf_counter_ns`). The spans go into a flat integer array, so recording makes no garbage."""

    def __init__(self, clock: Callable[[], int] = time.perf_counter_ns) -> None:
        self._clock = clock
        self._flat = array.array("q")  # start, end of each collection
        self._started: list[int] = []

    def __enter__(self) -> GCPauses:
        gc.callbacks.append(self._on_gc)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started.append(self._clock())
        elif self._started:
            self._flat.extend((self._started.pop(), self._clock()))

    def spans(self) -> list[list[int]]:
        """`[start, end]` of each collection recorded, in order (JSON as it is)."""
        flat = self._flat.tolist()
        return [flat[i : i + 2] for i in range(0, len(flat), 2)]


def overlaps(start: float, end: float, spans: Iterable[Iterable[float]]) -> bool:
    """Whether `start`..`end` (on the spans' clock and units) overlaps one of `spans`."""
    return any(a < end and start < b for a, b in spans)


def longest(spans: Iterable[Iterable[float]]) -> float:
    """The longest of `spans` (0 for none), in their units."""
    return max((b - a for a, b in spans), default=0)
