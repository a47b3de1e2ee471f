"""Persistent repo state: SQLite metadata (`<data>/hub.db`, WAL) plus the content-addressed blob store.

Model: a repo has refs (branches, `refs/pr/N`) pointing at commits; a commit points at a root tree;
trees are immutable, content-addressed rows shared by every commit and repo that has the same folder.
All writes go through one lock and one `BEGIN IMMEDIATE` transaction, so concurrent commits to a
repo are serialised and the history stays linear; blobs are written before the transaction that
references them commits, so a crash never leaves a commit pointing at a missing blob.
"""

from __future__ import annotations

import functools
import json
import math
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hf_summary.localhub.blobs import BlobStore
from hf_summary.localhub.commitbody import (
    AddFile,
    AddLfsFile,
    CommitRequest,
    DeleteFile,
    DeleteFolder,
    Operation,
)
from hf_summary.localhub.errors import HubError, bad_request, revision_not_found
from hf_summary.localhub.gitobjects import DirEntry, Entry, FileEntry, commit_oid, git_tree_oid

REPO_TYPES = ("model", "dataset", "space")
BUCKET = "bucket"  # stored as a repo (namespace, name, privacy) whose files live in bucketstore
RATE_WINDOW_S = 3600
_NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")
_BRANCH_FORBIDDEN = re.compile(r"[\x00-\x20~^:?*\[\\\x7f]|\.\.|//|@\{|\.lock$|^[/.]|[/.]$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS repos (
    pk INTEGER PRIMARY KEY, type TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    private INTEGER NOT NULL, sdk TEXT, created_at REAL NOT NULL, UNIQUE (type, namespace, name));
CREATE TABLE IF NOT EXISTS commits (
    repo INTEGER NOT NULL, oid TEXT NOT NULL, tree TEXT NOT NULL, parent TEXT, kind TEXT NOT NULL,
    title TEXT NOT NULL, message TEXT NOT NULL, author TEXT NOT NULL, created_at REAL NOT NULL,
    PRIMARY KEY (repo, oid));
