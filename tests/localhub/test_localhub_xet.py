"""Local Hub: the Xet upload and download path, driven by the unmodified client with hf_xet.

Downloads are proved to go through the CAS by overwriting the Hub's plain copy of a file (its blob) with
zeros first: only a download rebuilt from the xorbs still returns the right bytes. Hand-made xorbs and
shards check what the CAS refuses.
"""

from __future__ import annotations

import configparser
import hashlib
import importlib.metadata
import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download, snapshot_download
from packaging.specifiers import SpecifierSet

from hf_summary.localhub.testing import LocalHub

FILES = {
    "weights.bin": os.urandom(3_000_000),  # many chunks, several xorb ranges
    "small.bin": b"\0\1\2" * 1000,
    "nested/zeros.bin": bytes(700_000),  # compresses: LZ4 chunks
    "notes.txt": b"plain text stays regular\n",
}
DOWNLOAD = """
    import json
    from pathlib import Path
    from huggingface_hub import hf_hub_download
    path = hf_hub_download({repo_id!r}, {filename!r}, cache_dir={cache!r})
    print(json.dumps(Path(path).read_bytes().hex()))
"""


@pytest.fixture(scope="module")
def xet_hub() -> Iterator[LocalHub]:
    """A Hub of this module's own: tests overwrite its blobs and inject faults."""
    with LocalHub() as hub:
        yield hub


@pytest.fixture
def xapi(xet_hub: LocalHub) -> HfApi:
    return HfApi(endpoint=xet_hub.endpoint, token=xet_hub.token())


def _blob(hub: LocalHub, content: bytes) -> Path:
    sha256 = hashlib.sha256(content).hexdigest()
    return hub.data_dir / "blobs" / sha256[:2] / sha256[2:]


def _push(api: HfApi, repo_id: str, files: dict[str, bytes], **kwargs) -> str:
    return api.create_commit(
        repo_id, operations=[CommitOperationAdd(p, c) for p, c in files.items()], commit_message="push", **kwargs
    ).oid


