"""Which assets changed since they were last pushed, without walking the whole logdir at every push.

Assets are the files other than segments that match the upload patterns: `add_embedding`'s projector files, a
trainer's `hparams.yaml`, another writer's event files. Any code may write them, at any time, anywhere under the
logdir, so they cannot be recorded as they are written (as segments are): they have to be found. An
`AssetTracker` lives as long as its uploader and, at each push,

- lstats every directory it knows and lists again only those whose inode, mtime or ctime changed: making, removing
  or renaming an entry changes its directory's mtime, so a new file or subdirectory shows in the listing of its
  parent, and a directory that became another writer's logdir (it got a journal) is left from then on;
- stats every asset it knows (a file rewritten in place changes its own size or mtime, not its directory's) and
  reads, to hash it, only one whose size or mtime differs from what was pushed.

A listing is trusted only when its directory's mtime and ctime are at least `RACY_MARGIN_S` older than the
clock read before the listing: filesystems stamp times coarsely (a clock tick, a second on some), so an entry
made right after the listing may leave the mtime as it was; a directory changed that recently is listed again at
the next push. A final drain (`full=True`, and so `recover`, whose uploader starts closing) lists everything,
so even a network filesystem whose clock is far behind ours loses nothing.

Why not something else: walking only the run dirs the journal knows misses projector directories and files other
code writes; inotify is missing on network filesystems (NFS, Lustre) and knows nothing across restarts. The cost
per push is one lstat per directory and one stat per asset, plus the listings of the directories that changed (a
run dir changes at each tick: its new segment), bounded by compaction, not growing with the run's length.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hf_summary.journal import RunSettings
from hf_summary.patterns import path_matches
from hf_summary.reconcile import list_dir, logdir_relative
from hf_summary.segments import file_sha256, parse_segment_sequence

RACY_MARGIN_S = 2.0

_DirSignature = tuple[int, int, int]  # st_ino, st_mtime_ns, st_ctime_ns


@dataclass(frozen=True)
class _Known:
    """A directory as last listed: its signature then, whether that listing can be reused while the signature
    holds, its subdirectories (logdir-relative) and its assets (logdir-relative path, absolute path). Paths are
    kept as strings: a push only stats them."""

    signature: _DirSignature
    trusted: bool
    subdirs: tuple[str, ...]
    assets: tuple[tuple[str, str], ...]


class AssetTracker:
    """The assets of one logdir that changed since they were pushed (see the module docstring)."""

    def __init__(self, logdir: Path, settings: RunSettings) -> None:
        self.logdir = logdir
        self.settings = settings
        self._root = os.fspath(logdir)
        self._known: dict[str, _Known] = {}  # by logdir-relative directory ("" is the logdir)
        self.listings = 0  # directories listed so far (for benchmarks and tests)

    def changed(self, pushed: dict[str, Any], *, full: bool = False) -> dict[str, dict[str, Any]]:
        """Assets that may have changed since they were pushed: logdir-relative path -> `{"size", "mtime_ns",
        "sha256"}`. `pushed` maps paths to that record as last pushed (older journals: the sha256 alone). One
        touched but not changed comes back with its new stat signature (pushing it again is a no-op). `full`
        lists every directory again."""
        if full:
            self._known.clear()
        changed: dict[str, dict[str, Any]] = {}
        for known in self._walk():
            for relative, path in known.assets:
                if (record := _changed(path, pushed.get(relative))) is not None:
                    changed[relative] = record
        return changed

    def files(self, *, full: bool = False) -> list[str]:
        """Logdir-relative paths of every asset, found as `changed` finds them, without reading any."""
        if full:
            self._known.clear()
        return [relative for known in self._walk() for relative, _ in known.assets]

    def _walk(self) -> list[_Known]:
        """Every directory of the logdir, each listed again only if it changed (see the module docstring)."""
        seen: dict[str, _Known] = {}
        stack = [""]
        while stack:
            run = stack.pop()
            known = self._directory(run)
            if known is None:
                continue
            seen[run] = known
            stack += known.subdirs
        self._known = seen  # directories gone, or now another writer's logdir, are forgotten
        return list(seen.values())

    def _directory(self, run: str) -> _Known | None:
        """What directory `run` holds now, listed again only when it changed; `None` if it is no directory
        any more."""
        path = os.path.join(self._root, run) if run else self._root
        now_ns = time.time_ns()
        try:
            info = os.lstat(path)
        except OSError:
            return None
        if not stat.S_ISDIR(info.st_mode):
            return None
        signature = (info.st_ino, info.st_mtime_ns, info.st_ctime_ns)
        known = self._known.get(run)
        if known is not None and known.trusted and known.signature == signature:
            return known
        listing = list_dir(Path(path))
        self.listings += 1
        ours = not (run and listing.nested_run)  # another writer's logdir is remembered as holding nothing of ours
        margin_ns = int(RACY_MARGIN_S * 1e9)
        relatives = [logdir_relative(run, name) for name in listing.files] if ours else []
        return _Known(
            signature=signature,
            trusted=max(info.st_mtime_ns, info.st_ctime_ns) + margin_ns <= now_ns,
            subdirs=tuple(logdir_relative(run, name) for name in listing.subdirs) if ours else (),
            assets=tuple((relative, os.path.join(self._root, relative)) for relative in relatives
                         if self._is_asset(relative)),
        )

    def _is_asset(self, relative: str) -> bool:
        return parse_segment_sequence(relative) is None and path_matches(
            relative, self.settings.allow_patterns, self.settings.ignore_patterns
        )


def _changed(path: str, before: Any) -> dict[str, Any] | None:
    """`{"size", "mtime_ns", "sha256"}` of `path` unless its size and mtime are those of `before` (what was
    pushed); `None` also when it is gone or no longer a regular file."""
    try:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode):
            return None
        signature = {"size": info.st_size, "mtime_ns": info.st_mtime_ns}
        if isinstance(before, dict) and {key: before.get(key) for key in signature} == signature:
            return None
        return {**signature, "sha256": file_sha256(path)}
    except OSError:  # gone since the listing: the directory's next listing drops it
        return None
