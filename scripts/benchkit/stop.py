"""Stopping a job as a scheduler does: SIGTERM to every one of its processes at once, SIGKILL to whatever still
runs once the grace period is over."""

from __future__ import annotations

import contextlib
import signal

import psutil


def stop_like_a_scheduler(processes: list[psutil.Process], grace_s: float) -> None:
    """SIGTERM `processes` together; SIGKILL those still running `grace_s` seconds later."""
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
