"""Pushing: close and the context manager, ticks, squash, destinations, patterns, start-up checks."""

from __future__ import annotations

import logging

import pytest
from helpers import event_keys, hub_events, hub_text, kill_uploaders, uploader_processes, wait_until
from huggingface_hub import HfApi
from huggingface_hub.errors import RepositoryNotFoundError
from trainer_kit import assert_repo_matches_logdir, bucket_files

from hf_summary import HFSummaryWriter
from hf_summary.journal import Journal
from hf_summary.localhub.testing import LocalHub


def _api(hub, user: str = "alice") -> HfApi:
    return HfApi(endpoint=hub.endpoint, token=hub.token(user))


def _segment_commits(logdir) -> dict[str, int]:
    """commit oid -> number of segments it carried, from the journal."""
    with Journal(logdir, create=False) as journal:
        counts: dict[str, int] = {}
        for row in journal.segments("committed"):
            counts[row.commit_oid] = counts.get(row.commit_oid, 0) + 1
        return counts


def test_close_pushes_everything_and_stops_the_uploader(tmp_path, hub, writer_env, repo_id):
    logdir = tmp_path / "closed"
    writer = HFSummaryWriter(repo_id, logdir=logdir, commit_every=60)
    for step in range(1000):
        writer.add_scalar("loss", step / 10, step)
    writer.close()
    assert not uploader_processes(logdir)
    assert hub_events(hub, repo_id, tmp_path, path_in_repo="tensorboard/closed") == event_keys(logdir)
    with Journal(logdir, create=False) as journal:
        assert journal.status()["pending_segments"] == 0
        assert journal.integrity_check() == "ok"


def test_one_commit_per_push_however_many_segments(tmp_path, hub, writer_env, repo_id):
    logdir = tmp_path / "ticks"
    with HFSummaryWriter(repo_id, logdir=logdir, commit_every=60) as writer:
        for push in range(3):
            for step in range(10):
                writer.add_scalar("loss", step, push * 10 + step)
                writer.add_scalars("many", {f"run{n}": float(n) for n in range(5)}, push * 10 + step)
            assert writer.push_to_hub(timeout=30)
    assert sorted(_segment_commits(logdir).values()) == [6, 6, 6]
    titles = [c.title for c in _api(hub).list_repo_commits(repo_id)]
    assert len([t for t in titles if t.startswith("hf-summary:")]) == 3
    names = sorted(p.name for p in logdir.rglob("*tfevents*"))
    assert len(names) == len(set(names)) == 18


def test_ticks_push_without_being_asked(tmp_path, hub, writer_env, repo_id):
    logdir = tmp_path / "scheduled"
    writer = HFSummaryWriter(repo_id, logdir=logdir, commit_every=1 / 60)
    try:
        writer.add_scalar("loss", 1.0, 0)
        wait_until(lambda: hub_events(hub, repo_id, tmp_path, path_in_repo="tensorboard/scheduled"),
                   timeout=20, interval=0.5, message="a scheduled push")
    finally:
        writer.close()


def test_an_asset_that_changes_alone_is_pushed_at_the_next_tick(tmp_path, hub, writer_env, repo_id):
    """No event logged since the last push, only an asset written: the next tick pushes it."""
    logdir = tmp_path / "assets"
    writer = HFSummaryWriter(repo_id, logdir=logdir, commit_every=1 / 60, repo_allow_patterns=["*.tfevents.*", "*.yaml"])
    try:
        writer.add_scalar("loss", 1.0, 0)
        wait_until(lambda: hub_events(hub, repo_id, tmp_path, path_in_repo="tensorboard/assets"),
                   timeout=20, interval=0.5, message="a scheduled push")
        (logdir / "hparams.yaml").write_text("lr: 0.1\n")
        wait_until(lambda: hub_text(hub, repo_id, "tensorboard/assets/hparams.yaml") == "lr: 0.1\n",
                   timeout=30, interval=0.3, message="hparams.yaml on the Hub")
    finally:
        writer.close()


