"""A local mirror of the event files of a run on the Hub, kept up to date one refresh at a time.

Downloads go to the Hugging Face cache (``HF_HUB_CACHE``); the mirror itself is a plain directory tree
(hard links to the cached files, or copies across file systems) that TensorBoard can watch. Each refresh
asks the Hub for the revision's head commit; only when it moved is the folder listed again. New event
files are fetched once and appear under their final name only when complete; files the Hub no longer
has (compaction) are removed. Sealed segments never change, so a mirrored file of the same size as the
Hub's is up to date, also after a restart.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from huggingface_hub import constants

from hf_summary.hub import HubClient, RemoteFile
from hf_summary.segments import is_event_file


@dataclass(frozen=True)
class Refresh:
    """What one refresh changed in the mirror (paths relative to the mirrored folder)."""

    added: list[str]
    removed: list[str]


def default_dirs(cache_dir: Path | None) -> tuple[Path, Path]:
    """(Hub download cache, root of the mirrors): ``CACHE_DIR/hub`` and ``CACHE_DIR/view`` when given,
    else ``HF_HUB_CACHE`` and ``HF_ASSETS_CACHE/hf-summary/view``."""
    if cache_dir is not None:
        return cache_dir / "hub", cache_dir / "view"
    return Path(constants.HF_HUB_CACHE), Path(constants.HF_ASSETS_CACHE) / "hf-summary" / "view"


class Mirror:
    """The event files under ``path`` in a repo, mirrored into ``logdir`` (see the module docstring)."""

    def __init__(self, client: HubClient, path: str, *, cache_dir: Path | None = None) -> None:
        self.client = client
        self.path = path.strip("/")
        self._downloads, root = default_dirs(cache_dir)
        repo_dir = f"{client.repo_type}s--{client.repo_id.replace('/', '--')}"
        self.logdir = root / repo_dir / quote(client.revision, safe="") / self.path
        self._head: str | None = None
        self._files: dict[str, RemoteFile] = {}  # by path in repo: what the mirror holds

    def __len__(self) -> int:
        """How many event files the mirror holds."""
        return len(self._files)

    def refresh(self) -> Refresh:
        """Bring the mirror up to the revision's head. Raises :class:`hf_summary.hub.HubError`; the first
        refresh raises :class:`hf_summary.hub.MissingRepoError` when the folder does not exist."""
        head = self.client.head()
        if head == self._head:
            return Refresh(added=[], removed=[])
        listing = self.client.list_files(self.path, commit=head, missing_ok=self._head is not None)
        remote = {path: entry for path, entry in listing.items() if is_event_file(path) and _inside(path)}
        if self._head is None:
            self._adopt(remote)
        removed = [self._remove(path) for path in sorted(self._files) if path not in remote]
        added = [self._fetch(entry, head) for path, entry in sorted(remote.items()) if path not in self._files]
        self._head = head
        return Refresh(added=added, removed=removed)

    def _local(self, path_in_repo: str) -> Path:
        return self.logdir / (path_in_repo[len(self.path) + 1 :] if self.path else path_in_repo)

    def _adopt(self, remote: dict[str, RemoteFile]) -> None:
        """Keep the event files a previous run left in the mirror that match the Hub's by path and size;
        delete the others."""
        if not self.logdir.is_dir():
            return
        for local in sorted(self.logdir.rglob("*")):
            if not (local.is_file() and is_event_file(local.name)):
                continue
            rel = local.relative_to(self.logdir).as_posix()
            path = f"{self.path}/{rel}" if self.path else rel
            entry = remote.get(path)
            if entry is not None and entry.size == local.stat().st_size:
                self._files[path] = entry
            else:
                local.unlink()

    def _fetch(self, entry: RemoteFile, head: str) -> str:
        target = self._local(entry.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        cached = self.client.fetch_file(entry.path, commit=head, cache_dir=self._downloads)
        partial = target.parent / f".partial-{os.getpid()}-{target.name.replace('tfevents', 'tfe')}"
        partial.unlink(missing_ok=True)
        try:
            os.link(cached, partial)
        except OSError:
            shutil.copyfile(cached, partial)
        os.replace(partial, target)
        self._files[entry.path] = entry
        return entry.path

    def _remove(self, path: str) -> str:
        target = self._local(path)
        target.unlink(missing_ok=True)
        for folder in target.parents:
            if folder == self.logdir or not folder.is_relative_to(self.logdir) or any(folder.iterdir()):
                break
            folder.rmdir()
        del self._files[path]
        return path


def _inside(path_in_repo: str) -> bool:
    """Whether the path stays inside the mirror (a Hub never sends ``..`` or absolute paths; never trust it)."""
    parts = path_in_repo.split("/")
    return not path_in_repo.startswith("/") and ".." not in parts and "" not in parts
