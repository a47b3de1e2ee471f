"""A local mirror of the event files of a run on the Hub, kept up to date one refresh at a time.

Downloads go to the Hugging Face cache (`HF_HUB_CACHE`); the mirror itself is a plain directory tree
(hard links to the cached files, or copies across file systems) that TensorBoard can watch. Each refresh
asks the Hub for the revision's head commit; only when it moved is the folder listed again (a bucket has
no commits: its folder is listed at every refresh). New event files are fetched once, one after the other
in path order, and appear under their final name only when complete: TensorBoard's loader moves on to
the next file by name and never reads an earlier one again. Files the Hub no longer has (compaction) are
emptied, and deleted at the next start (before TensorBoard starts). Sealed segments never change, so a
mirrored file of the same size as the Hub's is up to date, also after a restart.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from huggingface_hub import constants

from hf_summary.hub import BUCKET, PushTarget, RemoteFile
from hf_summary.segments import is_event_file


@dataclass(frozen=True)
class Refresh:
    """What one refresh changed in the mirror (paths relative to the mirrored folder)."""

    added: list[str]
    removed: list[str]


def default_dirs(cache_dir: Path | None) -> tuple[Path, Path]:
    """(Hub download cache, root of the mirrors): `CACHE_DIR/hub` and `CACHE_DIR/view` when given,
    else `HF_HUB_CACHE` and `HF_ASSETS_CACHE/hf-summary/view`."""
    if cache_dir is not None:
        return cache_dir / "hub", cache_dir / "view"
    return Path(constants.HF_HUB_CACHE), Path(constants.HF_ASSETS_CACHE) / "hf-summary" / "view"


class Mirror:
    """The event files under `path` in a repo or bucket, mirrored into `logdir` (see the module
    docstring). `client` is a repo's or a bucket's client (`hub.open_client`)."""

    def __init__(self, client: PushTarget, path: str, *, cache_dir: Path | None = None) -> None:
        self.client = client
        self.path = path.strip("/")
        self._downloads, root = default_dirs(cache_dir)
        self.logdir = root / f"{client.repo_type}s--{client.repo_id.replace('/', '--')}"
        if client.repo_type != BUCKET:
            self.logdir /= quote(client.revision, safe="")
        self.logdir /= self.path
        self._listed = False
        self._head: str | None = None
        self._files: dict[str, RemoteFile] = {}  # by path in repo: what the mirror holds

    def __len__(self) -> int:
        """How many event files the mirror holds."""
        return len(self._files)

    def refresh(self) -> Refresh:
        """Bring the mirror up to the revision's head (a bucket: to what it holds now). Raises
        `hf_summary.hub.HubError`; the first refresh raises `hf_summary.hub.MissingRepoError`
        when the repo or folder does not exist."""
        head = self.client.head()
        if self._listed and head is not None and head == self._head:
            return Refresh(added=[], removed=[])
        listing = self.client.list_files(self.path, commit=head, missing_ok=self._listed)
        remote = {path: entry for path, entry in listing.items() if is_event_file(path) and self._inside(path)}
        if not self._listed:
            self._adopt(remote)
        removed = [self._remove(path) for path in sorted(self._files) if path not in remote]
        added = [self._fetch(entry, head) for path, entry in sorted(remote.items()) if path not in self._files]
        self._listed, self._head = True, head
        return Refresh(added=added, removed=removed)

    def _inside(self, path_in_repo: str) -> bool:
        """Whether the path is in the mirrored folder and stays inside the mirror (a Hub never sends `..`
        or absolute paths; never trust it)."""
        parts = path_in_repo.split("/")
        in_folder = not self.path or path_in_repo.startswith(f"{self.path}/")
        return in_folder and not path_in_repo.startswith("/") and ".." not in parts and "" not in parts

    def _local(self, path_in_repo: str) -> Path:
        return self.logdir / (path_in_repo[len(self.path) + 1 :] if self.path else path_in_repo)

    def _adopt(self, remote: dict[str, RemoteFile]) -> None:
        """Keep the event files a previous run left in the mirror that match the Hub's by path and size;
        delete the others (the files it emptied among them)."""
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

    def _fetch(self, entry: RemoteFile, head: str | None) -> str:
        target = self._local(entry.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        self._put(target, self.client.fetch_file(entry, commit=head, cache_dir=self._downloads))
        self._files[entry.path] = entry
        return entry.path

    def _remove(self, path: str) -> str:
        """Empty the file rather than delete it: TensorBoard's Python loader reads the file it follows by name
        at each reload, and once that file is gone it stops following the run for good, while an empty one
        reads as "nothing new" and it moves on to the next file. A mirror's first refresh deletes the files
        emptied before (see `_adopt`)."""
        target = self._local(path)
        if target.is_file():
            self._put(target, None)
        del self._files[path]
        return path

    @staticmethod
    def _put(target: Path, content: Path | None) -> None:
        """Make `target` a hard link to (or a copy of) `content`, or an empty file, in one step: a reader
        sees the old file or the new one, whole, never a partial one (the temporary name is no event
        file's)."""
        partial = target.parent / f".partial-{os.getpid()}-{target.name.replace('tfevents', 'tfe')}"
        partial.unlink(missing_ok=True)
        if content is None:
            partial.touch()
        else:
            try:
                os.link(content, partial)
            except OSError:
                shutil.copyfile(content, partial)
        os.replace(partial, target)
