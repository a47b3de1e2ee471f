"""Bucket files: one row per path in `<data>/hub.db` (buckets themselves are `repos` rows of type "bucket").

No commits, no history: each add or delete is its own transaction, as the Hub's batches are not atomic.
"""

from __future__ import annotations

from dataclasses import dataclass

from hf_summary.localhub.storage import BUCKET, Repo, Storage

SCHEMA = """
CREATE TABLE IF NOT EXISTS bucket_files (
    repo INTEGER NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL, xet_hash TEXT NOT NULL,
    mtime_ms INTEGER NOT NULL, content_type TEXT, uploaded_at REAL NOT NULL, PRIMARY KEY (repo, path));
"""


@dataclass(frozen=True)
class BucketFile:
    path: str
    size: int
    sha256: str
    xet_hash: str
    mtime_ms: int
    content_type: str | None
    uploaded_at: float


@dataclass(frozen=True)
class BucketFolder:
    path: str
    uploaded_at: float


class BucketStore:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        storage.connection().executescript(SCHEMA)

    def put(self, repo: Repo, file: BucketFile) -> None:
        with self.storage.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO bucket_files VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (repo.pk, file.path, file.size, file.sha256, file.xet_hash, file.mtime_ms, file.content_type,
                 file.uploaded_at),
            )

    def delete(self, repo: Repo, path: str) -> None:
        with self.storage.transaction() as db:
            db.execute("DELETE FROM bucket_files WHERE repo = ? AND path = ?", (repo.pk, path))

    def delete_bucket(self, repo: Repo) -> None:
        """Forget the bucket and its files (their blobs stay: they are content-addressed and shared)."""
        self.storage.delete_repo(repo)
        with self.storage.transaction() as db:
            db.execute("DELETE FROM bucket_files WHERE repo = ?", (repo.pk,))

    def get(self, repo: Repo, path: str) -> BucketFile | None:
        row = (
            self.storage.connection()
            .execute("SELECT * FROM bucket_files WHERE repo = ? AND path = ?", (repo.pk, path))
            .fetchone()
        )
        return None if row is None else _file(row)

    def listing(self, repo: Repo, prefix: str, *, recursive: bool) -> list[BucketFile | BucketFolder]:
        """Files (and folders) under folder `prefix` ("" for the root), sorted by path."""
        folder = f"{prefix}/" if prefix else ""
        rows = self.storage.connection().execute(
            "SELECT * FROM bucket_files WHERE repo = ? AND substr(path, 1, ?) = ? ORDER BY path",
            (repo.pk, len(folder), folder),
        )
        files: list[BucketFile] = []
        folders: dict[str, float] = {}
        for row in rows:
            file = _file(row)
            parts = file.path[len(folder) :].split("/")
            for depth in range(1, len(parts) if recursive else min(2, len(parts))):
                path = folder + "/".join(parts[:depth])
                folders[path] = max(folders.get(path, 0.0), file.uploaded_at)
            if recursive or len(parts) == 1:
                files.append(file)
        entries: list[BucketFile | BucketFolder] = [*files, *(BucketFolder(p, t) for p, t in folders.items())]
        return sorted(entries, key=lambda e: e.path)

    def totals(self, repo: Repo) -> tuple[int, int]:
        """(number of files, total bytes)."""
        count, size = (
            self.storage.connection()
            .execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM bucket_files WHERE repo = ?", (repo.pk,))
            .fetchone()
        )
        return count, size

    def stats(self) -> dict[str, dict[str, int]]:
        """Per bucket, the keys `Storage.repo_stats` has: commits (always 0), files and bytes."""
        out = {}
        for repo in self.storage.list_repos(BUCKET):
            count, size = self.totals(repo)
            out[repo.key] = {"commits": 0, "files": count, "bytes": size}
        return out


def _file(row) -> BucketFile:
    return BucketFile(
        row["path"], row["size"], row["sha256"], row["xet_hash"], row["mtime_ms"], row["content_type"], row["uploaded_at"]
    )
