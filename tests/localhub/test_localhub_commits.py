"""Local Hub: commits, branches and history through the real client, plus malformed commit bodies."""

from __future__ import annotations

import base64
import http.client as http_client
import json
from pathlib import Path

import pytest
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationCopy,
    CommitOperationDelete,
    HfApi,
)
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RevisionNotFoundError


def _read(api: HfApi, repo_id: str, path: str, tmp_path: Path, revision: str = "main") -> bytes:
    return Path(
        api.hf_hub_download(repo_id, path, revision=revision, cache_dir=tmp_path / "cache")
    ).read_bytes()


def test_create_commit_with_additions_and_deletions(api: HfApi, repo_id: str, tmp_path: Path) -> None:
    api.create_repo(repo_id)
    first = api.create_commit(
        repo_id,
        operations=[
            CommitOperationAdd("a.txt", b"A"),
            CommitOperationAdd("dir/b.txt", b"B"),
            CommitOperationAdd("dir/sub/c.bin", bytes(range(256))),
        ],
        commit_message="add three",
        commit_description="with a description",
    )
    assert len(first.oid) == 40
    assert first.commit_url == f"{api.endpoint}/{repo_id}/commit/{first.oid}"
    second = api.create_commit(
        repo_id,
        operations=[
            CommitOperationDelete("a.txt"),
            CommitOperationDelete("dir/sub/"),
            CommitOperationAdd("d.txt", b"D"),
        ],
        commit_message="delete two",
        parent_commit=first.oid,
    )
    assert api.list_repo_files(repo_id) == ["d.txt", "dir/b.txt"]
    assert _read(api, repo_id, "dir/b.txt", tmp_path) == b"B"
    assert _read(api, repo_id, "dir/sub/c.bin", tmp_path, revision=first.oid) == bytes(range(256))
    commits = api.list_repo_commits(repo_id)
    assert [c.commit_id for c in commits] == [second.oid, first.oid, commits[-1].commit_id]
    assert [c.title for c in commits] == ["delete two", "add three", "initial commit"]
    assert commits[1].message == "with a description"
    assert commits[0].authors == ["alice"]
    assert commits[0].created_at >= commits[1].created_at >= commits[2].created_at
    formatted = api.list_repo_commits(repo_id, formatted=True)
    assert (formatted[1].formatted_title, formatted[1].formatted_message) == (
        "add three",
        "with a description",
    )


def test_stale_parent_commit_is_refused_with_412(api: HfApi, repo_id: str) -> None:
    api.create_repo(repo_id)
    base = api.repo_info(repo_id).sha
    api.upload_file(path_or_fileobj=b"1", path_in_repo="one.txt", repo_id=repo_id)
    with pytest.raises(HfHubHTTPError) as e:
        api.create_commit(
            repo_id,
            operations=[CommitOperationAdd("two.txt", b"2")],
            commit_message="late",
            parent_commit=base,
        )
    assert e.value.response.status_code == 412
    assert "x-error-code" not in e.value.response.headers
    assert api.list_repo_files(repo_id) == ["one.txt"]


def test_unchanged_files_are_not_committed_again(api: HfApi, repo_id: str, tmp_path: Path) -> None:
    api.create_repo(repo_id)
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "x.txt").write_text("x")
    (folder / "sub" / "y.txt").write_text("y")
    first = api.upload_folder(repo_id=repo_id, folder_path=folder)
    again = api.upload_folder(repo_id=repo_id, folder_path=folder)
    assert again.oid == first.oid
    assert len(api.list_repo_commits(repo_id)) == 2
    (folder / "x.txt").write_text("changed")
    (folder / "sub" / "y.txt").unlink()
    api.upload_folder(repo_id=repo_id, folder_path=folder, delete_patterns=["sub/*"])
    assert api.list_repo_files(repo_id) == ["x.txt"]
    assert _read(api, repo_id, "x.txt", tmp_path) == b"changed"


def test_deleting_a_missing_file_raises_entry_not_found(api: HfApi, repo_id: str) -> None:
    api.create_repo(repo_id)
    with pytest.raises(EntryNotFoundError):
        api.delete_file("missing.txt", repo_id)
    with pytest.raises(EntryNotFoundError):
        api.delete_folder("missing", repo_id)


