"""The statistics every benchmark reports, one definition each."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any


def percentile(values: Iterable[float], q: float) -> float | None:
    """The `q` quantile (0 <= q <= 1) of `values`, nearest rank: the value with `int(q * n)` smaller ones
    (the largest for q = 1); None for no values. p99 of 100 values is their maximum."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median(values: Iterable[Any]) -> float | None:
    """The median of the numbers among `values` (None and NaN left out); None when there are none."""
    numbers = [v for v in values if isinstance(v, (int, float)) and v == v]
    return statistics.median(numbers) if numbers else None


def min_or_none(values: Iterable[Any]) -> Any:
    numbers = [v for v in values if v is not None]
    return min(numbers) if numbers else None


def max_or_none(values: Iterable[Any]) -> Any:
    numbers = [v for v in values if v is not None]
    return max(numbers) if numbers else None


def divide(a: float | None, b: float | None) -> float | None:
    """`a / b`, or None when either is missing or `b` is zero."""
    return a / b if a is not None and b else None


def spread(values: list[float]) -> str:
    """`min–max` of `values` (rounded), or "" for fewer than two."""
    return f"{min(values):.0f}–{max(values):.0f}" if len(values) > 1 else ""
