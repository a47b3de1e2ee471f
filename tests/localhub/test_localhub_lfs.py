"""Local Hub: upload modes, basic Git LFS and the regular-only mode.

Binary and large files are "lfs". A client with `HF_HUB_DISABLE_XET=1` (set before import, so those
uploads run in a subprocess, `run_client`) sends them through the LFS batch API, a signed PUT and verify;
with `--regular` every file is "regular" and no LFS or Xet traffic happens at all.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download

from hf_summary.localhub.testing import LocalHub

BINARY = bytes(range(256)) * 40  # has NUL bytes
TEXT = b"plain text\n" * 10
LARGE_TEXT = b"0123456789abcdef" * (10 * 1024 * 1024 // 16)  # exactly 10 MiB of text
NO_XET = {"HF_HUB_DISABLE_XET": "1"}

UPLOAD = """
    import json
    from pathlib import Path
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi()
    folder = Path({folder!r})
    def ops():
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        return [CommitOperationAdd(p.relative_to(folder).as_posix(), p) for p in files]

    info = api.create_commit({repo_id!r}, operations=ops(), commit_message="lfs upload")
    again = api.create_commit({repo_id!r}, operations=ops(), commit_message="unchanged")
    print(json.dumps({{"oid": info.oid, "again": again.oid}}))
"""


@pytest.fixture
def lfs_hub(local_hub: LocalHub) -> LocalHub:
    """The default Hub: it answers "lfs" as the Hub does; these tests' clients take the basic LFS path."""
    return local_hub


@pytest.fixture(scope="module")
def regular_hub() -> Iterator[LocalHub]:
    with LocalHub(regular=True) as hub:
        yield hub


def _write(folder: Path, files: dict[str, bytes]) -> Path:
    for path, content in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(content)
    return folder


def test_binary_and_large_files_go_through_lfs(
    lfs_hub: LocalHub, run_client, repo_id: str, tmp_path: Path, http
) -> None:
    api = HfApi(endpoint=lfs_hub.endpoint, token=lfs_hub.token())
    api.create_repo(repo_id)
    folder = _write(tmp_path / "up", {"weights.bin": BINARY, "notes.txt": TEXT, "big/large.txt": LARGE_TEXT})
    result = run_client(
        lfs_hub, UPLOAD.format(folder=str(folder), repo_id=repo_id), token=lfs_hub.token(), env=NO_XET
    )
    assert result["again"] == result["oid"]  # unchanged LFS and regular files are skipped
    entries = {e.path: e for e in api.list_repo_tree(repo_id, recursive=True) if hasattr(e, "lfs")}
    assert entries["notes.txt"].lfs is None
    for path, content in (("weights.bin", BINARY), ("big/large.txt", LARGE_TEXT)):
        lfs = entries[path].lfs
        assert (lfs.sha256, lfs.size) == (hashlib.sha256(content).hexdigest(), len(content))
        local = hf_hub_download(
            repo_id, path, endpoint=lfs_hub.endpoint, token=lfs_hub.token(), cache_dir=tmp_path / "c"
        )
        assert Path(local).read_bytes() == content
    head = http.head(
        f"{lfs_hub.endpoint}/{repo_id}/resolve/main/weights.bin",
        headers={"authorization": f"Bearer {lfs_hub.token()}"},
    )
    assert head.headers["etag"] == head.headers["x-linked-etag"] == f'"{hashlib.sha256(BINARY).hexdigest()}"'
    assert head.headers["x-linked-size"] == head.headers["content-length"] == str(len(BINARY))
    siblings = {s.rfilename: s for s in api.model_info(repo_id, files_metadata=True).siblings}
    assert siblings["weights.bin"].lfs.sha256 == hashlib.sha256(BINARY).hexdigest()


