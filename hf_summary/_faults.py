"""The crash-test hook shared by the uploader and compaction: `HF_SUMMARY_FAULT_POINT` names where to die."""

from __future__ import annotations

import os
import signal
import threading


def fault(point: str) -> None:
    """SIGKILL this process at `point` when `HF_SUMMARY_FAULT_POINT` names it (after
    `HF_SUMMARY_FAULT_DELAY` seconds, if set, without waiting for them)."""
    if os.environ.get("HF_SUMMARY_FAULT_POINT") != point:
        return
    delay = float(os.environ.get("HF_SUMMARY_FAULT_DELAY", "0"))
    if delay:
        threading.Timer(delay, os.kill, (os.getpid(), signal.SIGKILL)).start()
    else:
        os.kill(os.getpid(), signal.SIGKILL)
