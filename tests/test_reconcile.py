"""Sealing what a dead writer left open: identified by pid *and* create time, torn tails cut."""

from __future__ import annotations

import os

import psutil

from hf_summary.journal import Journal
from hf_summary.liveness import process_alive
from hf_summary.reconcile import seal_abandoned
from hf_summary.segments import Segment, read_records


def _open_segment(journal: Journal, name: str, create_time: float) -> int:
    segment = Segment(journal.logdir / name)
    segment.write_record(b"first")
    segment.write_record(b"second")
    os.write(os.open(segment.path, os.O_WRONLY | os.O_APPEND), b"\x07\x00\x00")  # a torn third record
    return journal.add_open_segment("", name, f"logs/{name}", os.getpid(), create_time)


def test_a_reused_pid_is_not_taken_for_the_live_writer(tmp_path):
    with Journal(tmp_path) as journal:
        mine = _open_segment(journal, "live", psutil.Process().create_time())
        reused = _open_segment(journal, "dead", psutil.Process().create_time() - 1000.0)
        sealed = seal_abandoned(journal, process_alive)
        assert [row.id for row in sealed] == [reused]
        assert [row.id for row in journal.open_segments()] == [mine]
        (row,) = journal.pending_segments()
        assert list(read_records(tmp_path / "dead")) == [b"first", b"second"]
        assert row.size == (tmp_path / "dead").stat().st_size == 2 * 16 + len(b"first") + len(b"second")


def test_nested_logdirs_with_their_own_journal_are_not_adopted(tmp_path):
    from hf_summary.reconcile import iter_disk_segments
    from hf_summary.segments import segment_name

    for run in ("", "sub", "other_run"):
        (tmp_path / run).mkdir(exist_ok=True)
        Segment(tmp_path / run / segment_name(len(run), "host", run_id="0123abcd")).write_record(b"x")
    Journal(tmp_path / "other_run").close()  # a writer of its own logs there
    assert [run for run, _ in iter_disk_segments(tmp_path)] == ["", "sub"]
