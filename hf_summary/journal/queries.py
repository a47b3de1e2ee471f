"""The journal's read-only queries, the ones `hf-summary status` runs among them, in plain SQL on a connection.

Plain `sqlite3` on purpose: `hf-summary status` answers in a fraction of a second on a month-long run, so it imports
nothing heavier than sqlite3 and reads each figure with an index lookup or one row (see `scripts/bench_status.py`).
The caller holds the connection's lock, and a transaction when several reads must agree.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from hf_summary.journal.rows import LeaseOwner
from hf_summary.journal.settings import RunSettings

CONFLICTS_KEY = "conflicts"
REPLACED_KEY = "replaced_segments"


def query(db: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """The rows of `sql` as dicts keyed by column name."""
    cursor = db.execute(sql, params)
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]


def flag(db: sqlite3.Connection, key: str, default: Any = None) -> Any:
    """The JSON value stored under `key` in `flags`, or `default`."""
    row = db.execute("SELECT value FROM flags WHERE key = ?", [key]).fetchone()
    return default if row is None else json.loads(row[0])


def run_settings(db: sqlite3.Connection) -> RunSettings | None:
    """The stored run settings, or `None` when none were saved."""
    rows = query(db, "SELECT * FROM settings WHERE id = 1")
    return RunSettings.from_row(rows[0]) if rows else None


def lease_owner(db: sqlite3.Connection) -> tuple[LeaseOwner, float] | None:
    """The lease holder and its last heartbeat time, or `None` when the lease is free."""
    row = db.execute("SELECT pid, create_time, host, heartbeat_at FROM lease WHERE id = 1").fetchone()
    return None if row is None else (LeaseOwner(row[0], row[1], row[2]), row[3])


def history(db: sqlite3.Connection, kind: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """Newest-first history entries as `{"id", "at", "kind", "message", **fields}`."""
    where, params = ("WHERE kind = ?", [kind]) if kind is not None else ("", [])
    rows = db.execute(
        f"SELECT id, at, kind, message, fields FROM history {where} ORDER BY id DESC LIMIT ?", [*params, limit]
    ).fetchall()
    return [_history_entry(row) for row in rows]


def latest_history(db: sqlite3.Connection, kinds: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The newest entry (as `history` gives it) of each of `kinds` that has one, by kind: one query."""
    newest = " UNION ALL ".join(["SELECT max(id) FROM history WHERE kind = ?"] * len(kinds))  # an index probe a kind
    rows = db.execute(f"SELECT id, at, kind, message, fields FROM history WHERE id IN ({newest})", list(kinds)).fetchall()
    return {row[2]: _history_entry(row) for row in rows}


def _history_entry(row: tuple) -> dict[str, Any]:
    id_, at, kind, message, fields = row
    return {**json.loads(fields), "id": id_, "at": at, "kind": kind, "message": message}


def stored_replaced_count(db: sqlite3.Connection) -> int | None:
    """The count of `replaced` rows each compaction's commit keeps, or `None` in a journal from before it."""
    return flag(db, REPLACED_KEY)


def counted_replaced_rows(db: sqlite3.Connection) -> int:
    """How many rows are `replaced`, counted (a scan of the compaction history)."""
    return db.execute("SELECT count(*) FROM segments WHERE state = 'replaced'").fetchone()[0]


def replaced_count(db: sqlite3.Connection) -> int:
    """How many rows are `replaced`: the stored count, counted once in a journal from before it."""
    stored = stored_replaced_count(db)
    return counted_replaced_rows(db) if stored is None else stored


def run_summary(db: sqlite3.Connection) -> dict[str, Any]:
    """Counts and the latest commit, error and preemption. Run it inside one transaction for a consistent snapshot."""
    by_state = {
        state: (count, size, oldest)
        for state, count, size, oldest in db.execute(
            "SELECT state, count(*), coalesce(sum(size), 0), min(sealed_at) "
            "FROM segments WHERE state IN ('open', 'sealed', 'committed') GROUP BY state"
        )
    }
    unfinished = db.execute("SELECT count(*) FROM compactions WHERE state IN ('planned', 'committed')").fetchone()[0]
    latest = latest_history(db, ("commit", "error", "preemption", "final_push"))
    last_commit, last_error = latest.get("commit"), latest.get("error")
    pending, pending_bytes, oldest = by_state.get("sealed", (0, 0, None))
    return {
        "pending_segments": pending,
        "pending_bytes": pending_bytes,
        "oldest_pending_age_s": None if oldest is None else max(0.0, time.time() - oldest),
        "open_segments": by_state.get("open", (0,))[0],
        "conflicting_segments": len(set(flag(db, CONFLICTS_KEY, []))),
        "committed_segments": by_state.get("committed", (0,))[0],
        "committed_bytes": by_state.get("committed", (0, 0))[1],
        "replaced_segments": replaced_count(db),
        "unfinished_compactions": unfinished,
        "last_commit": (
            {"oid": last_commit["oid"], "at": last_commit["at"], "url": last_commit["url"]} if last_commit else None
        ),
        "preemption": _preemption_summary(latest.get("preemption"), latest.get("final_push")),
        "last_error": (
            {"message": last_error["message"], "at": last_error["at"], "permanent": last_error.get("permanent", False)}
            if last_error
            else None
        ),
    }


def _preemption_summary(preemption: dict[str, Any] | None, final_push: dict[str, Any] | None) -> dict[str, Any] | None:
    """The last preemption (when, which signal) and, if it ended in order, what its final push carried."""
    if preemption is None:
        return None
    final = final_push if final_push is not None and final_push["id"] > preemption["id"] else None
    return {
        "at": preemption["at"],
        "signal": preemption.get("signal"),
        "final_push": None if final is None else {
            key: final.get(key) for key in ("at", "segments", "bytes", "commits", "pending", "last_commit")
        },
    }
