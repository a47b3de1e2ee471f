"""Local Hub: authentication and privacy on every endpoint."""

from __future__ import annotations

import httpx2
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

SHA256 = "a" * 64
# (method, path under the repo, body kwargs) for every repo-scoped endpoint; {r} is "alice/<name>".
READS = [
    ("GET", "/api/models/{r}", {}),
    ("GET", "/api/models/{r}/revision/main", {}),
    ("GET", "/api/models/{r}/tree/main", {}),
    ("GET", "/api/models/{r}/commits/main", {}),
    ("POST", "/api/models/{r}/paths-info/main", {"data": {"paths": ["f.txt"]}}),
    ("GET", "/api/models/{r}/refs", {}),
    ("HEAD", "/{r}/resolve/main/f.txt", {}),
    ("GET", "/{r}/resolve/main/f.txt", {}),
]
WRITES = [
    (
        "POST",
        "/api/models/{r}/preupload/main",
        {"json": {"files": [{"path": "g.txt", "sample": "", "size": 0}]}},
    ),
    ("POST", "/api/models/{r}/commit/main", {"content": b'{"key":"header","value":{"summary":"x"}}\n'}),
    (
        "POST",
        "/{r}.git/info/lfs/objects/batch",
        {"json": {"operation": "upload", "objects": [{"oid": SHA256, "size": 1}]}},
    ),
    ("POST", "/api/models/{r}/super-squash/main", {"json": {}}),
    ("POST", "/api/models/{r}/branch/dev", {"json": {}}),
    ("DELETE", "/api/models/{r}/branch/main", {}),
]


@pytest.fixture
def private_repo(api: HfApi, repo_id: str) -> str:
    api.create_repo(repo_id, private=True)
    api.upload_file(path_or_fileobj=b"secret", path_in_repo="f.txt", repo_id=repo_id)
    return repo_id


@pytest.fixture
def public_repo(api: HfApi, repo_id: str) -> str:
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=b"hello", path_in_repo="f.txt", repo_id=repo_id)
    return repo_id


@pytest.fixture
def call(local_hub, http: httpx2.Client):
    def call(method: str, path: str, token: str | None, **kwargs) -> httpx2.Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return http.request(method, local_hub.endpoint + path, headers=headers, **kwargs)

    return call


@pytest.mark.parametrize(("method", "path", "kwargs"), READS + WRITES)
def test_private_repo_is_invisible_to_others_on_every_endpoint(
    local_hub, call, private_repo: str, method, path, kwargs
) -> None:
    url = path.format(r=private_repo)
    missing = path.format(r=private_repo + "-missing")
    for token, status in ((None, 401), ("hf_unknown", 401), (local_hub.token("bob"), 404)):
        for target in (url, missing):  # a private repo answers exactly like a missing one
            response = call(method, target, token, **kwargs)
            assert (response.status_code, response.headers.get("x-error-code")) == (status, "RepoNotFound"), (
                target,
                token,
            )
    owner = call(method, url, local_hub.token("alice"), **kwargs)
    assert owner.status_code < 300 or owner.headers.get("x-error-code") != "RepoNotFound"


@pytest.mark.parametrize(("method", "path", "kwargs"), WRITES)
def test_public_repo_refuses_writes_from_others(
    local_hub, call, public_repo: str, method, path, kwargs
) -> None:
    url = path.format(r=public_repo)
    assert call(method, url, local_hub.token("bob"), **kwargs).status_code == 403
    assert call(method, url, None, **kwargs).status_code == 401
    assert call(method, url, "hf_unknown", **kwargs).status_code == 401


@pytest.mark.parametrize(("method", "path", "kwargs"), READS)
def test_public_repo_is_readable_by_everyone(local_hub, call, public_repo: str, method, path, kwargs) -> None:
    for token in (None, local_hub.token("bob")):
        assert call(method, path.format(r=public_repo), token, **kwargs).status_code == 200


def test_client_sees_repository_not_found_for_private_repos(
    local_hub, api: HfApi, bob_api: HfApi, anon_api: HfApi, private_repo: str, tmp_path
) -> None:
    assert api.file_exists(private_repo, "f.txt")
    for other, token in ((bob_api, local_hub.token("bob")), (anon_api, False)):
        assert not other.repo_exists(private_repo)
        assert not other.file_exists(private_repo, "f.txt")
        for call in (
            lambda o: o.repo_info(private_repo),
            lambda o: o.list_repo_files(private_repo),
            lambda o: o.list_repo_commits(private_repo),
            lambda o: o.list_repo_refs(private_repo),
            lambda o: o.get_paths_info(private_repo, ["f.txt"]),
        ):
            with pytest.raises(RepositoryNotFoundError):
                call(other)
        with pytest.raises(RepositoryNotFoundError):
            hf_hub_download(
                private_repo, "f.txt", endpoint=local_hub.endpoint, token=token, cache_dir=tmp_path
            )
    with pytest.raises(RepositoryNotFoundError):
        bob_api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=private_repo)


def test_client_write_to_someone_elses_public_repo_is_forbidden(
    bob_api: HfApi, api: HfApi, public_repo: str
) -> None:
    with pytest.raises(HfHubHTTPError) as e:
        bob_api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=public_repo)
    assert e.value.response.status_code == 403
    assert api.list_repo_files(public_repo) == ["f.txt"]