def test_upload_download_snapshot_round_trip(xet_hub: LocalHub, xapi: HfApi, repo_id: str, tmp_path, run_client) -> None:
    xapi.create_repo(repo_id, private=True)
    before = xet_hub.stats()["bytes_received_by_route"]
    _push(xapi, repo_id, FILES)
    after = xet_hub.stats()["bytes_received_by_route"]
    received = after["cas"] - before["cas"]
    assert len(FILES["weights.bin"]) < received < 1.1 * sum(map(len, FILES.values()))  # binaries went up as xorbs
    assert after["lfs"] == before["lfs"]
    entries = {e.path: e for e in xapi.list_repo_tree(repo_id, recursive=True) if hasattr(e, "lfs")}
    for path, content in FILES.items():
        if path.endswith(".bin"):
            assert entries[path].lfs.sha256 == hashlib.sha256(content).hexdigest()
            assert len(entries[path].xet_hash) == 64
        else:
            assert (entries[path].lfs, entries[path].xet_hash) == (None, None)
    # a client without hf_xet (HF_HUB_DISABLE_XET) reads the same bytes with a plain GET
    plain = run_client(
        xet_hub,
        DOWNLOAD.format(repo_id=repo_id, filename="weights.bin", cache=str(tmp_path / "plain")),
        token=xet_hub.token(),
        env={"HF_HUB_DISABLE_XET": "1"},
    )
    assert bytes.fromhex(plain) == FILES["weights.bin"]
    for path, content in FILES.items():
        if path.endswith(".bin"):
            _blob(xet_hub, content).write_bytes(bytes(len(content)))
    try:
        local = hf_hub_download(
            repo_id, "weights.bin", endpoint=xet_hub.endpoint, token=xet_hub.token(), cache_dir=tmp_path / "c"
        )
        assert Path(local).read_bytes() == FILES["weights.bin"]
        folder = Path(snapshot_download(repo_id, endpoint=xet_hub.endpoint, token=xet_hub.token(), cache_dir=tmp_path / "s"))
        assert {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == FILES
    finally:
        for content in FILES.values():
            _blob(xet_hub, content).write_bytes(content)


def test_grown_file_sends_only_new_chunks(xet_hub: LocalHub, xapi: HfApi, repo_id: str, tmp_path: Path) -> None:
    xapi.create_repo(repo_id)
    first = os.urandom(3_000_000)
    _push(xapi, repo_id, {"events.bin": first})
    before = xet_hub.stats()["bytes_received_by_route"]["cas"]
    grown = first + os.urandom(100_000)
    _push(xapi, repo_id, {"events.bin": grown})
    sent = xet_hub.stats()["bytes_received_by_route"]["cas"] - before
    assert sent < 0.25 * len(grown), sent  # the new tail and the chunk it changed, not the whole file
    assert Path(hf_hub_download(repo_id, "events.bin", endpoint=xet_hub.endpoint, token=xet_hub.token(),
                                cache_dir=tmp_path / "download")).read_bytes() == grown


def _auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _xet_token(http, hub: LocalHub, repo_id: str, scope: str, user: str = "alice") -> dict:
    response = http.get(f"{hub.endpoint}/api/models/{repo_id}/xet-{scope}-token/main", headers=_auth(hub.token(user)))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (response.headers["x-xet-access-token"], response.headers["x-xet-cas-url"]) == (body["accessToken"], body["casUrl"])
    assert int(response.headers["x-xet-token-expiration"]) == body["exp"]
    return body


def _raw(hash_hex: str) -> bytes:
    """The 32 bytes whose text form (four little-endian u64 words as %016x) is `hash_hex`."""
    return b"".join(int(hash_hex[i : i + 16], 16).to_bytes(8, "little") for i in range(0, 64, 16))


def _xorb(content: bytes) -> bytes:
    """One uncompressed chunk."""
    n = len(content)
    return bytes([0]) + n.to_bytes(3, "little") + bytes([0]) + n.to_bytes(3, "little") + content


def _shard(file_hash: str, xorb_hash: str, size: int, sha256: str) -> bytes:
    header = b"HFRepoMetaData".ljust(32, b"\0") + struct.pack("<QQ", 2, 0)
    file_header = _raw(file_hash) + struct.pack("<II", 0x40000000, 1) + bytes(8)
    term = _raw(xorb_hash) + struct.pack("<IIII", 0, size, 0, 1)
    metadata = _raw(sha256) + bytes(16)
    return header + file_header + term + metadata + b"\xff" * 32 + bytes(16)


def _commit_line(path: str, content: bytes) -> bytes:
    line = {"key": "lfsFile", "value": {"path": path, "algo": "sha256", "oid": hashlib.sha256(content).hexdigest(), "size": len(content)}}
    return b'{"key":"header","value":{"summary":"by hand"}}\n' + json.dumps(line).encode()


def test_commits_and_shards_are_checked_against_what_the_cas_received(xet_hub: LocalHub, xapi: HfApi, repo_id: str, http) -> None:
    xapi.create_repo(repo_id)
    commits = len(xapi.list_repo_commits(repo_id))
    content = b"\0hand-made xorb content"
    commit_url = f"{xet_hub.endpoint}/api/models/{repo_id}/commit/main"
    refused = http.post(commit_url, content=_commit_line("x.bin", content), headers=_auth(xet_hub.token()))
    assert refused.status_code == 400 and "has not been uploaded" in refused.json()["error"]
    assert len(xapi.list_repo_commits(repo_id)) == commits  # nothing stored

    token = _xet_token(http, xet_hub, repo_id, "write")
    cas, auth = token["casUrl"], _auth(token["accessToken"])
    xorb_hash, file_hash = "ab" * 32, "cd" * 32
    sha256 = hashlib.sha256(content).hexdigest()
    missing = http.post(f"{cas}/v1/shards", content=_shard(file_hash, xorb_hash, len(content), sha256), headers=auth)
    assert missing.status_code == 400 and "has not been uploaded" in missing.json()["error"]
    assert http.post(f"{cas}/v1/xorbs/default/{xorb_hash}", content=b"\7junk", headers=auth).status_code == 400
    stored = http.post(f"{cas}/v1/xorbs/default/{xorb_hash}", content=_xorb(content), headers=auth)
    assert stored.json() == {"was_inserted": True}
    wrong = hashlib.sha256(b"other").hexdigest()
    lying = http.post(f"{cas}/v1/shards", content=_shard(file_hash, xorb_hash, len(content), wrong), headers=auth)
    assert lying.status_code == 400 and "rebuilds to sha256" in lying.json()["error"]
    good = http.post(f"{cas}/v1/shards", content=_shard(file_hash, xorb_hash, len(content), sha256), headers=auth)
    assert good.json() == {"result": 1}
    assert http.post(commit_url, content=_commit_line("x.bin", content), headers=_auth(xet_hub.token())).status_code == 200
    [entry] = xapi.get_paths_info(repo_id, ["x.bin"])
    assert (entry.xet_hash, entry.lfs.sha256) == (file_hash, sha256)
    ranged = http.get(f"{cas}/v1/reconstructions/{file_hash}", headers={**auth, "range": "bytes=1-5"}).json()
    assert ranged["offset_into_first_range"] == 1
    [fetch] = ranged["fetch_info"][xorb_hash]
    assert fetch["url_range"] == {"start": 0, "end": len(_xorb(content)) - 1}
    part = http.get(fetch["url"], headers={"range": "bytes=8-12"})  # no Authorization, as to presigned storage
    assert (part.status_code, part.content) == (206, content[:5])
    past = http.get(f"{cas}/v1/reconstructions/{file_hash}", headers={**auth, "range": f"bytes={len(content)}-"})
    assert past.status_code == 416


def test_cas_tokens_are_scoped_to_repo_and_access(xet_hub: LocalHub, xapi: HfApi, repo_id: str, http) -> None:
    xapi.create_repo(repo_id, private=True)
    _push(xapi, repo_id, {"secret.bin": os.urandom(50_000)})
    [entry] = xapi.get_paths_info(repo_id, ["secret.bin"])
    read = _xet_token(http, xet_hub, repo_id, "read")
    cas = read["casUrl"]
    assert http.get(f"{cas}/v1/reconstructions/{entry.xet_hash}", headers=_auth(read["accessToken"])).status_code == 200
    xorb = "ef" * 32
    assert http.post(f"{cas}/v1/xorbs/default/{xorb}", content=_xorb(b"x"), headers=_auth(read["accessToken"])).status_code == 403
    forged = read["accessToken"][:-4] + "0000"
    assert http.get(f"{cas}/v1/reconstructions/{entry.xet_hash}", headers=_auth(forged)).status_code == 401
    assert http.get(f"{cas}/v1/reconstructions/{entry.xet_hash}").status_code == 401
    # bob sees neither the private repo's token route nor, with a token for his own repo, its file
    bob_token_url = f"{xet_hub.endpoint}/api/models/{repo_id}/xet-read-token/main"
    assert http.get(bob_token_url, headers=_auth(xet_hub.token("bob"))).headers["x-error-code"] == "RepoNotFound"
    bob_repo = f"bob/{repo_id.split('/')[1]}"
    HfApi(endpoint=xet_hub.endpoint, token=xet_hub.token("bob")).create_repo(bob_repo)
    bob = _xet_token(http, xet_hub, bob_repo, "write", user="bob")
    assert http.get(f"{cas}/v1/reconstructions/{entry.xet_hash}", headers=_auth(bob["accessToken"])).status_code == 404
    assert http.post(f"{cas}/v1/xorbs/default/{xorb}", content=_xorb(b"x"), headers=_auth(bob["accessToken"])).status_code == 200
    other_cas = cas.rsplit("/", 1)[0] + "/0123456789abcdef"
    assert http.post(f"{other_cas}/v1/shards", content=b"", headers=_auth(bob["accessToken"])).status_code == 404
    recon = http.get(f"{cas}/v1/reconstructions/{entry.xet_hash}", headers=_auth(read["accessToken"])).json()
    url = next(iter(recon["fetch_info"].values()))[0]["url"]
    assert http.get(url.replace("signature=", "signature=0")).status_code == 403


def test_faults_apply_to_the_cas(xet_hub: LocalHub, xapi: HfApi, repo_id: str, tmp_path) -> None:
    xapi.create_repo(repo_id)
    xet_hub.set_faults([{"method": "POST", "path": "/v1/xorbs/", "status": 503, "times": 1}])
    try:
        _push(xapi, repo_id, {"retried.bin": os.urandom(20_000)})  # hf_xet retries the xorb
        xet_hub.set_faults([{"method": "POST", "path": "/v1/shards", "status": 400}])
        with pytest.raises(Exception, match="400"):
            _push(xapi, repo_id, {"refused.bin": os.urandom(20_000)})
    finally:
        xet_hub.clear_faults()
    assert xapi.list_repo_files(repo_id) == ["retried.bin"]


def test_cas_persists_across_restarts(tmp_path: Path) -> None:
    content = os.urandom(400_000)
    with LocalHub(data_dir=tmp_path / "data") as hub:
        api = HfApi(endpoint=hub.endpoint, token=hub.token())
        api.create_repo("alice/kept")
        _push(api, "alice/kept", {"kept.bin": content})
        hub.restart()
        _blob(hub, content).write_bytes(bytes(len(content)))
        local = hf_hub_download("alice/kept", "kept.bin", endpoint=hub.endpoint, token=hub.token(), cache_dir=tmp_path / "c")
        assert Path(local).read_bytes() == content
        grown = content + b"more"
        _push(api, "alice/kept", {"kept.bin": grown})  # the client's shard cache still matches the CAS
        local = hf_hub_download("alice/kept", "kept.bin", endpoint=hub.endpoint, token=hub.token(), cache_dir=tmp_path / "d")
        assert Path(local).read_bytes() == grown


def test_tested_hf_xet_version_is_within_the_pins() -> None:
    """One smoke test per hf_xet upgrade: setup.cfg pins the versions the local Hub was checked against."""
    config = configparser.ConfigParser()
    config.read(Path(__file__).resolve().parents[2] / "setup.cfg")
    pin = next(r for r in config["options"]["install_requires"].split("\n") if r.strip().startswith("hf_xet"))
    assert importlib.metadata.version("hf_xet") in SpecifierSet(pin.strip().removeprefix("hf_xet"))