def test_squash_history_leaves_one_commit(tmp_path, hub, writer_env, repo_id):
    with HFSummaryWriter(repo_id, logdir=tmp_path / "squashed", squash_history=True) as writer:
        for step in range(3):
            writer.add_scalar("loss", 1.0, step)
            assert writer.push_to_hub(timeout=30)
    commits = list(_api(hub).list_repo_commits(repo_id))
    assert len(commits) == 1
    assert hub_events(hub, repo_id, tmp_path, path_in_repo="tensorboard/squashed") == event_keys(
        tmp_path / "squashed"
    )


@pytest.mark.parametrize(("path_in_repo", "folder"), [("logs/exp", "logs/exp/dest"), ("", "dest"), (None, "dest")])
def test_path_in_repo(tmp_path, hub, writer_env, repo_id, path_in_repo, folder):
    with HFSummaryWriter(repo_id, logdir=tmp_path / "dest", path_in_repo=path_in_repo) as writer:
        writer.add_scalar("loss", 1.0, 0)
    files = [f for f in _api(hub).list_repo_files(repo_id) if "tfevents" in f]
    assert files and all(f.startswith(folder + "/") for f in files)
    assert not [f for f in _api(hub).list_repo_files(repo_id) if ".hf_summary" in f or f.endswith(".log")]


def test_patterns_choose_what_is_uploaded(tmp_path, hub, writer_env, repo_id):
    logdir = tmp_path / "patterns"
    with HFSummaryWriter(repo_id, logdir=logdir, repo_ignore_patterns=["secret/*"]) as writer:
        writer.add_scalar("loss", 1.0, 0)
        writer.add_scalars("secret", {"a": 1.0}, 0)
        writer.add_scalars("public", {"b": 1.0}, 0)
    files = [f for f in _api(hub).list_repo_files(repo_id) if "tfevents" in f]
    assert any("/public/b/" in f for f in files) and not any("/secret/" in f for f in files)
    assert list((logdir / "secret" / "a").glob("*tfevents*"))  # still logged locally


def test_dataset_repo_on_a_branch(tmp_path, hub, writer_env, repo_id):
    logdir = tmp_path / "branch"
    with HFSummaryWriter(repo_id, logdir=logdir, repo_type="dataset", repo_revision="dev") as writer:
        writer.add_scalar("loss", 1.0, 0)
    api = _api(hub)
    assert "tfevents" in " ".join(api.list_repo_files(repo_id, repo_type="dataset", revision="dev"))
    assert not [f for f in api.list_repo_files(repo_id, repo_type="dataset") if "tfevents" in f]
    assert hub_events(hub, repo_id, tmp_path, path_in_repo="tensorboard/branch", repo_type="dataset",
                      revision="dev") == event_keys(logdir)


def test_private_repo_is_created_private_and_visibility_is_never_changed(tmp_path, hub, writer_env, repo_id):
    with HFSummaryWriter(repo_id, logdir=tmp_path / "private", repo_private=True) as writer:
        writer.add_scalar("loss", 1.0, 0)
    assert _api(hub).repo_info(repo_id).private
    with pytest.raises(RepositoryNotFoundError):
        _api(hub, "bob").repo_info(repo_id)
    with HFSummaryWriter(repo_id, logdir=tmp_path / "again", repo_private=False) as writer:
        writer.add_scalar("loss", 1.0, 0)
    assert _api(hub).repo_info(repo_id).private


