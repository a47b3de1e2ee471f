"""hf_summary.snapshot: a consistent private copy of a journal another host may be writing, even when its writer
was killed in the middle of a transaction (a hot rollback journal left for good)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from helpers import REPO_ROOT

from hf_summary.journal import Journal, journal_path
from hf_summary.snapshot import journal_snapshot

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


def test_a_snapshot_of_a_journal_whose_writer_died_mid_transaction_is_its_last_committed_state(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_SUMMARY_SHARED_FS", "1")  # a rollback journal, as on a shared filesystem
    with Journal(tmp_path) as journal:
        journal.set_value("committed", 1)
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HALF_WRITTEN), str(journal_path(tmp_path))],
                              stdout=subprocess.PIPE, text=True, env={"PYTHONPATH": str(REPO_ROOT)})
    try:
        assert writer.stdout.readline().strip() == "spilled"
    finally:
        writer.kill()
        writer.wait()
    assert journal_path(tmp_path).with_name("journal.db-journal").exists()  # hot: left for good

    with journal_snapshot(tmp_path, timeout=5) as snapshot:
        assert snapshot.get_value("committed") == 1
        assert snapshot.values("half:") == {}
        assert snapshot.integrity_check() == "ok"
    assert journal_path(tmp_path).with_name("journal.db-journal").exists()  # the original is left alone