def test_preupload_modes(lfs_hub: LocalHub, http, repo_id: str) -> None:
    HfApi(endpoint=lfs_hub.endpoint, token=lfs_hub.token()).create_repo(repo_id)
    files = [
        {"path": "text.txt", "sample": base64.b64encode(b"hello").decode(), "size": 5},
        {"path": "nul.bin", "sample": base64.b64encode(b"a\0b").decode(), "size": 3},
        {"path": "latin1.txt", "sample": base64.b64encode(b"caf\xe9").decode(), "size": 4},
        {"path": "cut.txt", "sample": base64.b64encode(b"a" * 511 + "é".encode()[:1]).decode(), "size": 2000},
        {"path": "huge.txt", "sample": base64.b64encode(b"text").decode(), "size": 10 * 1024 * 1024},
    ]
    response = http.post(
        f"{lfs_hub.endpoint}/api/models/{repo_id}/preupload/main",
        json={"files": files},
        headers={"authorization": f"Bearer {lfs_hub.token()}"},
    )
    modes = {f["path"]: (f["uploadMode"], f["shouldIgnore"]) for f in response.json()["files"]}
    assert modes == {
        "text.txt": ("regular", False),
        "nul.bin": ("lfs", False),
        "latin1.txt": ("lfs", False),
        "cut.txt": ("regular", False),
        "huge.txt": ("lfs", False),
    }


def test_lfs_protocol_refusals(lfs_hub: LocalHub, http, repo_id: str) -> None:
    api = HfApi(endpoint=lfs_hub.endpoint, token=lfs_hub.token())
    api.create_repo(repo_id)
    auth = {"authorization": f"Bearer {lfs_hub.token()}"}
    content = b"\0lfs object for refusal tests"
    oid = hashlib.sha256(content).hexdigest()
    batch = http.post(
        f"{lfs_hub.endpoint}/{repo_id}.git/info/lfs/objects/batch",
        headers=auth,
        json={
            "operation": "upload",
            "transfers": ["basic", "multipart"],
            "hash_algo": "sha256",
            "objects": [{"oid": oid, "size": len(content)}, {"oid": "xyz", "size": 1}],
        },
    ).json()
    good, bad = batch["objects"]
    assert "error" in bad
    assert "chunk_size" not in good["actions"]["upload"].get("header", {})
    href = good["actions"]["upload"]["href"]
    assert http.put(href.replace("signature=", "signature=0"), content=content).status_code == 403
    assert http.put(href, content=b"\0different content, same length!").status_code == 400
    commit_line = json.dumps(
        {"key": "lfsFile", "value": {"path": "x.bin", "algo": "sha256", "oid": oid, "size": len(content)}}
    )
    commit = f'{{"key":"header","value":{{"summary":"s"}}}}\n{commit_line}'.encode()
    commit_url = f"{lfs_hub.endpoint}/api/models/{repo_id}/commit/main"
    assert http.post(commit_url, content=commit, headers=auth).status_code == 400  # object not uploaded yet
    verify = good["actions"]["verify"]["href"]
    assert http.post(verify, json={"oid": oid, "size": len(content)}, headers=auth).status_code == 404
    assert http.put(href, content=content).status_code == 200  # no Authorization header needed
    assert http.post(verify, json={"oid": oid, "size": len(content)}, headers=auth).status_code == 200
    assert http.post(commit_url, content=commit, headers=auth).status_code == 200
    assert api.list_repo_files(repo_id) == ["x.bin"]


def test_regular_hub_keeps_everything_regular(regular_hub: LocalHub, repo_id: str, http) -> None:
    """With --regular the in-process client (hf_xet active) uploads binaries as regular files: no Xet."""
    api = HfApi(endpoint=regular_hub.endpoint, token=regular_hub.token())
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=BINARY, path_in_repo="weights.bin", repo_id=repo_id)
    [entry] = api.list_repo_tree(repo_id)
    assert (entry.lfs, entry.xet_hash, entry.size) == (None, None, len(BINARY))
    token_url = f"{regular_hub.endpoint}/api/models/{repo_id}/xet-write-token/main"
    assert http.get(token_url, headers={"authorization": f"Bearer {regular_hub.token()}"}).status_code == 404
