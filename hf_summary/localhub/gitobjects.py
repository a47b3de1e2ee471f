"""Git object ids and in-memory tree shapes.

Blob ids are real git blob SHA-1s (of the content for regular files, of the LFS pointer text for LFS
files) and folder ids real git tree SHA-1s, so the client's own hashing agrees with the server's.
Commit ids are 40-hex SHA-1s over the commit's fields plus a nanosecond timestamp; they are not
byte-compatible git commits (nothing here needs that) but never collide between repos.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

LFS_POINTER_TEMPLATE = "version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n"


def git_blob_oid(content: bytes) -> str:
    """The git blob SHA-1 of `content` (what `git hash-object` prints)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return LFS_POINTER_TEMPLATE.format(oid=sha256, size=size).encode()


@dataclass(frozen=True)
class FileEntry:
    """A file in a tree. `oid` is the git blob id (of the pointer for LFS files)."""

    path: str
    oid: str
    size: int
    sha256: str
    lfs: bool

    @property
    def etag(self) -> str:
        """The id the client compares and caches by: SHA-256 for LFS files, git SHA-1 otherwise."""
        return self.sha256 if self.lfs else self.oid

    @property
    def pointer_size(self) -> int:
        return len(lfs_pointer(self.sha256, self.size))

    @classmethod
    def regular(cls, path: str, content: bytes) -> FileEntry:
        return cls(path, git_blob_oid(content), len(content), hashlib.sha256(content).hexdigest(), False)

    @classmethod
    def large(cls, path: str, sha256: str, size: int) -> FileEntry:
        return cls(path, git_blob_oid(lfs_pointer(sha256, size)), size, sha256, True)


@dataclass(frozen=True)
class DirEntry:
    path: str
    oid: str


Entry = FileEntry | DirEntry


def git_tree_oid(children: dict[str, Entry]) -> str:
    """The git tree SHA-1 of one folder level (`children` maps names to entries)."""

    def sort_key(item: tuple[str, Entry]) -> bytes:
        name, entry = item
        return name.encode() + (b"/" if isinstance(entry, DirEntry) else b"")

    body = b"".join(
        (b"40000 " if isinstance(entry, DirEntry) else b"100644 ")
        + name.encode()
        + b"\0"
        + bytes.fromhex(entry.oid)
        for name, entry in sorted(children.items(), key=sort_key)
    )
    return hashlib.sha1(b"tree %d\0" % len(body) + body).hexdigest()


def commit_oid(*, repo_key: str, tree: str, parent: str | None, author: str, title: str, message: str) -> str:
    text = f"repo {repo_key}\ntree {tree}\nparent {parent or ''}\nauthor {author} {time.time_ns()}\n\n{title}\n\n{message}"
    return hashlib.sha1(text.encode()).hexdigest()
