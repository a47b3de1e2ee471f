"""`BucketClient` (the bucket push target) against the local Hub: the same contract as `HubClient`, and the
reads `hf-summary view` makes."""

from __future__ import annotations

import pytest

from hf_summary.hub import MissingRepoError, PathConflictError, open_client


@pytest.fixture
def client(local_hub, repo_name):
    return open_client(
        repo_id=f"alice/{repo_name}", repo_type="bucket", endpoint=local_hub.endpoint, token=local_hub.token()
    )


def test_missing_bucket_then_push_list_and_download(client, tmp_path):
    segment = tmp_path / "events.out.tfevents.1"
    segment.write_bytes(b"\0segment" * 1000)
    with pytest.raises(MissingRepoError):  # the uploader creates the bucket only when told it is missing
        client.commit_files([(segment, "tb/run/a")], "push")
    assert client.ensure_repo(private=True).endswith(f"/buckets/{client.repo_id}")
    client.check_write_access()
    result = client.commit_files([(segment, "tb/run/a")], "push")
    assert result.oid.startswith("batch-") and result.url.endswith(f"/buckets/{client.repo_id}")
    remote = client.list_files("tb")
    assert list(remote) == ["tb/run/a"]
    assert remote["tb/run/a"].holds(segment.stat().st_size, None, None, segment)
    assert remote["tb/run/a"].holds(segment.stat().st_size, None, None) is None  # no local copy: download to tell
    assert (client.download("tb", tmp_path / "copy") / "tb/run/a").read_bytes() == segment.read_bytes()
    assert client.list_files("elsewhere") == {} and client.commits() == [] and client.tag_card() is False


def test_never_replaces_other_content(client, tmp_path):
    client.ensure_repo(private=None)
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.write_bytes(b"\0ours")
    theirs.write_bytes(b"\0theirs")
    client.commit_files([(theirs, "tb/x")], "another run")
    with pytest.raises(PathConflictError) as raised:
        client.commit_files([(ours, "tb/x"), (ours, "tb/y")], "push", never_replace=frozenset({"tb/x", "tb/y"}))
    assert raised.value.paths == ["tb/x"]
    assert set(client.list_files("tb")) == {"tb/x"}  # nothing was sent
    client.commit_files([(theirs, "tb/x")], "same content again", never_replace=frozenset({"tb/x"}))


def test_read_as_view_does_listing_at_each_look_and_fetching_once(client, local_hub, tmp_path):
    with pytest.raises(MissingRepoError) as missing:
        client.list_files("tb", missing_ok=False)
    assert missing.value.what == "repo"
    client.ensure_repo(private=True)
    segment = tmp_path / "events.out.tfevents.1"
    segment.write_bytes(b"\0read me" * 5000)
    client.commit_files([(segment, "tb/run/a")], "push")
    assert client.head() is None  # no commits: nothing cheaper to watch than the listing
    with pytest.raises(MissingRepoError) as missing:
        client.list_files("elsewhere", missing_ok=False)
    assert missing.value.what == "folder"
    [entry] = client.list_files("tb", missing_ok=False).values()
    fetched = client.fetch_file(entry, commit=None, cache_dir=tmp_path / "cache")
    assert fetched.read_bytes() == segment.read_bytes()
    assert client.fetch_file(entry, commit=None, cache_dir=tmp_path / "cache") == fetched
    assert local_hub.stats()["reconstructions"][entry.xet_hash] == 1  # downloaded once
    assert list(fetched.parent.iterdir()) == [fetched]  # no temporary file left
