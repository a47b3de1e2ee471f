"""Local Hub: Storage Buckets through the unmodified client (with hf_xet): lifecycle, privacy, listings,
batches, downloads, faults and statistics."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import BucketNotFoundError, HfHubHTTPError

from hf_summary.localhub.testing import LocalHub


@pytest.fixture(scope="module")
def bucket_hub() -> Iterator[LocalHub]:
    """Three entries per listing page, so pagination shows; faults here touch no other module."""
    with LocalHub(page_size=3) as hub:
        yield hub


@pytest.fixture
def alice(bucket_hub: LocalHub) -> HfApi:
    return HfApi(endpoint=bucket_hub.endpoint, token=bucket_hub.token())


@pytest.fixture
def bob(bucket_hub: LocalHub) -> HfApi:
    return HfApi(endpoint=bucket_hub.endpoint, token=bucket_hub.token("bob"))


def test_lifecycle_settings_and_privacy(bucket_hub: LocalHub, alice: HfApi, bob: HfApi, repo_name: str) -> None:
    bucket_id = f"alice/{repo_name}"
    url = alice.create_bucket(bucket_id, private=True)
    assert (url.bucket_id, url.url) == (bucket_id, f"{bucket_hub.endpoint}/buckets/{bucket_id}")
    assert alice.create_bucket(bucket_id, exist_ok=True).bucket_id == bucket_id
    with pytest.raises(HfHubHTTPError):
        alice.create_bucket(bucket_id)
    with pytest.raises(HfHubHTTPError, match="403"):
        bob.create_bucket(f"alice/{repo_name}-2")
    info = alice.bucket_info(bucket_id)
    assert (info.id, info.private, info.size, info.total_files) == (bucket_id, True, 0, 0)
    with pytest.raises(BucketNotFoundError):
        bob.bucket_info(bucket_id)
    with pytest.raises(BucketNotFoundError):
        HfApi(endpoint=bucket_hub.endpoint, token=False).bucket_info(bucket_id)
    assert bucket_id in {b.id for b in alice.list_buckets()}
    assert bucket_id not in {b.id for b in bob.list_buckets("alice")}
    alice.update_bucket_settings(bucket_id, private=False)
    assert bob.bucket_info(bucket_id).private is False
    with pytest.raises(ConnectionError, match="403"):  # hf_xet is refused its write token
        bob.batch_bucket_files(bucket_id, add=[(b"intruder", "x.txt")])
    with pytest.raises(HfHubHTTPError, match="403"):
        bob.delete_bucket(bucket_id)
    alice.delete_bucket(bucket_id)
    with pytest.raises(BucketNotFoundError):
        alice.bucket_info(bucket_id)
    alice.delete_bucket(bucket_id, missing_ok=True)


def test_batches_listings_and_downloads_round_trip(bucket_hub: LocalHub, alice: HfApi, repo_name: str, tmp_path: Path) -> None:
    bucket_id = f"alice/{repo_name}"
    alice.create_bucket(bucket_id, private=True)
    files = {f"runs/r{i}/events.bin": os.urandom(1000 + i) for i in range(4)}
    files |= {"top.txt": b"text", "runs/big.bin": os.urandom(2_000_000), "empty.txt": b""}
    for path, content in files.items():
        (tmp_path / "up" / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "up" / path).write_bytes(content)
    alice.batch_bucket_files(bucket_id, add=[(tmp_path / "up" / p, p) for p in files if p != "top.txt"] + [(files["top.txt"], "top.txt")])
    listed = {e.path: e for e in alice.list_bucket_tree(bucket_id, recursive=True)}  # 3 per page
    assert {p for p, e in listed.items() if e.type == "file"} == set(files)
    assert {p for p, e in listed.items() if e.type == "directory"} == {"runs", *(f"runs/r{i}" for i in range(4))}
    assert {e.path for e in alice.list_bucket_tree(bucket_id)} == {"top.txt", "empty.txt", "runs"}
    assert {e.path for e in alice.list_bucket_tree(bucket_id, prefix="runs")} == {"runs/big.bin", *(f"runs/r{i}" for i in range(4))}
    info = {f.path: f for f in alice.get_bucket_paths_info(bucket_id, ["runs/big.bin", "nope.bin"])}
    assert list(info) == ["runs/big.bin"] and info["runs/big.bin"].size == 2_000_000
    assert info["runs/big.bin"].xet_hash == listed["runs/big.bin"].xet_hash
    assert alice.bucket_info(bucket_id).total_files == len(files)
    alice.download_bucket_files(bucket_id, [(p, str(tmp_path / "down" / p)) for p in files])
    assert {p: (tmp_path / "down" / p).read_bytes() for p in files} == files
    alice.batch_bucket_files(bucket_id, delete=["top.txt", "never-there.txt"])
    assert "top.txt" not in {e.path for e in alice.list_bucket_tree(bucket_id)}
    stats = bucket_hub.stats()["repos"][f"bucket/{bucket_id}"]
    assert stats == {"commits": 0, "files": len(files) - 1, "bytes": sum(map(len, files.values())) - 4}


def test_batches_are_not_atomic(bucket_hub: LocalHub, alice: HfApi, repo_name: str, http) -> None:
    bucket_id = f"alice/{repo_name}"
    alice.create_bucket(bucket_id)
    alice.batch_bucket_files(bucket_id, add=[(b"first", "a.txt")])
    [known] = alice.get_bucket_paths_info(bucket_id, ["a.txt"])
    lines = [
        {"type": "addFile", "path": "copy.txt", "xetHash": known.xet_hash, "mtime": 1},
        {"type": "addFile", "path": "ghost.bin", "xetHash": "0" * 64, "mtime": 1},
        {"type": "deleteFile", "path": "a.txt"},
    ]
    response = http.post(
        f"{bucket_hub.endpoint}/api/buckets/{bucket_id}/batch",
        content="\n".join(map(json.dumps, lines)).encode(),
        headers={"authorization": f"Bearer {bucket_hub.token()}", "content-type": "application/x-ndjson"},
    )
    assert response.status_code == 200
    [failure] = response.json()["failed"]
    assert failure["path"] == "ghost.bin" and "has not been uploaded" in failure["error"]
    assert {e.path for e in alice.list_bucket_tree(bucket_id)} == {"copy.txt"}


def test_faults_apply_to_buckets(bucket_hub: LocalHub, alice: HfApi, repo_name: str) -> None:
    bucket_id = f"alice/{repo_name}"
    alice.create_bucket(bucket_id)
    bucket_hub.set_faults([{"method": "POST", "path": "/batch$", "status": 503, "times": 1}])
    try:
        alice.batch_bucket_files(bucket_id, add=[(b"retried", "r.txt")])  # the client retries the 503
        bucket_hub.set_faults([{"method": "POST", "path": "/batch$", "status": 403}])
        with pytest.raises(HfHubHTTPError, match="403"):
            alice.batch_bucket_files(bucket_id, add=[(b"refused", "f.txt")])
    finally:
        bucket_hub.clear_faults()
    assert {e.path for e in alice.list_bucket_tree(bucket_id)} == {"r.txt"}
