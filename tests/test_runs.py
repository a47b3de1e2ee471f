"""hf_summary.runs: which directories are runs, found without following symlinks or entering journals; reads that
wait on a server made several at once."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from hf_summary.journal import Journal
from hf_summary.runs import PROBE, READERS, NoRunsError, find_runs, is_run, read_all


def test_runs_are_found_at_every_depth_and_nowhere_else(tmp_path):
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


def _waiting_read(item: int) -> tuple[int, int]:
    time.sleep(0.005)  # a round trip to a server: waiting, not computing
    return item, threading.get_ident()


def test_reads_that_wait_are_made_several_at_once_and_keep_their_order():
    results = read_all(_waiting_read, list(range(PROBE + 4 * READERS)))
    assert [item for item, _ in results] == list(range(PROBE + 4 * READERS))
    assert {thread for _, thread in results[:PROBE]} == {threading.get_ident()}  # the probe: one at a time
    assert len({thread for _, thread in results[PROBE:]}) > 1


def test_one_reader_reads_one_at_a_time_and_a_bad_setting_is_told(monkeypatch, caplog):
    monkeypatch.setenv("HF_SUMMARY_READERS", "1")
    assert {thread for _, thread in read_all(_waiting_read, list(range(PROBE + 8)))} == {threading.get_ident()}
    monkeypatch.setenv("HF_SUMMARY_READERS", "many")
    with caplog.at_level(logging.WARNING, logger="hf_summary"):
        results = read_all(_waiting_read, list(range(PROBE + 8)))
    assert len({thread for _, thread in results}) > 1
    assert "HF_SUMMARY_READERS='many' is not a positive whole number" in caplog.text
