"""The exit status of every `hf-summary` command (and of the library calls behind them: `recover`,
`sync`, `watch`)."""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0  # the Hub holds everything
    INCOMPLETE = 1  # something is still pending or missing; running again (or later) may finish it
    FAILED = 2  # retrying will not help until someone acts (token, permissions, bad arguments, unusable journal)
    BUSY = 3  # another live process holds the run
    INTERRUPTED = 130  # a second stop signal: left at once (128 + SIGINT, as a shell says)
