"""Local Hub: users and repo lifecycle, driven through the real huggingface_hub client."""

from __future__ import annotations

import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError


def test_whoami_names_the_token_owner(api: HfApi, bob_api: HfApi) -> None:
    assert api.whoami()["name"] == "alice"
    assert bob_api.whoami()["name"] == "bob"
    assert api.whoami()["auth"]["accessToken"]["role"] == "write"


def test_whoami_rejects_an_unknown_token(local_hub) -> None:
    with pytest.raises(HfHubHTTPError) as e:
        HfApi(endpoint=local_hub.endpoint, token="hf_not_a_user").whoami()
    assert e.value.response.status_code == 401


@pytest.mark.parametrize("repo_type", ["model", "dataset", "space"])
def test_create_repo_of_each_type(api: HfApi, local_hub, repo_id: str, repo_type: str) -> None:
    url = api.create_repo(repo_id, repo_type=repo_type, space_sdk="gradio" if repo_type == "space" else None)
    prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[repo_type]
    assert url == f"{local_hub.endpoint}/{prefix}{repo_id}"
    assert url.repo_type == repo_type
    info = api.repo_info(repo_id, repo_type=repo_type)
    assert info.id == repo_id
    assert info.private is False
    assert len(info.sha) == 40
    if repo_type == "space":
        assert info.sdk == "gradio"
    assert api.list_repo_files(repo_id, repo_type=repo_type) == []
    [initial] = api.list_repo_commits(repo_id, repo_type=repo_type)
    assert (initial.title, initial.authors, initial.commit_id) == ("initial commit", ["system"], info.sha)


def test_space_without_sdk_is_refused(local_hub, http, repo_id: str) -> None:
    response = http.post(
        f"{local_hub.endpoint}/api/repos/create",
        json={"name": repo_id.split("/")[1], "organization": "alice", "type": "space"},
        headers={"authorization": f"Bearer {local_hub.token()}"},
    )
    assert response.status_code == 400


def test_repo_id_without_namespace_goes_to_the_caller(api: HfApi, repo_name: str) -> None:
    assert api.create_repo(repo_name).repo_id == f"alice/{repo_name}"


def test_create_existing_repo(api: HfApi, repo_id: str) -> None:
    first = api.create_repo(repo_id, private=True)
    assert api.create_repo(repo_id, exist_ok=True) == first  # the 409 carries the url
    with pytest.raises(HfHubHTTPError) as e:
        api.create_repo(repo_id)
    assert e.value.response.status_code == 409
    assert e.value.response.json()["url"] == first


def test_private_and_public_visibility(api: HfApi, bob_api: HfApi, anon_api: HfApi, repo_name: str) -> None:
    api.create_repo(f"alice/{repo_name}-private", private=True)
    api.create_repo(f"alice/{repo_name}-public", private=False)
    assert api.repo_info(f"alice/{repo_name}-private").private is True
    for other in (bob_api, anon_api):
        assert other.repo_exists(f"alice/{repo_name}-public")
        assert not other.repo_exists(f"alice/{repo_name}-private")


def test_repo_and_revision_exists(api: HfApi, repo_id: str) -> None:
    assert not api.repo_exists(repo_id)
    api.create_repo(repo_id, repo_type="dataset")
    assert api.repo_exists(repo_id, repo_type="dataset")
    assert not api.repo_exists(repo_id)  # a model of that name does not exist
    assert api.revision_exists(repo_id, "main", repo_type="dataset")
    assert not api.revision_exists(repo_id, "nope", repo_type="dataset")
    with pytest.raises(RevisionNotFoundError):
        api.repo_info(repo_id, repo_type="dataset", revision="nope")
    with pytest.raises(RepositoryNotFoundError):
        api.repo_info(f"{repo_id}-missing")


def test_delete_repo(api: HfApi, repo_id: str) -> None:
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo_id)
    api.delete_repo(repo_id)
    assert not api.repo_exists(repo_id)
    with pytest.raises(RepositoryNotFoundError):
        api.delete_repo(repo_id)
    api.delete_repo(repo_id, missing_ok=True)
    api.create_repo(repo_id)  # the name is free again, and the new repo starts empty
    assert api.list_repo_files(repo_id) == []


def test_users_cannot_create_or_delete_in_other_namespaces(
    api: HfApi, bob_api: HfApi, anon_api: HfApi, repo_id: str
) -> None:
    with pytest.raises(HfHubHTTPError) as e:
        bob_api.create_repo(repo_id)
    assert e.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as e:
        anon_api.create_repo(repo_id)
    assert e.value.response.status_code == 401
    api.create_repo(repo_id)
    with pytest.raises(HfHubHTTPError) as e:
        bob_api.delete_repo(repo_id)
    assert e.value.response.status_code == 403
    assert api.repo_exists(repo_id)


def test_invalid_repo_names_are_refused(local_hub, http) -> None:
    for name in ("a..b", "-x", "x/y", "x" * 200, "x.git"):
        response = http.post(
            f"{local_hub.endpoint}/api/repos/create",
            json={"name": name, "organization": "alice"},
            headers={"authorization": f"Bearer {local_hub.token()}"},
        )
        assert response.status_code == 400, name
