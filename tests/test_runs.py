"""hf_summary.runs: which directories are runs, found without following symlinks or entering journals."""

from __future__ import annotations

import pytest

from hf_summary.journal import Journal
from hf_summary.runs import NoRunsError, find_runs, is_run


@pytest.mark.parametrize("shared", ["0", "1"], ids=["one-at-a-time", "readers-at-once"])
def test_runs_are_found_at_every_depth_and_nowhere_else(tmp_path, monkeypatch, shared):
    monkeypatch.setenv("HF_SUMMARY_SHARED_FS", shared)  # a shared filesystem's walk reads directories at once
    runs = [tmp_path / "a", tmp_path / "group" / "b", tmp_path / "group" / "b" / "nested", tmp_path / "x" / "y" / "z"]
    for run in runs:
        Journal(run).close()
    (tmp_path / "group" / "b" / "train").mkdir()
    Journal(tmp_path / "elsewhere" / "r").close()
    (tmp_path / "group" / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)  # never followed
    (tmp_path / "a" / ".hf_summary" / "inner").mkdir()  # a journal's directory is never entered
    Journal(tmp_path / "a" / ".hf_summary" / "inner").close()
    (tmp_path / "fake" / ".hf_summary").mkdir(parents=True)  # a journal directory without a journal
    (tmp_path / "fake" / ".hf_summary" / "journal.db").mkdir()

    assert find_runs([tmp_path / "group", tmp_path]) == sorted([*runs, tmp_path / "elsewhere" / "r"])
    assert find_runs([tmp_path / "group" / "link"]) == [tmp_path / "elsewhere" / "r"]  # a given path may be one
    assert not is_run(tmp_path / "fake") and is_run(tmp_path / "a")


def test_no_run_and_no_directory_are_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(NoRunsError, match="no hf-summary journal"):
        find_runs([tmp_path / "empty"])
    with pytest.raises(NotADirectoryError, match="is not a directory"):
        find_runs([tmp_path / "file"])
