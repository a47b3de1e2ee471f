"""Content-addressed blob files: `<data>/blobs/<sha256[:2]>/<sha256[2:]>`.

Blobs are written to a temporary file and renamed into place, so a blob path either does not exist
or holds the complete content; a crash leaves at most an orphan temporary file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root / "blobs"
        self.tmp = root / "tmp"
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:]

    def exists(self, sha256: str, size: int) -> bool:
        try:
            return self.path(sha256).stat().st_size == size
        except FileNotFoundError:
            return False

    def put(self, content: bytes) -> str:
        """Store `content`; returns its SHA-256."""
        sha256 = hashlib.sha256(content).hexdigest()
        if not self.exists(sha256, len(content)):
            fd, tmp = tempfile.mkstemp(dir=self.tmp)
            with os.fdopen(fd, "wb") as f:
                f.write(content)
            self.adopt(Path(tmp), sha256)
        return sha256

    def new_temp(self) -> tuple[int, Path]:
        """A temporary file (fd, path) for streaming an upload; pass it to `adopt` or unlink it."""
        fd, tmp = tempfile.mkstemp(dir=self.tmp)
        return fd, Path(tmp)

    def adopt(self, tmp: Path, sha256: str) -> None:
        """Move a fully written temporary file into place as blob `sha256`."""
        target = self.path(sha256)
        target.parent.mkdir(exist_ok=True)
        os.replace(tmp, target)