CREATE INDEX IF NOT EXISTS commits_by_time ON commits (repo, kind, created_at);
CREATE TABLE IF NOT EXISTS refs (repo INTEGER NOT NULL, name TEXT NOT NULL, oid TEXT NOT NULL, PRIMARY KEY (repo, name));
CREATE TABLE IF NOT EXISTS trees (oid TEXT PRIMARY KEY, entries TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS lfs_objects (repo INTEGER NOT NULL, oid TEXT NOT NULL, size INTEGER NOT NULL,
    PRIMARY KEY (repo, oid));
"""


@dataclass(frozen=True)
class Repo:
    pk: int
    type: str
    namespace: str
    name: str
    private: bool
    sdk: str | None
    created_at: float

    @property
    def repo_id(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def key(self) -> str:
        """`<type>/<namespace>/<name>`, the key used in statistics."""
        return f"{self.type}/{self.repo_id}"


@dataclass(frozen=True)
class Commit:
    oid: str
    tree: str
    parent: str | None
    title: str
    message: str
    author: str
    created_at: float


def validate_repo_name(part: str) -> None:
    if not _NAME_RE.fullmatch(part) or "--" in part or ".." in part or part.endswith(".git"):
        raise bad_request(f"Invalid repo name or namespace: {part!r}")


def validate_branch_name(name: str) -> None:
    if (
        not name
        or _BRANCH_FORBIDDEN.search(name)
        or name.startswith("refs/")
        or re.fullmatch(r"[0-9a-f]{40}", name)
    ):
        raise bad_request(f"Invalid branch name: {name!r}")


def ref_name(revision: str) -> str:
    return revision.removeprefix("refs/heads/")


class Storage:
    def __init__(self, data_dir: Path, *, commit_limit: int, commit_window_s: float = RATE_WINDOW_S) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.blobs = BlobStore(data_dir)
        self.commit_limit = commit_limit
        self.commit_window_s = commit_window_s
        self._db_path = data_dir / "hub.db"
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._tree_children = functools.lru_cache(maxsize=16384)(self._read_tree)
        self.connection().executescript(SCHEMA)
        with self.transaction() as db:
            self._store_tree(db, {})

    # -- connections and transactions -------------------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self._db_path, timeout=60, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            db = self.connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # -- repos --------------------------------------------------------------------------------------

    def get_repo(self, repo_type: str, namespace: str, name: str) -> Repo | None:
        row = (
            self.connection()
            .execute(
                "SELECT * FROM repos WHERE type = ? AND namespace = ? AND name = ?",
                (repo_type, namespace, name),
            )
            .fetchone()
        )
        return _repo(row) if row else None

    def list_repos(self, repo_type: str | None = None) -> list[Repo]:
        """Every repo of `repo_type` (all git repos when None: buckets are listed only by type)."""
        rows = self.connection().execute(
            "SELECT * FROM repos WHERE type = ? ORDER BY pk" if repo_type else "SELECT * FROM repos WHERE type != ? ORDER BY pk",
            (repo_type or BUCKET,),
        )
        return [_repo(row) for row in rows]

    def set_private(self, repo: Repo, private: bool) -> None:
        with self.transaction() as db:
            db.execute("UPDATE repos SET private = ? WHERE pk = ?", (int(private), repo.pk))

    def create_repo(
        self, repo_type: str, namespace: str, name: str, *, private: bool, sdk: str | None
    ) -> tuple[Repo, bool]:
        """(repo, True) for a new repo with an empty "initial commit" by "system" on `main`;
        (the existing repo, False) if there already is one."""
        validate_repo_name(namespace)
        validate_repo_name(name)
        with self.transaction() as db:
            if existing := self.get_repo(repo_type, namespace, name):
                return existing, False
            now = time.time()
            pk = db.execute(
                "INSERT INTO repos (type, namespace, name, private, sdk, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (repo_type, namespace, name, int(private), sdk, now),
            ).lastrowid
            repo = Repo(pk, repo_type, namespace, name, private, sdk, now)
            if repo_type == BUCKET:  # buckets have no commits and no refs
                return repo, True
            initial = self._insert_commit(
                db, repo, self._store_tree(db, {}), None, "initial", "initial commit", "", "system"
            )
            db.execute("INSERT INTO refs (repo, name, oid) VALUES (?, 'main', ?)", (pk, initial.oid))
            return repo, True

    def delete_repo(self, repo: Repo) -> None:
        """Forget the repo. Blobs stay: they are content-addressed and may be shared with other repos."""
        with self.transaction() as db:
            for table, column in (
                ("repos", "pk"),
                ("commits", "repo"),
                ("refs", "repo"),
                ("lfs_objects", "repo"),
            ):
                db.execute(f"DELETE FROM {table} WHERE {column} = ?", (repo.pk,))

    # -- revisions ----------------------------------------------------------------------------------

    def refs(self, repo: Repo) -> dict[str, str]:
        rows = self.connection().execute("SELECT name, oid FROM refs WHERE repo = ? ORDER BY name", (repo.pk,))
        return {row["name"]: row["oid"] for row in rows}

    def get_commit(self, repo: Repo, oid: str) -> Commit | None:
        row = (
            self.connection().execute("SELECT * FROM commits WHERE repo = ? AND oid = ?", (repo.pk, oid)).fetchone()
        )
        return _commit(row) if row else None

    def resolve(self, repo: Repo, revision: str) -> Commit:
        """The commit a branch, `refs/pr/N`, `refs/heads/X` or full commit id names; RevisionNotFound otherwise."""
        oid = self.refs(repo).get(ref_name(revision), revision)
        commit = self.get_commit(repo, oid)
        if commit is None:
            raise revision_not_found(revision)
        return commit

    def history(self, repo: Repo, oid: str | None) -> Iterator[Commit]:
        """Commits from `oid` back to the root, newest first."""
        while oid is not None and (commit := self.get_commit(repo, oid)) is not None:
            yield commit
            oid = commit.parent

    def create_branch(self, repo: Repo, branch: str, starting_point: str) -> None:
        validate_branch_name(branch)
        with self.transaction() as db:
            self._require_alive(db, repo)
            if branch in self.refs(repo):
                raise HubError(409, f"Reference already exists: {branch}")
            target = self.resolve(repo, starting_point)
            db.execute("INSERT INTO refs (repo, name, oid) VALUES (?, ?, ?)", (repo.pk, branch, target.oid))

    def delete_branch(self, repo: Repo, branch: str) -> None:
        branch = ref_name(branch)
        if branch == "main":
            raise HubError(403, "The main branch cannot be deleted")
        with self.transaction() as db:
            if db.execute("DELETE FROM refs WHERE repo = ? AND name = ?", (repo.pk, branch)).rowcount == 0:
                raise revision_not_found(branch)

    # -- trees --------------------------------------------------------------------------------------

    def _read_tree(self, oid: str) -> dict[str, list]:
        row = self.connection().execute("SELECT entries FROM trees WHERE oid = ?", (oid,)).fetchone()
        if row is None:
            raise RuntimeError(f"tree {oid} is missing from the database")
        return json.loads(row["entries"])

    def lookup(self, tree: str, path: str) -> Entry | None:
        """The file or folder at `path` ("" is the root folder), or None."""
        entry: Entry = DirEntry("", tree)
        for part in path.split("/") if path else []:
            if not isinstance(entry, DirEntry) or part not in (children := self._tree_children(entry.oid)):
                return None
            entry = _entry(f"{entry.path}/{part}" if entry.path else part, children[part])
        return entry

    def list_folder(self, tree: str, path: str, *, recursive: bool) -> list[Entry] | None:
        """Entries under folder `path`, sorted, folders before their contents; None if no such folder."""
        folder = self.lookup(tree, path)
        if not isinstance(folder, DirEntry):
            return None
        out: list[Entry] = []

        def walk(oid: str, prefix: str) -> None:
            for name, raw in sorted(self._tree_children(oid).items()):
                entry = _entry(prefix + name, raw)
                out.append(entry)
                if recursive and isinstance(entry, DirEntry):
                    walk(entry.oid, entry.path + "/")

        walk(folder.oid, f"{folder.path}/" if folder.path else "")
        return out

    def files(self, tree: str) -> dict[str, FileEntry]:
        return {
            e.path: e for e in self.list_folder(tree, "", recursive=True) or [] if isinstance(e, FileEntry)
        }

    def _store_tree(self, db: sqlite3.Connection, files: dict[str, FileEntry]) -> str:
        """Store the trees for a flat {path: file} map; returns the root tree id."""
        root: dict = {}
        for path, entry in files.items():
            *folders, leaf = path.split("/")
            node = root
            for folder in folders:
                node = node.setdefault(folder, {})
            node[leaf] = entry

        def store(node: dict) -> str:
            children: dict[str, Entry] = {
                name: DirEntry(name, store(child)) if isinstance(child, dict) else child
                for name, child in node.items()
            }
            oid = git_tree_oid(children)
            entries = {
                name: ["d", e.oid] if isinstance(e, DirEntry) else ["f", e.oid, e.size, e.sha256, e.lfs]
                for name, e in children.items()
            }
            db.execute("INSERT OR IGNORE INTO trees (oid, entries) VALUES (?, ?)", (oid, json.dumps(entries)))
            return oid

        return store(root)

    # -- commits ------------------------------------------------------------------------------------

    def commit(
        self, repo: Repo, revision: str, request: CommitRequest, *, author: str, create_pr: bool = False
    ) -> tuple[Commit, int | None]:
        """Apply `request` on top of `revision`; returns the new commit and the PR number (create_pr).

        Without create_pr, `revision` must be a ref (a branch or `refs/pr/N`), which then moves.
        """
        with self.transaction() as db:
            self._require_alive(db, repo)
            refs = self.refs(repo)
            if create_pr:
                base = self.resolve(repo, revision)
            elif ref_name(revision) in refs:
                base = self.resolve(repo, revision)
            elif self.get_commit(repo, revision):
                raise bad_request(f"Cannot commit to {revision}: not a branch")
            else:
                raise revision_not_found(revision)
            if request.parent_commit and request.parent_commit != base.oid:
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            self._check_rate_limit(db, repo)
            files = self.files(base.tree)
            for content in self._apply(db, repo, files, request.operations):
                self.blobs.put(content)
            tree = self._store_tree(db, files)
            new = self._insert_commit(
                db, repo, tree, base.oid, "commit", request.summary, request.description, author
            )
            pr_num = None
            if create_pr:
                pr_num = 1 + max(
                    (int(n.rsplit("/", 1)[1]) for n in refs if n.startswith("refs/pr/")), default=0
                )
                target = f"refs/pr/{pr_num}"
            else:
                target = ref_name(revision)
            db.execute(
                "INSERT OR REPLACE INTO refs (repo, name, oid) VALUES (?, ?, ?)", (repo.pk, target, new.oid)
            )
            return new, pr_num

    def squash(self, repo: Repo, branch: str, message: str, *, author: str) -> Commit:
        """Replace `branch`'s history by a single root commit with its current tree."""
        with self.transaction() as db:
            self._require_alive(db, repo)
            head_oid = self.refs(repo).get(ref_name(branch))
            if head_oid is None:
                raise revision_not_found(branch)
            head = self.resolve(repo, head_oid)
            new = self._insert_commit(db, repo, head.tree, None, "squash", message, "", author)
            db.execute(
                "UPDATE refs SET oid = ? WHERE repo = ? AND name = ?", (new.oid, repo.pk, ref_name(branch))
            )
            return new

    def _apply(
        self, db: sqlite3.Connection, repo: Repo, files: dict[str, FileEntry], ops: list[Operation]
    ) -> list[bytes]:
        """Apply `ops` to the flat `files` map in order; returns the new regular contents to store."""
        contents = []
        for op in ops:
            match op:
                case AddFile(path, content):
                    files[path] = FileEntry.regular(path, content)
                    contents.append(content)
                case AddLfsFile(path, sha256, size):
                    stored = self.lfs_object_size(repo, sha256)
                    if stored is None or not self.blobs.exists(sha256, stored):
                        raise bad_request(
                            f"LFS object {sha256} ({path!r}) has not been uploaded to this repo"
                        )
                    if size is not None and size != stored:
                        raise bad_request(f"LFS object {sha256} ({path!r}) has size {stored}, not {size}")
                    files[path] = FileEntry.large(path, sha256, stored)
                case DeleteFile(path):
                    if files.pop(path, None) is None:
                        raise HubError(
                            404, f"A file with this name doesn't exist: {path}", code="EntryNotFound"
                        )
                case DeleteFolder(path):
                    doomed = [p for p in files if p.startswith(path + "/")]
                    if not doomed:
                        raise HubError(
                            404, f"A folder with this name doesn't exist: {path}", code="EntryNotFound"
                        )
                    for p in doomed:
                        del files[p]
        folders = {path.rsplit("/", i)[0] for path in files for i in range(1, path.count("/") + 1)}
        if clash := sorted(folders & files.keys()):
            raise bad_request(f"Path conflict: {clash[0]!r} would be both a file and a folder")
        return contents

    def _check_rate_limit(self, db: sqlite3.Connection, repo: Repo) -> None:
        now = time.time()
        window = (repo.pk, now - self.commit_window_s)
        count = db.execute(
            "SELECT COUNT(*) FROM commits WHERE repo = ? AND kind = 'commit' AND created_at > ?", window
        ).fetchone()[0]
        if count >= self.commit_limit:
            # the slot frees when the (count - limit + 1)-th oldest commit leaves the window
            (freed_at,) = db.execute(
                "SELECT created_at FROM commits WHERE repo = ? AND kind = 'commit' AND created_at > ? "
                "ORDER BY created_at LIMIT 1 OFFSET ?",
                (*window, count - self.commit_limit),
            ).fetchone()
            retry_after = max(1, math.ceil(freed_at + self.commit_window_s - now))
            raise HubError(
                429,
                f"Rate limit: at most {self.commit_limit} commits per {self.commit_window_s:g} s to {repo.repo_id}",
                headers={"Retry-After": str(retry_after)},
            )

    def _insert_commit(
        self,
        db: sqlite3.Connection,
        repo: Repo,
        tree: str,
        parent: str | None,
        kind: str,
        title: str,
        message: str,
        author: str,
    ) -> Commit:
        oid = commit_oid(
            repo_key=repo.key, tree=tree, parent=parent, author=author, title=title, message=message
        )
        commit = Commit(oid, tree, parent, title, message, author, time.time())
        db.execute(
            "INSERT INTO commits (repo, oid, tree, parent, kind, title, message, author, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (repo.pk, oid, tree, parent, kind, title, message, author, commit.created_at),
        )
        return commit

    def _require_alive(self, db: sqlite3.Connection, repo: Repo) -> None:
        """Guard against the repo being deleted between the request's access check and its write."""
        if db.execute("SELECT 1 FROM repos WHERE pk = ?", (repo.pk,)).fetchone() is None:
            raise HubError(404, "Repository not found", code="RepoNotFound")

    # -- LFS objects --------------------------------------------------------------------------------

    def lfs_object_size(self, repo: Repo, sha256: str) -> int | None:
        row = (
            self.connection()
            .execute("SELECT size FROM lfs_objects WHERE repo = ? AND oid = ?", (repo.pk, sha256))
            .fetchone()
        )
        return row["size"] if row else None

    def add_lfs_object(self, repo: Repo, sha256: str, size: int) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO lfs_objects (repo, oid, size) VALUES (?, ?, ?)",
                (repo.pk, sha256, size),
            )

    # -- statistics ---------------------------------------------------------------------------------

    def repo_stats(self) -> dict[str, dict[str, int]]:
        """Per repo: commits in `main`'s history (as `list_repo_commits` counts them, initial commit
        included), and the number and total size of the files at `main`'s head."""
        stats = {}
        for repo in self.list_repos():
            head = self.resolve(repo, "main")
            files = self.files(head.tree)
            stats[repo.key] = {
                "commits": sum(1 for _ in self.history(repo, head.oid)),
                "files": len(files),
                "bytes": sum(f.size for f in files.values()),
            }
        return stats


def _repo(row: sqlite3.Row) -> Repo:
    return Repo(
        row["pk"],
        row["type"],
        row["namespace"],
        row["name"],
        bool(row["private"]),
        row["sdk"],
        row["created_at"],
    )


def _commit(row: sqlite3.Row) -> Commit:
    return Commit(
        row["oid"], row["tree"], row["parent"], row["title"], row["message"], row["author"], row["created_at"]
    )


def _entry(path: str, raw: list) -> Entry:
    if raw[0] == "d":
        return DirEntry(path, raw[1])
    _, oid, size, sha256, lfs = raw
    return FileEntry(path, oid, size, sha256, lfs)