def test_bad_token_fails_at_the_first_answer(tmp_path, hub, writer_env, repo_id, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_token")
    requests_before = hub.stats()["requests"]
    with pytest.raises(PermissionError, match="token"):
        HFSummaryWriter(repo_id, logdir=tmp_path / "bad")
    # one create_repo (which the client follows with a repo_info when refused): the refusal is final, never retried
    assert hub.stats()["requests"] - requests_before <= 2
    with pytest.raises(PermissionError):
        HFSummaryWriter(repo_id, logdir=tmp_path / "bad", token=hub.token("bob"))
    _api(hub).create_repo(repo_id)  # an existing public repo: bob can read it, not write to it
    with pytest.raises(PermissionError, match="bob"):
        HFSummaryWriter(repo_id, logdir=tmp_path / "bad", token=hub.token("bob"))
    assert not uploader_processes(tmp_path / "bad")


def test_offline_start_then_hub_up_pushes_everything(tmp_path, monkeypatch, caplog):
    with LocalHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setenv("HF_TOKEN", hub.token())
        hub.stop()
        logdir = tmp_path / "offline"
        caplog.set_level(logging.WARNING, logger="hf_summary")
        writer = HFSummaryWriter("alice/offline", logdir=logdir, commit_every=60)
        # a refused connection ends the access check at once (no retries until the check's timeout)
        said = [r.getMessage() for r in caplog.records if "the Hub" in r.getMessage()]
        assert len(said) == 1 and said[0].startswith("the Hub is unreachable"), said
        try:
            for step in range(100):
                writer.add_scalar("loss", float(step), step)
            assert not writer.push_to_hub(timeout=1)
            hub.start()
            writer.close()
            assert hub_events(hub, "alice/offline", tmp_path, path_in_repo="tensorboard/offline") == event_keys(logdir)
        finally:
            writer.close()
            kill_uploaders(logdir)


def test_close_with_the_hub_down_returns_within_its_bound(tmp_path, monkeypatch, caplog):
    with LocalHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setenv("HF_TOKEN", hub.token())
        logdir = tmp_path / "down"
        writer = HFSummaryWriter("alice/down", logdir=logdir, close_timeout=2, drain_timeout=30)
        writer.add_scalar("loss", 1.0, 0)
        hub.stop()
        caplog.set_level(logging.WARNING, logger="hf_summary")
        try:
            writer.close()
            # close gave up waiting at close_timeout, and left the uploader trying, within drain_timeout
            assert any("are not on the Hub after 2 s" in r.getMessage() for r in caplog.records), caplog.text
            assert uploader_processes(logdir)
            hub.start()
            wait_until(lambda: not uploader_processes(logdir), timeout=30, message="the background drain")
            assert hub_events(hub, "alice/down", tmp_path, path_in_repo="tensorboard/down") == event_keys(logdir)
        finally:
            kill_uploaders(logdir)


def test_bucket_target_pushes_segments_as_bucket_files(tmp_path, hub, writer_env, repo_name):
    bucket_id = f"alice/{repo_name}"
    logdir = tmp_path / "to-bucket"
    with HFSummaryWriter(bucket_id, logdir=logdir, repo_type="bucket", repo_private=True) as writer:
        assert writer._settings.commit_every_s == 60  # no commit budget: a faster default cadence
        for push in range(2):
            for step in range(50):
                writer.add_scalar("loss", step, push * 50 + step)
            assert writer.push_to_hub(timeout=30)
    api = _api(hub)
    assert api.bucket_info(bucket_id).private
    files = bucket_files(hub, bucket_id)
    assert all(path.startswith("tensorboard/to-bucket/") for path in files)  # no card, nothing else
    assert_repo_matches_logdir(hub, bucket_id, logdir, tmp_path / "copy", repo_type="bucket")
    assert event_keys(tmp_path / "copy" / "tensorboard" / "to-bucket") == event_keys(logdir)
    assert not api.repo_exists(bucket_id)  # a bucket, not a repo
    assert len(_segment_commits(logdir)) == 2  # one batch per push


def test_bucket_target_refuses_what_buckets_lack(tmp_path, writer_env, repo_name):
    for kwargs in ({"squash_history": True}, {"repo_revision": "dev"}):
        with pytest.raises(ValueError, match="a bucket has no history"):
            HFSummaryWriter(f"alice/{repo_name}", logdir=tmp_path / "refused", repo_type="bucket", **kwargs)
