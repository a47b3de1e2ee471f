"""hf_summary.snapshot: consistent reads (in place, or from a private copy) of a journal another host may be writing,
even when its writer was killed in the middle of a transaction (a hot rollback journal left for good)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pytest
from helpers import REPO_ROOT, V1_SCHEMA

from hf_summary.journal import Journal, JournalVersionError, journal_path
from hf_summary.snapshot import journal_snapshot, read_journal

# Opens the journal with a one-page cache in a rollback journal, changes many flags in one transaction so that
# pages spill into the database file before the commit, says so, then waits to be killed.
HALF_WRITTEN = """
    import os, sqlite3, sys, time
    path = sys.argv[1]
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA cache_size=1")
    db.execute("BEGIN IMMEDIATE")
    before = os.stat(path).st_mtime_ns
    n = 0
    while os.stat(path).st_mtime_ns == before or not os.path.exists(path + "-journal"):
        db.execute("INSERT OR REPLACE INTO flags (key, value, updated_at) VALUES (?, ?, 0)", (f"half:{n}", "x" * 900))
        n += 1
    print("spilled", flush=True)
    time.sleep(600)
"""


def _die_mid_transaction(logdir) -> None:
    """A writer killed mid-transaction with pages spilled into the database file: a hot rollback journal."""
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HALF_WRITTEN), str(journal_path(logdir))],
                              stdout=subprocess.PIPE, text=True, env={"PYTHONPATH": str(REPO_ROOT)})
    try:
        assert writer.stdout.readline().strip() == "spilled"
    finally:
        writer.kill()
        writer.wait()
    assert journal_path(logdir).with_name("journal.db-journal").exists()  # hot: left for good


def test_a_snapshot_of_a_journal_whose_writer_died_mid_transaction_is_its_last_committed_state(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_SUMMARY_SHARED_FS", "1")  # a rollback journal, as on a shared filesystem
    with Journal(tmp_path) as journal:
        journal.set_value("committed", 1)
    _die_mid_transaction(tmp_path)

    with journal_snapshot(tmp_path, timeout=5) as snapshot:
        assert snapshot.get_value("committed") == 1
        assert snapshot.values("half:") == {}
        assert snapshot.integrity_check() == "ok"
    assert journal_path(tmp_path).with_name("journal.db-journal").exists()  # the original is left alone


def test_a_read_in_place_torn_by_a_transaction_is_made_again(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_SUMMARY_SHARED_FS", "1")
    with Journal(tmp_path) as journal:
        journal.set_value("step", 1)
    seen = []

    def read(journal: Journal) -> int:
        value = journal.get_value("step")
        seen.append(value)
        if len(seen) == 1:  # another host's writer commits while this read runs
            with Journal(tmp_path) as writer:
                writer.set_value("step", 2)
        return value

    assert read_journal(tmp_path, read, timeout=5) == 2
    assert seen == [1, 2]


def test_a_journal_with_a_hot_rollback_journal_is_read_as_last_committed(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_SUMMARY_SHARED_FS", "1")
    with Journal(tmp_path) as journal:
        journal.set_value("committed", 1)
    _die_mid_transaction(tmp_path)
    # In place, SQLite's immutable mode would not see the hot journal and could read the half-written pages.
    assert read_journal(tmp_path, lambda journal: (journal.get_value("committed"), journal.values("half:")),
                        timeout=5) == (1, {})
    assert journal_path(tmp_path).with_name("journal.db-journal").exists()


def test_a_journal_of_an_older_version_is_read_from_a_migrated_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_SUMMARY_SHARED_FS", "1")
    journal_path(tmp_path).parent.mkdir()
    db = sqlite3.connect(journal_path(tmp_path))  # what an in-place read cannot open: it would have to migrate it
    db.executescript(V1_SCHEMA)
    db.execute("INSERT INTO flags (key, value, updated_at) VALUES ('committed', '1', 0)")
    db.commit()
    db.close()
    with pytest.raises(JournalVersionError, match="older journal schema version 1"):
        Journal(tmp_path, create=False, immutable=True)
    assert read_journal(tmp_path, lambda journal: journal.get_value("committed"), timeout=5) == 1
    db = sqlite3.connect(journal_path(tmp_path))
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1  # the original is left alone
    db.close()


def test_a_live_wal_journal_on_a_local_disk_is_read_through_its_own_locks(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_SUMMARY_SHARED_FS", "0")
    with Journal(tmp_path) as writer:  # open: its -wal file exists, and holds the commit
        writer.set_value("step", 7)
        assert journal_path(tmp_path).with_name("journal.db-wal").stat().st_size > 0
        assert read_journal(tmp_path, lambda journal: journal.get_value("step"), shared=False, timeout=5) == 7
    assert read_journal(tmp_path, lambda journal: journal.get_value("step"), shared=False, timeout=5) == 7
