"""Events the logdir's filesystem refused (full, over quota, I/O error, read-only, stale, removed), held in memory.

While a `Backlog` holds anything, every new event joins it (so each run dir keeps its order) and the
writer retries writing it out at its ticks, off the `add_*` path. The backlog is bounded in bytes: it keeps the
oldest events of an episode, and from the first event that does not fit until the filesystem takes writes again
every event is dropped and counted until the backlog is written out. So an episode loses at most one contiguous stretch of what was logged (its
end), never scattered events. An *episode* runs from the first refused write to the moment
the backlog is empty again; its counts are what the writer reports (log, journal, `status`).

This module knows neither the journal nor the Hub.
"""

from __future__ import annotations

import errno
import sqlite3
import time
from collections import deque
from dataclasses import dataclass, field

__all__ = ["DEFAULT_LIMIT_BYTES", "DISK_EPISODE_KEY", "STORAGE_ERRNOS", "Backlog", "Episode", "describe_episode",
           "is_storage_error"]

DEFAULT_LIMIT_BYTES = 32 << 20
DISK_EPISODE_KEY = "disk_episode"  # the journal value that holds the latest episode, for `hf-summary status`
# A filesystem that cannot take a write now but may later: full, quota, I/O error, remounted read-only, an NFS
# handle gone stale, the logdir (or a run dir) removed.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ESTALE, errno.ENOENT})


def is_storage_error(exc: BaseException) -> bool:
    """Whether `exc` is the logdir's storage refusing a write for now (an event file's or the journal's)."""
    if isinstance(exc, OSError):
        return exc.errno in STORAGE_ERRNOS
    return isinstance(exc, sqlite3.OperationalError)  # the journal: "unable to open", "readonly database", ...


@dataclass
class Episode:
    """One stretch of time during which events were held: when, why, and what became of them."""

    since: float  # wall time of the first refused write
    cause: str  # that write's error, e.g. "[Errno 28] No space left on device"
    held: int = 0  # events that entered the backlog
    dropped: int = 0  # events that did not fit and were lost
    dropped_bytes: int = 0
    written: int = 0  # events written out from the backlog
    ended: float | None = None
    lost: int = 0  # events still held when the writer closed and could not write them

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def describe(self) -> str:
        return describe_episode(self.as_dict())


def describe_episode(episode: dict) -> str:
    """One line for an `Episode` (as its dict, as the journal keeps it)."""
    def clock(at: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))

    cause = episode["cause"]
    what = "disk full" if any(f"[Errno {n}]" in cause for n in (errno.ENOSPC, errno.EDQUOT)) else "writes refused"
    ended = "" if episode.get("ended") is None else f"; ended {clock(episode['ended'])}"
    lost = f", {episode['lost']} lost at close" if episode.get("lost") else ""
    return (f"{what} since {clock(episode['since'])} ({cause}): {episode['held']} event(s) held, "
            f"{episode['written']} written out, {episode['dropped']} dropped{lost}{ended}")


@dataclass
class Backlog:
    """A bounded FIFO of `(run, record data)`. Not thread-safe: the writer's lock serialises it."""

    limit_bytes: int = DEFAULT_LIMIT_BYTES
    _items: deque = field(default_factory=deque)
    _bytes: int = 0
    episode: Episode | None = None

    def __bool__(self) -> bool:
        return bool(self._items)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        return self._bytes

    def hold(self, run: str, data: bytes, cause: BaseException | None = None) -> bool:
        """Keep an event; returns whether this starts an episode. `cause`: the error that refused it (only
        the first one of an episode is kept)."""
        started = self.episode is None
        if started:
            self.episode = Episode(since=time.time(), cause=str(cause) if cause is not None else "storage refused")
        if self.episode.dropped or self._bytes + len(data) > self.limit_bytes:
            self.episode.dropped += 1
            self.episode.dropped_bytes += len(data)
            return started
        self._items.append((run, data))
        self._bytes += len(data)
        self.episode.held += 1
        return started

    def put_first(self, events: list[tuple[str, bytes]], cause: str) -> None:
        """Hold `events` ahead of those held already (they were logged before them), whatever the bound: they
        were accepted once (the records of a removed file, read back)."""
        if self.episode is None:
            self.episode = Episode(since=time.time(), cause=cause)
        self._items.extendleft(reversed(events))
        self._bytes += sum(len(data) for _, data in events)
        self.episode.held += len(events)

    def peek(self) -> tuple[str, bytes]:
        return self._items[0]

    def pop(self) -> None:
        """The oldest event was written out."""
        _, data = self._items.popleft()
        self._bytes -= len(data)
        self.episode.written += 1

    def end(self) -> Episode | None:
        """The episode is over (the backlog is empty): return it and start afresh."""
        episode, self.episode = self.episode, None
        if episode is not None:
            episode.ended = time.time()
        return episode

    def abandon(self) -> Episode | None:
        """The writer closes with events still held that cannot be written: count them lost, end the episode."""
        if self.episode is not None:
            self.episode.lost = len(self._items)
        self._items.clear()
        self._bytes = 0
        return self.end()
