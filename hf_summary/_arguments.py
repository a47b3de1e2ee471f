"""Checks of the push settings that a writer or a watcher is given, so that a bad one fails before anything
starts, with a message that says what to fix."""

from __future__ import annotations

import math
import os
import threading

DEFAULT_GRACE_PERIOD_S = 8.0
GRACE_PERIOD_ENV = "HF_SUMMARY_GRACE_PERIOD"


def default_grace_period() -> float:
    """The grace budget of a final drain on preemption: `HF_SUMMARY_GRACE_PERIOD` seconds, else 8 s (room
    for one push inside `docker stop`'s default 10 s before its SIGKILL)."""
    raw = os.environ.get(GRACE_PERIOD_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_GRACE_PERIOD_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise ValueError(f"{GRACE_PERIOD_ENV} must be a number of seconds >= 0, got {raw!r}")
    return value


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_minutes(name: str, value: object) -> float:
    """`value` as a positive, finite number of minutes that a timer can wait (NaN and inf refused)."""
    if not _is_number(value) or not 0 < value * 60 <= threading.TIMEOUT_MAX:
        raise ValueError(f"{name} must be a positive (finite) number of minutes, got {value!r}")
    return float(value)


def check_seconds(name: str, value: object) -> float:
    """`value` as a number of seconds >= 0; `inf` means no limit (NaN refused)."""
    if not _is_number(value) or not value >= 0:
        raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
    return float(value)


def check_grace_period(grace_period: float | None) -> float:
    """`grace_period` as given (finite, >= 0), or `default_grace_period` for `None`."""
    if grace_period is None:
        return default_grace_period()
    if not _is_number(grace_period) or not 0 <= grace_period < math.inf:
        raise ValueError(f"grace_period must be a finite number of seconds >= 0, got {grace_period!r}")
    return float(grace_period)


def join_path_in_repo(path_in_repo: str | None, logdir_name: str) -> str:
    """The run's folder in the repo: `path_in_repo/logdir_name`, refusing absolute paths and '.'/'..'."""
    if path_in_repo is not None and not isinstance(path_in_repo, str):
        raise TypeError(f"path_in_repo must be a string, got {path_in_repo!r}")
    folder = (path_in_repo or "").strip("/")
    if (path_in_repo or "").startswith("/") or "\\" in folder or any(p in ("..", ".") for p in folder.split("/")):
        raise ValueError(f"path_in_repo must be a relative folder without '.' or '..', got {path_in_repo!r}")
    return f"{folder}/{logdir_name}" if folder else logdir_name