def test_copy_operation(api: HfApi, repo_id: str, tmp_path: Path) -> None:
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=b"original", path_in_repo="src.txt", repo_id=repo_id)
    api.create_commit(
        repo_id, operations=[CommitOperationCopy("src.txt", "copy/dst.txt")], commit_message="copy"
    )
    assert _read(api, repo_id, "copy/dst.txt", tmp_path) == b"original"


def test_file_and_folder_cannot_share_a_path(api: HfApi, repo_id: str) -> None:
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=b"f", path_in_repo="a", repo_id=repo_id)
    with pytest.raises(HfHubHTTPError) as e:
        api.upload_file(path_or_fileobj=b"g", path_in_repo="a/b", repo_id=repo_id)
    assert e.value.response.status_code == 400


def test_branches(api: HfApi, repo_id: str, tmp_path: Path) -> None:
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=b"main", path_in_repo="f.txt", repo_id=repo_id)
    api.create_branch(repo_id, branch="dev/x")
    with pytest.raises(HfHubHTTPError) as e:
        api.create_branch(repo_id, branch="dev/x")
    assert e.value.response.status_code == 409
    api.create_branch(repo_id, branch="dev/x", exist_ok=True)
    on_branch = api.upload_file(
        path_or_fileobj=b"dev", path_in_repo="f.txt", repo_id=repo_id, revision="dev/x"
    )
    assert _read(api, repo_id, "f.txt", tmp_path, revision="dev/x") == b"dev"
    assert _read(api, repo_id, "f.txt", tmp_path) == b"main"
    refs = {b.name: b.target_commit for b in api.list_repo_refs(repo_id).branches}
    assert refs == {"main": api.repo_info(repo_id).sha, "dev/x": on_branch.oid}
    assert api.list_repo_commits(repo_id, revision="dev/x")[0].commit_id == on_branch.oid
    api.create_branch(repo_id, branch="from-initial", revision=api.list_repo_commits(repo_id)[-1].commit_id)
    assert api.list_repo_files(repo_id, revision="from-initial") == []
    api.delete_branch(repo_id, branch="dev/x")
    assert not api.revision_exists(repo_id, "dev/x")
    with pytest.raises(RevisionNotFoundError):
        api.upload_file(
            path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo_id, revision="no-such-branch"
        )


def test_create_pr_opens_a_pr_ref(api: HfApi, repo_id: str) -> None:
    api.create_repo(repo_id)
    head = api.repo_info(repo_id).sha
    info = api.upload_file(path_or_fileobj=b"pr", path_in_repo="pr.txt", repo_id=repo_id, create_pr=True)
    assert info.pr_revision == "refs/pr/1"
    assert api.repo_info(repo_id).sha == head
    assert api.list_repo_files(repo_id, revision="refs/pr/1") == ["pr.txt"]
    assert [p.ref for p in api.list_repo_refs(repo_id, include_pull_requests=True).pull_requests] == [
        "refs/pr/1"
    ]


def test_super_squash_history(api: HfApi, repo_id: str) -> None:
    api.create_repo(repo_id)
    for n in range(3):
        api.upload_file(path_or_fileobj=str(n).encode(), path_in_repo=f"{n}.txt", repo_id=repo_id)
    api.super_squash_history(repo_id, commit_message="squashed")
    [only] = api.list_repo_commits(repo_id)
    assert only.title == "squashed"
    assert api.list_repo_files(repo_id) == ["0.txt", "1.txt", "2.txt"]
    with pytest.raises(RevisionNotFoundError):
        api.super_squash_history(repo_id, branch="nope")


# -- malformed commits: answered 4xx, nothing stored --------------------------------------------------


def _blob_count(hub) -> int:
    return sum(1 for p in (hub.data_dir / "blobs").rglob("*") if p.is_file())


