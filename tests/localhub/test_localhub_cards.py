"""Local Hub: model and dataset cards (validate-yaml, README upload and load).

`RepoCard` methods take no endpoint argument and read HF_ENDPOINT at import, so they run in a
subprocess (see the `run_client` fixture).
"""

from __future__ import annotations

from huggingface_hub import HfApi

CARD_ROUND_TRIP = """
    import json
    from huggingface_hub import DatasetCard, ModelCard

    card = ModelCard("---\\nlicense: mit\\ntags:\\n- local\\n---\\n# Local card\\n")
    card.validate()
    card.push_to_hub("{repo_id}", commit_message="card")
    loaded = ModelCard.load("{repo_id}")
    DatasetCard("---\\nlicense: cc0-1.0\\n---\\n# Data\\n").push_to_hub("{repo_id}", repo_type="dataset")
    data = DatasetCard.load("{repo_id}", repo_type="dataset")
    print(json.dumps({{"license": loaded.data.license, "tags": loaded.data.tags, "text": loaded.text,
                      "dataset_license": data.data.license}}))
"""


def test_model_and_dataset_cards_round_trip(local_hub, api: HfApi, repo_id: str, run_client) -> None:
    api.create_repo(repo_id)
    api.create_repo(repo_id, repo_type="dataset")
    result = run_client(local_hub, CARD_ROUND_TRIP.format(repo_id=repo_id), token=local_hub.token())
    assert result == {
        "license": "mit",
        "tags": ["local"],
        "text": "# Local card\n",
        "dataset_license": "cc0-1.0",
    }
    assert api.list_repo_commits(repo_id)[0].title == "card"


def test_readme_upload_goes_through_validate_yaml(api: HfApi, http, local_hub, repo_id: str) -> None:
    api.create_repo(repo_id)
    api.upload_file(
        path_or_fileobj=b"---\nlicense: mit\n---\nhello\n", path_in_repo="README.md", repo_id=repo_id
    )
    assert api.model_info(repo_id).siblings[0].rfilename == "README.md"
    response = http.post(
        f"{local_hub.endpoint}/api/validate-yaml", json={"content": "x", "repoType": "model"}
    )
    assert (response.status_code, response.json()) == (200, {"errors": [], "warnings": []})
