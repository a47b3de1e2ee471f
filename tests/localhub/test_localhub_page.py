"""Local Hub: the repo's web page (`GET /{repo_id}` in a browser) lists its files and how to view its runs."""

from __future__ import annotations

from huggingface_hub import HfApi

HTML = {"accept": "text/html"}


def test_repo_page_lists_files_and_the_view_command(local_hub, api: HfApi, repo_id, http) -> None:
    api.create_repo(repo_id, repo_type="dataset")
    for path in ("tensorboard/run/events.out.tfevents.1.host", "tensorboard/run/sub/events.out.tfevents.2.host",
                 "notes <b>.txt"):
        api.upload_file(path_or_fileobj=b"x" * 5, path_in_repo=path, repo_id=repo_id, repo_type="dataset")
    response = http.get(f"{local_hub.endpoint}/datasets/{repo_id}", headers=HTML)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "tensorboard/run/sub/events.out.tfevents.2.host" in page and "notes &lt;b&gt;.txt" in page
    assert "2 event file(s) in 2 run folder(s)" in page
    assert (f"HF_ENDPOINT={local_hub.endpoint} hf-summary view {repo_id} --repo-type dataset --path tensorboard"
            in page)


def test_repo_page_without_event_files_has_no_view_section(local_hub, api: HfApi, repo_id, http) -> None:
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=b"hello", path_in_repo="README.md", repo_id=repo_id)
    page = http.get(f"{local_hub.endpoint}/{repo_id}", headers=HTML).text
    assert "README.md" in page and "hf-summary view" not in page


def test_private_repo_page_answers_as_a_missing_repo(local_hub, api: HfApi, repo_id, http) -> None:
    api.create_repo(repo_id, private=True)
    anonymous = http.get(f"{local_hub.endpoint}/{repo_id}", headers=HTML)
    assert anonymous.status_code == 401 and anonymous.headers["x-error-code"] == "RepoNotFound"
    assert http.get(f"{local_hub.endpoint}/alice/no-such-repo", headers=HTML).status_code == 401
    owner = http.get(f"{local_hub.endpoint}/{repo_id}", headers={**HTML, "authorization": f"Bearer {local_hub.token()}"})
    assert owner.status_code == 200 and "private" in owner.text