def _raw_commit(http, hub, repo_id: str, lines: list[object] | bytes):
    body = lines if isinstance(lines, bytes) else b"\n".join(json.dumps(line).encode() for line in lines)
    return http.post(
        f"{hub.endpoint}/api/models/{repo_id}/commit/main",
        content=body,
        headers={"authorization": f"Bearer {hub.token()}", "content-type": "application/x-ndjson"},
    )


HEADER = {"key": "header", "value": {"summary": "bad"}}
NEW = base64.b64encode(b"content never seen before in any test 7f3a").decode()


@pytest.mark.parametrize(
    "bad_path",
    ["../escape", "/absolute", "a//b", "a\\b", "a\0b", "", "a/./b", "a/../b", "dir/", ".git/config", 7],
)
def test_malformed_paths_are_refused_and_nothing_is_stored(
    api: HfApi, local_hub, http, repo_id: str, bad_path
) -> None:
    api.create_repo(repo_id)
    head, blobs = api.repo_info(repo_id).sha, _blob_count(local_hub)
    for op in (
        {"key": "file", "value": {"path": bad_path, "content": NEW, "encoding": "base64"}},
        {"key": "deletedFile", "value": {"path": bad_path}},
    ):
        good = {"key": "file", "value": {"path": "ok.txt", "content": NEW, "encoding": "base64"}}
        response = _raw_commit(http, local_hub, repo_id, [HEADER, good, op])
        assert response.status_code == 400, response.text
    assert api.repo_info(repo_id).sha == head
    assert _blob_count(local_hub) == blobs


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json\n",
        json.dumps({"key": "file", "value": {"path": "x", "content": NEW, "encoding": "base64"}}).encode(),
        json.dumps(HEADER).encode()
        + b"\n"
        + json.dumps(
            {"key": "file", "value": {"path": "x", "content": "@@@", "encoding": "base64"}}
        ).encode(),
        json.dumps(HEADER).encode()
        + b"\n"
        + json.dumps({"key": "file", "value": {"path": "x", "content": NEW}}).encode(),
        json.dumps(HEADER).encode() + b"\n" + json.dumps({"key": "unknown", "value": {}}).encode(),
        json.dumps({"key": "header", "value": {"summary": "x", "parentCommit": "not-a-sha"}}).encode(),
        json.dumps(HEADER).encode()
        + b"\n"
        + json.dumps({"key": "lfsFile", "value": {"path": "x", "oid": "a" * 64, "size": 1}}).encode(),
        json.dumps(HEADER).encode() + b"\n[1, 2]",
    ],
)
def test_malformed_commit_bodies_are_refused(api: HfApi, local_hub, http, repo_id: str, body: bytes) -> None:
    api.create_repo(repo_id)
    head, blobs = api.repo_info(repo_id).sha, _blob_count(local_hub)
    response = _raw_commit(http, local_hub, repo_id, body)
    assert 400 <= response.status_code < 500, response.text
    assert api.repo_info(repo_id).sha == head
    assert _blob_count(local_hub) == blobs


def test_oversize_and_malformed_json_bodies_are_refused(api: HfApi, local_hub, http, repo_id: str) -> None:
    api.create_repo(repo_id)
    auth = {"authorization": f"Bearer {local_hub.token()}"}
    url = f"{local_hub.endpoint}/api/models/{repo_id}/preupload/main"
    assert http.post(url, content=b"{not json", headers=auth).status_code == 400
    assert (
        http.post(url, json={"files": [{"path": "x", "sample": "@@", "size": 1}]}, headers=auth).status_code
        == 400
    )
    assert (
        http.post(url, json={"files": [{"path": "x", "sample": "", "size": -1}]}, headers=auth).status_code
        == 400
    )
    assert http.post(url, content=b" " * (17 * 1024 * 1024), headers=auth).status_code == 413
    # the commit endpoint refuses a body announced too large before reading it
    connection = http_client.HTTPConnection("127.0.0.1", local_hub.port, timeout=30)
    connection.putrequest("POST", f"/api/models/{repo_id}/commit/main")
    connection.putheader("Authorization", auth["authorization"])
    connection.putheader("Content-Length", str(2**31))
    connection.endheaders()
    assert connection.getresponse().status == 413
    connection.close()
    assert len(api.list_repo_commits(repo_id)) == 1
