"""The SQLite journal: schema, states, sequences, lease, history, corruption (real SQLite, real processes)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hf_summary.journal import (
    APPLICATION_ID,
    HISTORY_KEEP,
    SCHEMA_VERSION,
    Journal,
    JournalCorruptError,
    JournalError,
    JournalVersionError,
    LeaseOwner,
    RunSettings,
    journal_path,
    move_aside,
)

SPAWN = multiprocessing.get_context("spawn")
OWNER_A = LeaseOwner(pid=111, create_time=1000.25, host="node-a")
OWNER_B = LeaseOwner(pid=222, create_time=2000.5, host="node-b")


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "logs") as j:
        yield j


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.01)


@contextmanager
def processes(target: Callable[..., None], args_list: list[tuple]) -> Iterator[list[multiprocessing.Process]]:
    procs = [SPAWN.Process(target=target, args=args, daemon=True) for args in args_list]
    for proc in procs:
        proc.start()
    try:
        yield procs
    finally:
        for proc in procs:
            proc.join(timeout=20)
            if proc.is_alive():
                proc.kill()
                proc.join()


def sealed_segment(j: Journal, name: str, size: int = 100) -> int:
    segment_id = j.add_open_segment("", name, f"logs/{name}", writer_pid=os.getpid())
    j.mark_sealed(segment_id, size, "0" * 64)
    return segment_id


# -- schema, files, opening -------------------------------------------------------------------------


def test_creates_private_files(tmp_path: Path) -> None:
    logdir = tmp_path / "logs"
    with Journal(logdir) as j:
        assert j.path == journal_path(logdir) == logdir / ".hf_summary" / "journal.db"
        assert j.logdir == logdir
        j.next_sequence()  # a write, so -wal and -shm exist while the journal is open
        assert mode(logdir / ".hf_summary") == 0o700
        for name in ("journal.db", "journal.db-wal", "journal.db-shm"):
            assert mode(logdir / ".hf_summary" / name) == 0o600, name
    with sqlite3.connect(journal_path(logdir)) as conn:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_open_without_create(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Journal(tmp_path / "logs", create=False)
    assert not (tmp_path / "logs").exists()
    Journal(tmp_path / "logs").close()
    with Journal(tmp_path / "logs", create=False) as j:
        assert j.integrity_check() == "ok"


def test_opening_an_existing_journal_writes_nothing(tmp_path: Path) -> None:
    """Opening reads the header only: no schema, migration or journal-mode change on a current journal (its
    cost on a month-long run: `scripts/bench_status.py`'s `recover` with nothing to push)."""
    Journal(tmp_path).close()
    path = journal_path(tmp_path)
    before = (path.stat().st_mtime_ns, path.read_bytes())
    for _ in range(3):
        with Journal(tmp_path, create=False) as journal:
            assert journal.integrity_check() == "ok"
    assert (path.stat().st_mtime_ns, path.read_bytes()) == before


def test_garbage_file_is_corrupt(tmp_path: Path) -> None:
    path = journal_path(tmp_path)
    path.parent.mkdir()
    garbage = os.urandom(8192)
    path.write_bytes(garbage)
    with pytest.raises(JournalCorruptError):
        Journal(tmp_path)
    assert path.read_bytes() == garbage


def test_other_applications_database_is_corrupt_and_untouched(tmp_path: Path) -> None:
    path = journal_path(tmp_path)
    path.parent.mkdir()
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(JournalCorruptError, match="not an hf-summary journal"):
        Journal(tmp_path)
    assert path.read_bytes() == before  # not even switched to WAL


def test_other_schema_version(tmp_path: Path) -> None:
    Journal(tmp_path).close()
    conn = sqlite3.connect(journal_path(tmp_path))
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(JournalVersionError):
        Journal(tmp_path)


def test_missing_table_is_corrupt(tmp_path: Path) -> None:
    Journal(tmp_path).close()
    conn = sqlite3.connect(journal_path(tmp_path))
    conn.execute("DROP TABLE lease")
    conn.close()
    with pytest.raises(JournalCorruptError, match="lease"):
        Journal(tmp_path)


def test_move_aside_keeps_every_byte(tmp_path: Path) -> None:
    assert move_aside(tmp_path) is None
    j = Journal(tmp_path)
    sealed_segment(j, "a")
    directory = j.path.parent
    before = {p.name: p.read_bytes() for p in directory.iterdir()}
    assert set(before) == {"journal.db", "journal.db-wal", "journal.db-shm"}
    moved = move_aside(tmp_path)
    assert moved is not None and moved.name.startswith("journal.db.broken-")
    after = {p.name: p.read_bytes() for p in directory.iterdir()}
    assert after == {name.replace("journal.db", moved.name): data for name, data in before.items()}
    j.close()
    with Journal(tmp_path) as fresh:  # a new, empty journal takes its place
        assert fresh.segments() == []
    conn = sqlite3.connect(moved)  # the moved copy still opens with its WAL
    assert conn.execute("SELECT name FROM segments").fetchall() == [("a",)]
    conn.close()
    second = move_aside(tmp_path)
    assert second is not None and second != moved and moved.exists()


# -- settings and flags -----------------------------------------------------------------------------


def test_settings_and_values(journal: Journal) -> None:
    assert journal.load_settings() is None
    settings = RunSettings(
        repo_id="user/run",
        repo_type="model",
        revision="main",
        path_in_repo="tensorboard/logs",
        allow_patterns=["*tfevents*"],
        ignore_patterns=None,
        squash_history=True,
        commit_every_s=60.0,
        private=None,
        endpoint="http://127.0.0.1:1234",
    )
    journal.save_settings(settings)
    assert journal.load_settings() == settings
    settings.private, settings.ignore_patterns = False, ["*.tmp"]
    journal.save_settings(settings)
    assert journal.load_settings() == settings
    assert journal.get_value("card_tagged") is None
    assert journal.get_value("card_tagged", False) is False
    journal.set_value("card_tagged", True)
    journal.set_value("repo", {"created": True, "url": "x"})
    assert journal.get_value("card_tagged") is True
    assert journal.get_value("repo") == {"created": True, "url": "x"}


# -- segments ---------------------------------------------------------------------------------------


def test_segment_states(journal: Journal, tmp_path: Path) -> None:
    first = journal.add_open_segment("", "seg1", "logs/seg1", writer_pid=42)
    second = journal.add_open_segment("train/loss", "seg2", "logs/train/loss/seg2", writer_pid=42)
    assert [s.state for s in journal.open_segments()] == ["open", "open"]
    assert journal.pending_segments() == []
    journal.mark_sealed(first, 123, "ab" * 32)
    with pytest.raises(JournalError, match="not open"):
        journal.mark_sealed(first, 123, "ab" * 32)
    with pytest.raises(JournalError, match="no such segment"):
        journal.mark_sealed(999, 1, "x")
    (pending,) = journal.pending_segments()
    assert (pending.id, pending.size, pending.sha256, pending.writer_pid) == (first, 123, "ab" * 32, 42)
    assert pending.sealed_at is not None and pending.sealed_at >= pending.created_at
    assert pending.local_path(tmp_path) == tmp_path / "seg1"
    assert journal.open_segments()[0].local_path(tmp_path) == tmp_path / "train" / "loss" / "seg2"

    journal.drop_segment(second)  # open, its file never got a record
    assert [s.id for s in journal.segments()] == [first]
    third = journal.add_sealed_segment("", "seg3", "logs/seg3", 7, "cd" * 32)
    assert third > second  # ids are never reused, so id order stays creation order
    assert [s.id for s in journal.pending_segments()] == [first, third]
    journal.mark_committed([first], "oid", None)
    with pytest.raises(JournalError, match="state committed"):
        journal.drop_segment(first)
    journal.drop_segment(third)  # sealed, its file vanished
    with pytest.raises(JournalError, match="no such segment"):
        journal.drop_segment(third)
    assert [s.id for s in journal.segments()] == [first]
    with pytest.raises(ValueError):
        journal.segments("claimed")


def test_status_counts_replaced_rows_and_files_are_matched_against_every_row(journal: Journal) -> None:
    def merge(names: list[str], merged: str) -> None:
        ids = [sealed_segment(journal, name) for name in names]
        journal.mark_committed(ids, "oid1", None)
        compaction = journal.plan_compaction("", 1, merged, f"logs/{merged}", 100 * len(ids), "ef" * 32, ids)
        journal.mark_committed([], "oid2", None, [compaction])

    merge(["a1", "a2", "a3"], "a-merged")
    assert journal.status()["replaced_segments"] == 3
    journal.db.execute("DELETE FROM flags WHERE key = 'replaced_segments'")  # a journal from before the count
    assert journal.status()["replaced_segments"] == 3
    merge(["b1", "b2"], "b-merged")
    assert journal.status()["replaced_segments"] == 5
    assert journal.known_files([("", "a1"), ("", "a-merged"), ("", "zz"), ("sub", "a1")]) == {("", "a1"), ("", "a-merged")}
    journal.set_value("writer:h:1", 1)
    journal.set_value("writer;", 2)  # the next key after the prefix's range
    journal.set_value("writes", 3)
    assert journal.values("writer:") == {"writer:h:1": 1}


def test_a_refused_change_leaves_none_of_its_rows(journal: Journal) -> None:
    """One change, one transaction: the rows a change wrote before it was refused go with it (the row writes nest
    inside the journal's transaction; they do not commit it)."""
    committed = sealed_segment(journal, "a")
    journal.mark_committed([committed], "oid", None)
    sealed = sealed_segment(journal, "b")
    with pytest.raises(JournalError, match="not all committed"):
        journal.plan_compaction("", 1, "a-b", "logs/a-b", 200, "ef" * 32, [committed, sealed])
    assert journal.db.execute("SELECT count(*) FROM compactions").fetchone()[0] == 0
    assert journal.compactions("planned") == []
    assert [row.replaced_by for row in journal.segments()] == [None, None]


def test_path_in_repo_and_file_are_unique(journal: Journal) -> None:
    journal.add_open_segment("", "seg1", "logs/seg1", writer_pid=1)
    with pytest.raises(JournalError, match="already in the journal"):
        journal.add_open_segment("other", "seg9", "logs/seg1", writer_pid=1)
    with pytest.raises(JournalError):
        journal.add_sealed_segment("", "seg1", "logs/elsewhere", 1, "x")
    assert len(journal.segments()) == 1


def test_commit_failure_status_and_history(journal: Journal) -> None:
    status = journal.status()
    assert status == {
        "pending_segments": 0,
        "pending_bytes": 0,
        "oldest_pending_age_s": None,
        "open_segments": 0,
        "committed_segments": 0,
        "conflicting_segments": 0,
        "committed_bytes": 0,
        "replaced_segments": 0,
        "unfinished_compactions": 0,
        "last_commit": None,
        "last_error": None,
        "preemption": None,
    }
    a, b, c = (sealed_segment(journal, name, size) for name, size in [("a", 10), ("b", 20), ("c", 40)])
    journal.add_open_segment("", "d", "logs/d", writer_pid=1)
    status = journal.status()
    assert (status["pending_segments"], status["pending_bytes"], status["open_segments"]) == (3, 70, 1)
    assert 0 <= status["oldest_pending_age_s"] < 60

    token = "hf_" + "Q" * 34
    journal.record_failure([a, b], f"502 Bad Gateway (Authorization: Bearer {token})", permanent=False)
    assert [(s.attempts, s.last_error is not None) for s in journal.pending_segments()] == [
        (1, True),
        (1, True),
        (0, False),
    ]
    assert token not in journal.pending_segments()[0].last_error

    with pytest.raises(JournalError, match="still open"):
        journal.mark_committed([a, 4], "oid-x", None)
    assert journal.status()["committed_segments"] == 0  # all or nothing

    journal.mark_committed([a, b], "oid-1", "http://hub/commit/oid-1")
    journal.mark_committed([b, c], "oid-2", None)  # b again: a no-op for b
    rows = {s.name: s for s in journal.segments()}
    assert (rows["a"].commit_oid, rows["b"].commit_oid, rows["c"].commit_oid) == ("oid-1", "oid-1", "oid-2")
    assert rows["a"].committed_at is not None and rows["d"].state == "open"

    status = journal.status()
    assert (status["pending_segments"], status["committed_segments"], status["oldest_pending_age_s"]) == (
        0,
        3,
        None,
    )
    assert status["last_commit"]["oid"] == "oid-2" and status["last_commit"]["url"] is None
    assert "Bad Gateway" in status["last_error"]["message"] and token not in status["last_error"]["message"]
    assert status["last_error"]["permanent"] is False

    journal.requeue_segments([b, c, c], "missing on the Hub")  # the Hub lost them: pending again
    journal.requeue_segments([b], "again")  # already pending: unchanged
    rows = {s.name: s for s in journal.segments()}
    assert [(rows[n].state, rows[n].commit_oid) for n in "abc"] == [
        ("committed", "oid-1"),
        ("sealed", None),
        ("sealed", None),
    ]
    assert rows["c"].last_error == "missing on the Hub"
    assert journal.history("requeue", limit=5)[-1]["segments"] == 2
    with pytest.raises(JournalError):
        journal.requeue_segments([rows["d"].id], "open")
    assert journal.status()["pending_bytes"] == 60
    journal.mark_committed([b, c], "oid-3", "http://hub/commit/oid-3")
    assert journal.status()["last_commit"]["url"] == "http://hub/commit/oid-3"

    commits = journal.history("commit")
    assert [(h["oid"], h["segments"], h["bytes"]) for h in commits] == [
        ("oid-3", 2, 60),
        ("oid-2", 1, 40),
        ("oid-1", 2, 30),
    ]
    journal.record_event("squash", "squashed history", commits_before=12)
    latest = journal.history(limit=1)[0]
    assert (latest["kind"], latest["commits_before"]) == ("squash", 12)
    with pytest.raises(ValueError):
        journal.record_event("x", "y", at=0.0)

    journal.close()
    for path in journal.path.parent.iterdir():
        assert token.encode() not in path.read_bytes()


def test_conflicts_and_the_preemption_story_in_status(journal: Journal) -> None:
    a, b = (sealed_segment(journal, name, 10) for name in "ab")
    journal.add_conflicts([a])
    journal.add_conflicts([a, b])
    assert journal.conflicts() == {a, b} and journal.status()["conflicting_segments"] == 2

    journal.record_event("final_push", "an older drain", segments=9, bytes=9, commits=["x"], pending=0)
    journal.record_event("preemption", "preempted (SIGTERM)", signal="SIGTERM")
    story = journal.status()["preemption"]
    assert story["signal"] == "SIGTERM" and story["final_push"] is None  # the older drain is not this one's
    journal.record_event("final_push", "done", segments=1, bytes=10, commits=["c1"], pending=0, last_commit="c1")
    final = journal.status()["preemption"]["final_push"]
    assert (final["segments"], final["commits"], final["pending"], final["last_commit"]) == (1, ["c1"], 0, "c1")


def test_history_is_trimmed_but_keeps_latest_of_each_kind(journal: Journal) -> None:
    segment_id = sealed_segment(journal, "a")
    journal.mark_committed([segment_id], "oid-1", None)
    for n in range(HISTORY_KEEP + 50):
        journal.record_event("error", f"error {n}")
    assert len(journal.history(limit=10_000)) <= HISTORY_KEEP + 1
    assert journal.status()["last_commit"]["oid"] == "oid-1"
    assert journal.history("error", limit=1)[0]["message"] == f"error {HISTORY_KEEP + 49}"


# -- sequences --------------------------------------------------------------------------------------


def test_sequence_monotonic_across_reopen(tmp_path: Path) -> None:
    with Journal(tmp_path) as j:
        first = [j.next_sequence() for _ in range(3)]
    with Journal(tmp_path) as j:
        assert j.next_sequence() > first[-1]
        future = int(time.time() * 1000) + 10**9
        j.ensure_sequence_above(future)
        assert j.next_sequence() == future + 1
        j.ensure_sequence_above(5)  # never goes back
        assert j.next_sequence() == future + 2
    assert first == sorted(set(first))


def test_sequence_follows_the_clock_so_a_fresh_journal_sorts_after_an_old_one(tmp_path: Path) -> None:
    with Journal(tmp_path / "old") as old:
        before = old.next_sequence()
    with Journal(tmp_path / "new") as new, Journal(tmp_path / "old") as old:
        assert new.next_sequence() > before
        assert new.run_id() == new.run_id() != old.run_id()


def _allocate(logdir: str, count: int, start: Any, out: Any) -> None:
    start.wait(30)
    with Journal(logdir) as j:  # every process also races to create the journal
        out.put([j.next_sequence() for _ in range(count)])


def test_sequence_unique_across_processes(tmp_path: Path) -> None:
    start, out = SPAWN.Event(), SPAWN.Queue()
    with processes(_allocate, [(str(tmp_path), 100, start, out)] * 3):
        start.set()
        results = [out.get(timeout=30) for _ in range(3)]
    for result in results:
        assert result == sorted(result)
    merged = [n for result in results for n in result]
    assert len(set(merged)) == 300


def test_sequence_unique_across_threads(journal: Journal) -> None:
    results: list[list[int]] = [[] for _ in range(4)]

    def worker(out: list[int]) -> None:
        out.extend(journal.next_sequence() for _ in range(50))

    threads = [threading.Thread(target=worker, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    merged = sorted(n for out in results for n in out)
    assert len(set(merged)) == 200


# -- lease ------------------------------------------------------------------------------------------


def test_lease_lifecycle(journal: Journal) -> None:
    assert journal.lease_owner() is None
    assert journal.acquire_lease(OWNER_A, lambda owner: pytest.fail("free lease: no liveness check"))
    owner, beat = journal.lease_owner()
    assert owner == OWNER_A and beat <= time.time()
    assert journal.acquire_lease(OWNER_A, lambda owner: True)  # ours already
    journal.heartbeat(OWNER_A)
    assert journal.lease_owner()[1] >= beat

    checked: list[LeaseOwner] = []
    assert not journal.acquire_lease(OWNER_B, lambda owner: checked.append(owner) or True)
    assert checked == [OWNER_A]
    with pytest.raises(JournalError, match="lease lost"):
        journal.heartbeat(OWNER_B)
    journal.release_lease(OWNER_B)  # not the holder: nothing happens
    assert journal.lease_owner()[0] == OWNER_A

    assert journal.acquire_lease(OWNER_B, lambda owner: False)  # the holder is dead: take over
    assert journal.lease_owner()[0] == OWNER_B
    assert journal.history("lease")[0]["previous_pid"] == OWNER_A.pid
    with pytest.raises(JournalError):
        journal.heartbeat(OWNER_A)
    journal.release_lease(OWNER_B)
    assert journal.lease_owner() is None


def _compete(logdir: str, start: Any, out: Any) -> None:
    with Journal(logdir) as j:
        owner = LeaseOwner(os.getpid(), time.time(), "node")
        start.wait(30)
        out.put((owner, j.acquire_lease(owner, lambda holder: True)))


def test_lease_two_processes_only_one_wins(tmp_path: Path) -> None:
    Journal(tmp_path).close()
    start, out = SPAWN.Event(), SPAWN.Queue()
    with processes(_compete, [(str(tmp_path), start, out)] * 2):
        start.set()
        results = [out.get(timeout=30) for _ in range(2)]
    winners = [owner for owner, won in results if won]
    assert len(winners) == 1
    with Journal(tmp_path) as j:
        assert j.lease_owner()[0] == winners[0]


# -- crash safety -----------------------------------------------------------------------------------


def _churn(logdir: str) -> None:
    with Journal(logdir) as j:
        n = 0
        while True:
            sequence = j.next_sequence()
            segment_id = j.add_open_segment("run", f"seg{sequence}", f"logs/run/seg{sequence}", os.getpid())
            j.mark_sealed(segment_id, n, "0" * 64)
            if n % 2:
                j.mark_committed([segment_id], f"oid-{n}", None)
            else:
                j.record_failure([segment_id], "503", permanent=False)
            n += 1


def test_sigkill_mid_transactions_leaves_consistent_journal(tmp_path: Path) -> None:
    Journal(tmp_path).close()
    with Journal(tmp_path) as watcher, processes(_churn, [(str(tmp_path),)]) as (proc,):
        wait_for(lambda: watcher.status()["committed_segments"] >= 30)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
        assert proc.exitcode == -signal.SIGKILL
    with Journal(tmp_path) as j:
        assert j.integrity_check() == "ok"
        rows = j.segments()
        assert len(rows) >= 30
        for row in rows:
            assert row.state != "sealed" or (row.size is not None and row.sealed_at is not None)
            assert (row.state == "committed") == (row.commit_oid is not None)
        assert j.next_sequence() > max(int(row.name[3:]) for row in rows)
