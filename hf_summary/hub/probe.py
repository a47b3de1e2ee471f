"""The first look at a push target, before a writer or a watcher starts: a token that cannot write fails at
once; a Hub that does not answer within a few seconds only delays the pushes (the uploader retries)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from hf_summary.hub.errors import HubError, PermanentHubError

logger = logging.getLogger("hf_summary")

PROBE_TIMEOUT_S = 3.0
T = TypeVar("T")


def probe(attempt: Callable[[], T], *, doing: str, timeout_s: float = PROBE_TIMEOUT_S) -> T | None:
    """Run `attempt` (its Hub requests) on a daemon thread for up to `timeout_s` seconds and return what it
    returned. Raises its `PermanentHubError`; returns `None` when it failed otherwise or did not
    finish in time, after a warning that `doing` (what the caller does meanwhile) goes on."""
    outcome: list[T | HubError] = []

    def run() -> None:
        try:
            outcome.append(attempt())
        except HubError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, name="hf-summary-access-check", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if not outcome:
        logger.warning("the Hub did not answer within %.0f s; %s goes on and pushes will retry", timeout_s, doing)
        return None
    if isinstance(outcome[0], PermanentHubError):
        raise outcome[0]
    if isinstance(outcome[0], HubError):
        logger.warning("the Hub is unreachable (%s); %s goes on and pushes will retry", outcome[0], doing)
        return None
    return outcome[0]
