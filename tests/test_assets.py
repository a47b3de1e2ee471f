"""`AssetTracker`: every new or changed asset is found at the next push, and only directories that changed are
listed again (no walk of the whole logdir per push)."""

from __future__ import annotations

import os

from hf_summary import assets
from hf_summary.assets import AssetTracker
from hf_summary.journal import RunSettings
from hf_summary.segments import file_sha256, segment_name

PATTERNS = ["*.tfevents.*", "*.yaml", "*.tsv"]


def _settings() -> RunSettings:
    return RunSettings(repo_id="u/r", repo_type="model", revision="main", path_in_repo="tb/run", allow_patterns=PATTERNS,
                       ignore_patterns=None, squash_history=False, commit_every_s=300.0, private=None, endpoint=None)


def _write(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _push(tracker: AssetTracker, pushed: dict, **kwargs) -> set[str]:
    """What one push would carry; ``pushed`` is updated as the uploader does after the commit."""
    changed = tracker.changed(pushed, **kwargs)
    pushed.update(changed)
    return set(changed)


def test_new_and_changed_assets_are_found_and_nothing_else(tmp_path):
    logdir = tmp_path
    _write(logdir / "hparams.yaml", "lr: 0.1\n")
    _write(logdir / "00000" / "points" / "tensors.tsv", "1\t2\n")
    _write(logdir / "notes.txt", "not matching\n")
    _write(logdir / segment_name(1, "h", run_id="0123abcd"), "a segment")
    _write(logdir / ".hf_summary" / "x.yaml", "the journal's directory")
    _write(logdir / "other" / ".hf_summary" / "journal.db", "another writer's logdir")
    _write(logdir / "other" / "theirs.yaml", "pushed by that writer")
    os.symlink(logdir / "hparams.yaml", logdir / "link.yaml")
    os.mkfifo(logdir / "pipe.yaml")
    tracker, pushed = AssetTracker(logdir, _settings()), {}
    assert _push(tracker, pushed) == {"hparams.yaml", "00000/points/tensors.tsv"}
    assert pushed["hparams.yaml"]["sha256"] == file_sha256(logdir / "hparams.yaml")
    assert _push(tracker, pushed) == set()
    _write(logdir / "hparams.yaml", "lr: 0.2\n")  # same size, rewritten in place: its directory does not change
    _write(logdir / "00001" / "more" / "deep" / "metadata.tsv", "a\n")  # a new directory tree
    assert _push(tracker, pushed) == {"hparams.yaml", "00001/more/deep/metadata.tsv"}
    os.replace(logdir / "hparams.yaml", logdir / "renamed.yaml")
    assert _push(tracker, pushed) == {"renamed.yaml"}
    assert _push(tracker, pushed, full=True) == set()  # a full walk agrees


def test_a_file_made_just_after_a_listing_is_found_at_the_next_push(tmp_path):
    tracker, pushed = AssetTracker(tmp_path, _settings()), {}
    for n in range(20):  # each right after the listing before it, in the same timestamp tick more often than not
        _write(tmp_path / "run" / f"{n}.yaml", "x")
        assert _push(tracker, pushed) == {f"run/{n}.yaml"}


def test_only_directories_that_changed_are_listed_again(tmp_path, monkeypatch):
    monkeypatch.setattr(assets, "RACY_MARGIN_S", -60.0)  # trust every listing: a test cannot wait for old mtimes
    for run in ("a", "b", "c/d", "c/e"):
        _write(tmp_path / run / "x.yaml", run)
    tracker, pushed = AssetTracker(tmp_path, _settings()), {}
    _push(tracker, pushed)
    assert tracker.listings == 6  # the logdir, a, b, c, c/d, c/e
    assert _push(tracker, pushed) == set() and tracker.listings == 6
    _write(tmp_path / "c" / "e" / "y.yaml", "new")
    assert _push(tracker, pushed) == {"c/e/y.yaml"} and tracker.listings == 7
    _write(tmp_path / "c" / "d" / ".hf_summary" / "journal.db", "now another writer's logdir")
    _write(tmp_path / "c" / "d" / "z.yaml", "theirs")
    assert _push(tracker, pushed) == set() and tracker.listings == 8  # c/d once more: it is left from now on
    assert _push(tracker, pushed) == set() and tracker.listings == 8
    assert _push(tracker, pushed, full=True) == set() and tracker.listings == 8 + 6
