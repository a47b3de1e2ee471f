"""Local Hub: downloads, tree listings, paths-info and pagination through the real client."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, RevisionNotFoundError

from hf_summary.localhub.gitobjects import lfs_pointer
from hf_summary.localhub.testing import LocalHub

FILES = {
    "README.md": b"# readme\n",
    "data/blob.bin": os.urandom(100_000),
    "data/nested/deep.txt": b"deep",
    "odd name é.txt": b"unicode and spaces",
    "empty.txt": b"",
}


def git_blob_sha1(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@pytest.fixture
def filled_repo(api: HfApi, repo_id: str) -> str:
    api.create_repo(repo_id, repo_type="dataset")
    api.create_commit(
        repo_id,
        repo_type="dataset",
        commit_message="fill",
        operations=[CommitOperationAdd(path, content) for path, content in FILES.items()],
    )
    return repo_id


def test_downloads_return_exact_bytes(local_hub, filled_repo: str, tmp_path: Path) -> None:
    for path, content in FILES.items():
        local = hf_hub_download(
            filled_repo,
            path,
            repo_type="dataset",
            endpoint=local_hub.endpoint,
            token=local_hub.token(),
            cache_dir=tmp_path,
        )
        assert Path(local).read_bytes() == content, path


def test_snapshot_download(local_hub, filled_repo: str, tmp_path: Path) -> None:
    folder = snapshot_download(
        filled_repo,
        repo_type="dataset",
        endpoint=local_hub.endpoint,
        token=local_hub.token(),
        cache_dir=tmp_path,
    )
    assert {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in Path(folder).rglob("*") if p.is_file()
    } == FILES


def test_resolve_headers_and_ranges(local_hub, http, filled_repo: str, api: HfApi) -> None:
    url = f"{local_hub.endpoint}/datasets/{filled_repo}/resolve/main/data/blob.bin"
    auth = {"authorization": f"Bearer {local_hub.token()}"}
    content = FILES["data/blob.bin"]
    head = http.head(url, headers=auth)
    assert head.status_code == 200
    commit = api.repo_info(filled_repo, repo_type="dataset").sha
    assert head.headers["x-repo-commit"] == commit
    assert head.headers["etag"] == head.headers["x-linked-etag"] == f'"{hashlib.sha256(content).hexdigest()}"'
    assert head.headers["content-length"] == head.headers["x-linked-size"] == str(len(content))
    [tree_entry] = api.get_paths_info(filled_repo, ["data/blob.bin"], repo_type="dataset")
    assert head.headers["x-xet-hash"] == tree_entry.xet_hash
    assert head.links["xet-auth"]["url"].endswith(f"/api/datasets/{filled_repo}/xet-read-token/{commit}")
    text = http.head(f"{local_hub.endpoint}/datasets/{filled_repo}/resolve/main/README.md", headers=auth)
    assert text.headers["etag"] == f'"{git_blob_sha1(FILES["README.md"])}"'
    assert not [h for h in text.headers if h.lower().startswith("x-xet")]
    ranged = http.get(url, headers={**auth, "range": "bytes=99990-"})
    assert ranged.status_code == 206
    assert ranged.headers["content-range"] == f"bytes 99990-99999/{len(content)}"
    assert ranged.content == content[99990:]
    missing = http.head(f"{local_hub.endpoint}/datasets/{filled_repo}/resolve/main/nope.txt", headers=auth)
    assert (missing.status_code, missing.headers["x-error-code"]) == (404, "EntryNotFound")
    assert missing.headers["x-repo-commit"] == head.headers["x-repo-commit"]


def test_missing_files_and_revisions(local_hub, api: HfApi, filled_repo: str, tmp_path: Path) -> None:
    assert api.file_exists(filled_repo, "data/nested/deep.txt", repo_type="dataset")
    assert not api.file_exists(filled_repo, "data/nope.txt", repo_type="dataset")
    assert not api.file_exists(filled_repo, "data", repo_type="dataset")  # a folder is not a file
    assert not api.file_exists(filled_repo, "README.md", repo_type="dataset", revision="nope")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(
            filled_repo,
            "nope.txt",
            repo_type="dataset",
            endpoint=local_hub.endpoint,
            token=local_hub.token(),
            cache_dir=tmp_path,
        )
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(
            filled_repo,
            "README.md",
            repo_type="dataset",
            revision="nope",
            endpoint=local_hub.endpoint,
            token=local_hub.token(),
            cache_dir=tmp_path,
        )
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(filled_repo, path_in_repo="no/such/folder", repo_type="dataset"))
    with pytest.raises(RevisionNotFoundError):
        api.list_repo_files(filled_repo, repo_type="dataset", revision="nope")


def test_list_repo_tree(api: HfApi, filled_repo: str) -> None:
    top = {e.path: type(e).__name__ for e in api.list_repo_tree(filled_repo, repo_type="dataset")}
    assert top == {
        "README.md": "RepoFile",
        "data": "RepoFolder",
        "odd name é.txt": "RepoFile",
        "empty.txt": "RepoFile",
    }
    data = [e.path for e in api.list_repo_tree(filled_repo, path_in_repo="data", repo_type="dataset")]
    assert data == ["data/blob.bin", "data/nested"]
    everything = list(api.list_repo_tree(filled_repo, repo_type="dataset", recursive=True))
    assert {e.path for e in everything} == set(FILES) | {"data", "data/nested"}
    blob = next(e for e in everything if e.path == "data/blob.bin")
    assert (blob.size, blob.lfs.sha256, blob.lfs.size) == (100_000, hashlib.sha256(FILES["data/blob.bin"]).hexdigest(), 100_000)
    assert blob.blob_id == git_blob_sha1(lfs_pointer(blob.lfs.sha256, blob.size))
    assert len(blob.xet_hash) == 64
    text = next(e for e in everything if e.path == "data/nested/deep.txt")
    assert (text.lfs, text.xet_hash) == (None, None)
    assert sorted(api.list_repo_files(filled_repo, repo_type="dataset")) == sorted(FILES)


def test_tree_expand_gives_last_commit(api: HfApi, filled_repo: str) -> None:
    later = api.upload_file(
        path_or_fileobj=b"v2", path_in_repo="data/nested/deep.txt", repo_id=filled_repo, repo_type="dataset"
    )
    entries = {
        e.path: e for e in api.list_repo_tree(filled_repo, repo_type="dataset", recursive=True, expand=True)
    }
    assert entries["data/nested/deep.txt"].last_commit.oid == later.oid
    assert entries["data/nested"].last_commit.oid == later.oid
    assert entries["README.md"].last_commit.title == "fill"


def test_get_paths_info(api: HfApi, filled_repo: str) -> None:
    infos = api.get_paths_info(
        filled_repo, ["README.md", "data", "missing.txt", "data/nested/deep.txt"], repo_type="dataset"
    )
    assert {i.path: type(i).__name__ for i in infos} == {
        "README.md": "RepoFile",
        "data": "RepoFolder",
        "data/nested/deep.txt": "RepoFile",
    }


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_blob_and_tree_ids_match_git(api: HfApi, filled_repo: str, tmp_path: Path) -> None:
    work = tmp_path / "git"
    for path, content in FILES.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        binary = path == "data/blob.bin"  # stored as LFS: git holds its pointer
        (work / path).write_bytes(lfs_pointer(hashlib.sha256(content).hexdigest(), len(content)) if binary else content)

    def git(*args: str) -> str:
        env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
        return subprocess.run(
            ["git", *args], cwd=work, env=env, check=True, capture_output=True, text=True
        ).stdout.strip()

    git("init", "-q")
    git("add", "-A")
    tree = git("write-tree")
    entries = {e.path: e for e in api.list_repo_tree(filled_repo, repo_type="dataset", recursive=True)}
    assert entries["data"].tree_id == git("rev-parse", f"{tree}:data")
    assert entries["data/nested"].tree_id == git("rev-parse", f"{tree}:data/nested")
    assert entries["odd name é.txt"].blob_id == git("rev-parse", f"{tree}:odd name é.txt")


# -- pagination (a server with 3 entries per page) ----------------------------------------------------


@pytest.fixture(scope="module")
def paged_hub() -> Iterator[LocalHub]:
    with LocalHub(page_size=3) as hub:
        yield hub


def test_tree_and_commits_paginate_with_absolute_links(paged_hub: LocalHub, http, repo_id: str) -> None:
    api = HfApi(endpoint=paged_hub.endpoint, token=paged_hub.token())
    api.create_repo(repo_id)
    api.create_commit(
        repo_id,
        operations=[CommitOperationAdd(f"d/{n:02}.txt", b"%d" % n) for n in range(8)],
        commit_message="8",
    )
    for n in range(5):
        api.upload_file(path_or_fileobj=b"x", path_in_repo=f"top{n}.txt", repo_id=repo_id)
    assert api.list_repo_files(repo_id) == [f"d/{n:02}.txt" for n in range(8)] + [
        f"top{n}.txt" for n in range(5)
    ]
    assert len(list(api.list_repo_tree(repo_id, path_in_repo="d"))) == 8
    titles = [c.title for c in api.list_repo_commits(repo_id)]
    assert titles == [f"Upload top{n}.txt with huggingface_hub" for n in reversed(range(5))] + [
        "8",
        "initial commit",
    ]
    first_page = http.get(
        f"{paged_hub.endpoint}/api/models/{repo_id}/tree/main?recursive=true&expand=false",
        headers={"authorization": f"Bearer {paged_hub.token()}"},
    )
    assert len(first_page.json()) == 3
    assert first_page.links["next"]["url"].startswith(f"{paged_hub.endpoint}/api/models/{repo_id}/tree/main?")


def test_pagination_is_pinned_to_the_first_pages_commit(paged_hub: LocalHub, repo_id: str) -> None:
    api = HfApi(endpoint=paged_hub.endpoint, token=paged_hub.token())
    api.create_repo(repo_id)
    api.create_commit(
        repo_id, operations=[CommitOperationAdd(f"{n}.txt", b"") for n in range(7)], commit_message="7"
    )
    pages = api.list_repo_tree(repo_id)
    first = [next(pages) for _ in range(3)]
    api.upload_file(path_or_fileobj=b"", path_in_repo="00-new.txt", repo_id=repo_id)
    assert [e.path for e in first + list(pages)] == [f"{n}.txt" for n in range(7)]
