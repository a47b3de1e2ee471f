"""Local Hub: fault injection, bandwidth throttling, statistics and the admin API's guard."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import httpx2
import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError

from hf_summary.localhub.testing import LocalHub


@pytest.fixture(scope="module")
def faulty_hub_server() -> Iterator[LocalHub]:
    with LocalHub() as hub:
        yield hub


@pytest.fixture
def faulty_hub(faulty_hub_server: LocalHub) -> Iterator[LocalHub]:
    """The module's Hub, with no faults left over from other tests."""
    faulty_hub_server.clear_faults()
    yield faulty_hub_server
    faulty_hub_server.clear_faults()


@pytest.fixture
def hub_api(faulty_hub: LocalHub, repo_id: str) -> HfApi:
    api = HfApi(endpoint=faulty_hub.endpoint, token=faulty_hub.token())
    api.create_repo(repo_id)
    return api


def test_status_fault_fires_the_given_number_of_times(
    faulty_hub: LocalHub, hub_api: HfApi, repo_id: str
) -> None:
    faulty_hub.set_faults(
        [{"method": "POST", "path": r"/preupload/", "status": 503, "times": 1, "retry_after": 0}]
    )
    hub_api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo_id)  # preupload is retried
    faulty_hub.set_faults([{"method": "POST", "path": r"/commit/", "status": 503, "times": 1}])
    with pytest.raises(HfHubHTTPError) as e:  # create_commit is not retried
        hub_api.upload_file(path_or_fileobj=b"y", path_in_repo="y.txt", repo_id=repo_id)
    assert e.value.response.status_code == 503
    hub_api.upload_file(path_or_fileobj=b"y", path_in_repo="y.txt", repo_id=repo_id)  # the rule is spent
    assert hub_api.list_repo_files(repo_id) == ["x.txt", "y.txt"]


def test_reset_drops_the_connection_and_the_client_retries(
    faulty_hub: LocalHub, hub_api: HfApi, repo_id: str, http
) -> None:
    faulty_hub.set_faults([{"method": "GET", "path": "/api/models/", "reset": True, "times": 1}])
    with pytest.raises(httpx2.TransportError):
        http.get(
            f"{faulty_hub.endpoint}/api/models/{repo_id}",
            headers={"authorization": f"Bearer {faulty_hub.token()}"},
        )
    faulty_hub.set_faults([{"method": "POST", "path": "/preupload/", "reset": True, "times": 1}])
    hub_api.upload_file(path_or_fileobj=b"z", path_in_repo="z.txt", repo_id=repo_id)
    assert hub_api.list_repo_files(repo_id) == ["z.txt"]


def test_delay_probability_and_method_matching(faulty_hub: LocalHub, hub_api: HfApi, repo_id: str) -> None:
    faulty_hub.set_faults(
        [
            {"method": "POST", "path": "/api/models/", "status": 500},  # other method: never matches
            {"path": "/api/models/", "status": 500, "probability": 0},  # never fires
            {"method": "GET", "path": "/api/models/", "delay_s": 0.5, "times": 1},
        ]
    )
    started = time.monotonic()
    hub_api.repo_info(repo_id)  # neither 500 rule fires
    assert time.monotonic() - started >= 0.5
    assert faulty_hub.fired() == [0, 0, 1]


def test_bandwidth_limit_slows_uploads(faulty_hub: LocalHub, hub_api: HfApi, repo_id: str) -> None:
    faulty_hub.set_faults([], bandwidth_bps=200_000)
    started = time.monotonic()
    hub_api.upload_file(path_or_fileobj=os.urandom(150_000), path_in_repo="slow.bin", repo_id=repo_id)
    assert time.monotonic() - started >= 150_000 / 200_000  # the xorb carries every (incompressible) byte


def test_admin_endpoints_are_guarded_and_never_faulted(faulty_hub: LocalHub, http) -> None:
    faulty_hub.set_faults([{"path": ".*", "status": 500}])
    assert (
        http.get(
            f"{faulty_hub.endpoint}/api/whoami-v2", headers={"authorization": f"Bearer {faulty_hub.token()}"}
        ).status_code
        == 500
    )
    assert "requests" in faulty_hub.stats()
    url = f"{faulty_hub.endpoint}/_localhub/stats"
    assert http.get(url).status_code == 401
    assert http.get(url, headers={"authorization": f"Bearer {faulty_hub.token()}"}).status_code == 403
    faults = f"{faulty_hub.endpoint}/_localhub/faults"
    admin = {"authorization": f"Bearer {faulty_hub.admin_token}"}
    for bad in (
        {"rules": [{"status": "x"}]},
        {"rules": [{"path": "("}]},
        {"rules": [{"nope": 1}]},
        {"rules": [], "bandwidth_bps": -1},
        {"rules": [{"retry_after": 1.5}]},
        [1],
    ):
        assert http.post(faults, json=bad, headers=admin).status_code == 400, bad
    faulty_hub.clear_faults()
    assert (
        http.get(
            f"{faulty_hub.endpoint}/api/whoami-v2", headers={"authorization": f"Bearer {faulty_hub.token()}"}
        ).status_code
        == 200
    )


def test_stats(faulty_hub: LocalHub, hub_api: HfApi, repo_id: str) -> None:
    before = faulty_hub.stats()
    hub_api.create_commit(
        repo_id,
        commit_message="two",
        operations=[CommitOperationAdd("a.bin", b"a" * 3000), CommitOperationAdd("d/b.txt", b"bb")],
    )
    after = faulty_hub.stats()
    assert after["requests"] - before["requests"] == 2  # preupload + commit
    assert after["bytes_received"] - before["bytes_received"] > 4000  # base64 of 3002 bytes, plus JSON
    assert after["repos"][f"model/{repo_id}"] == {"commits": 2, "files": 2, "bytes": 3002}
    HfApi(endpoint=faulty_hub.endpoint, token=faulty_hub.token()).create_repo(repo_id, repo_type="dataset")
    assert faulty_hub.stats()["repos"][f"dataset/{repo_id}"] == {"commits": 1, "files": 0, "bytes": 0}


def test_stats_count_downloads_per_file_whatever_the_revision(
    faulty_hub: LocalHub, hub_api: HfApi, repo_id: str, tmp_path
) -> None:
    commit = hub_api.upload_file(path_or_fileobj=b"abc", path_in_repo="d/x y.txt", repo_id=repo_id)
    for revision in ("main", commit.oid):
        hub_api.hf_hub_download(repo_id, "d/x y.txt", revision=revision, cache_dir=tmp_path / revision)
    assert hub_api.file_exists(repo_id, "d/x y.txt")  # a HEAD: not a download
    assert faulty_hub.stats()["downloads"][f"model/{repo_id}/d/x y.txt"] == 2
