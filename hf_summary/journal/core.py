"""The journal's state changes: the run's settings, segment sequence numbers, segments and compactions.

Every state change is one `BEGIN IMMEDIATE` transaction, so a crash leaves either all of it or none (see
`hf_summary.journal.base.JournalBase`; the tables are described in `hf_summary.journal.schema`).

Segment states::

    open --mark_sealed--> sealed --mark_committed--> committed
                            ^                            |
                            +------requeue_segments------+   (the Hub lacks what was committed)
                                                         |
                                        (compaction) --> replaced  (merged into a file of a higher level)
    drop_segment deletes an open row (its file got no record) or a sealed one (its file vanished).
    add_sealed_segment inserts straight into `sealed` (rebuilding from files on disk).

Compaction (hf_summary/compaction.py)::

    plan_compaction:     members committed, replaced_by set; compaction 'planned'
    mark_committed(compactions=...) / confirm_compaction:
                         members -> 'replaced'; the merged file becomes a 'committed' segments row of its level;
                         compaction 'committed' (the Hub's commit replaced them, the logdir not yet)
    mark_applied:        compaction 'applied' (the logdir holds the merged file instead of its members)
    abandon_compaction:  a planned one the Hub never got: deleted, members live again

A row becomes `committed` only with the commit oid the Hub returned (or, for a merged file whose commit a
crash interrupted, once the Hub is seen holding it: its oid then stays unknown). Failures never change the
state: `record_failure` counts the attempt and keeps the error, and the segment stays pending.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

import hf_summary.journal.queries as queries
from hf_summary.journal.base import JournalBase
from hf_summary.journal.errors import JournalError, redact
from hf_summary.journal.rows import CompactionRow, SegmentRow
from hf_summary.journal.schema import COMPACTION_STATES, SEGMENT_STATES
from hf_summary.journal.settings import RunSettings

_RUN_ID_KEY = "run_id"
_SEAL = "UPDATE segments SET state = 'sealed', size = ?, sha256 = ?, sealed_at = ? WHERE id = ? AND state = 'open'"
_DROP = "DELETE FROM segments WHERE id = ? AND state IN ('open', 'sealed')"  # never a committed one


class Journal(JournalBase):
    """An open journal. Thread-safe; close it (or use `with`) when done."""

    # -- settings ---------------------------------------------------------------------------------

    def save_settings(self, settings: RunSettings) -> None:
        """Store (replace) the run's settings."""
        with self._transaction():
            self._insert("settings", {"id": 1, **settings.to_row(), "updated_at": time.time()}, replace=True)

    def load_settings(self) -> RunSettings | None:
        """The stored settings, or `None` when none were saved."""
        with self._lock:
            return queries.run_settings(self.db)

    # -- sequence numbers ---------------------------------------------------------------------------

    def next_sequence(self) -> int:
        """Allocate the next segment sequence number: strictly increasing across restarts and processes, and
        never below the current time in milliseconds, so that a run continued from a fresh logdir (a requeued
        job on another node) names its segments after those of the run it continues."""
        now_ms = int(time.time() * 1000)
        with self._transaction() as db:
            (stored,) = db.execute("SELECT next FROM sequence WHERE id = 1").fetchone()
            sequence = max(stored, now_ms)
            db.execute("UPDATE sequence SET next = ? WHERE id = 1", [sequence + 1])
        return sequence

    def run_id(self) -> str:
        """This journal's run id (made on first use), which every segment name of the run carries."""
        from hf_summary.segments import new_run_id  # not at the top: `hf-summary status` has no use for it

        with self._transaction() as db:
            if (run_id := queries.flag(db, _RUN_ID_KEY)) is None:
                run_id = new_run_id()
                self._set_flag(_RUN_ID_KEY, run_id, time.time())
        return run_id

    def ensure_sequence_above(self, sequence: int) -> None:
        """Make every later `next_sequence` return more than `sequence`."""
        with self._transaction() as db:
            db.execute("UPDATE sequence SET next = max(next, ?) WHERE id = 1", [sequence + 1])

    # -- segments -----------------------------------------------------------------------------------

    def add_open_segment(
        self, run: str, name: str, path_in_repo: str, writer_pid: int, writer_create_time: float | None = None
    ) -> int:
        """Record a segment the trainer is about to write; returns its id.

        Raises `JournalError` when `path_in_repo` (or `run`/`name`) is already recorded.
        """
        return self._insert_segment(
            {
                "run": run,
                "name": name,
                "path_in_repo": path_in_repo,
                "state": "open",
                "writer_pid": writer_pid,
                "writer_create_time": writer_create_time,
            }
        )

    def add_sealed_segment(self, run: str, name: str, path_in_repo: str, size: int, sha256: str) -> int:
        """Record an already sealed segment (rebuilding from files on disk); returns its id."""
        now = time.time()
        return self._insert_segment(
            {
                "run": run,
                "name": name,
                "path_in_repo": path_in_repo,
                "state": "sealed",
                "size": size,
                "sha256": sha256,
                "sealed_at": now,
            },
            now,
        )

    def _insert_segment(self, row: dict[str, Any], now: float | None = None) -> int:
        row = {**row, "attempts": 0, "created_at": time.time() if now is None else now}
        try:
            with self._transaction():
                return self._insert("segments", row)
        except sqlite3.IntegrityError as exc:
            raise JournalError(
                f"segment {row['path_in_repo']!r} ({row['run']!r}/{row['name']!r}) is already in the journal"
            ) from exc

    def mark_sealed(self, segment_id: int, size: int, sha256: str) -> None:
        """`open -> sealed`; raises `JournalError` if the segment is unknown or not open."""
        with self._transaction() as db:
            cursor = db.execute(_SEAL, [size, sha256, time.time(), segment_id])
            if cursor.rowcount != 1:
                raise JournalError(f"segment {segment_id} is not open: {self._describe(segment_id)}")

    def record_seals(self, sealed: list[tuple[int, int, str]], dropped: list[int]) -> int:
        """In one transaction: `open -> sealed` for each `(id, size, sha256)` of `sealed`, and forget each id of
        `dropped` (open or sealed: a segment that got no record). An uploader sees every segment of one roll
        sealed at once, so one push carries them all. A row no longer open (an earlier attempt's commit took,
        though it reported an I/O error) is left as it is. Returns how many were sealed."""
        now = time.time()
        with self._transaction() as db:
            recorded = 0
            for segment_id, size, sha256 in sealed:
                recorded += db.execute(_SEAL, [size, sha256, now, segment_id]).rowcount
            for segment_id in dropped:
                db.execute(_DROP, [segment_id])
        return recorded

    def drop_segment(self, segment_id: int) -> None:
        """Forget a segment that will never be pushed: an open one whose file got no record, or a sealed
        one whose file vanished. Refuses committed segments (and unknown ids)."""
        with self._transaction() as db:
            cursor = db.execute(_DROP, [segment_id])
            if cursor.rowcount != 1:
                raise JournalError(f"cannot drop segment {segment_id}: {self._describe(segment_id)}")

    def _describe(self, segment_id: int) -> str:
        row = self.db.execute("SELECT state FROM segments WHERE id = ?", [segment_id]).fetchone()
        return "no such segment" if row is None else f"state {row[0]}"

    def segments(self, state: str | None = None) -> list[SegmentRow]:
        """Segments, optionally only those in `state`, ordered by id (creation order)."""
        if state is None:
            sql, params = "SELECT * FROM segments ORDER BY id", []
        elif state in SEGMENT_STATES:
            sql, params = "SELECT * FROM segments WHERE state = ? ORDER BY id", [state]
        else:
            raise ValueError(f"unknown segment state {state!r}; expected one of {SEGMENT_STATES}")
        with self._lock:
            return [SegmentRow(**row) for row in queries.query(self.db, sql, params)]

    def known_files(self, files: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """The `(run, name)` pairs among `files` that have a row in any state (replaced ones too): one lookup
        of the `(run, name)` index each, so that matching the files on disk against the journal does not read
        a long run's whole compaction history."""
        pairs = json.dumps([[run, name] for run, name in files])
        with self._lock:
            rows = self.db.execute(
                "SELECT segments.run, segments.name FROM json_each(?) AS file JOIN segments "
                "ON segments.run = json_extract(file.value, '$[0]') AND segments.name = json_extract(file.value, '$[1]')",
                [pairs],
            ).fetchall()
        return {(run, name) for run, name in rows}

    def pending_segments(self) -> list[SegmentRow]:
        """Sealed segments not yet committed, ordered by id."""
        return self.segments("sealed")

    def open_segments(self) -> list[SegmentRow]:
        """Segments still being written (or left open by a dead writer), ordered by id."""
        return self.segments("open")

    def mark_committed(
        self, segment_ids: list[int], commit_oid: str, commit_url: str | None, compactions: list[int] = ()
    ) -> None:
        """`sealed -> committed` for `segment_ids` and `planned -> committed` for `compactions` (which
        rode in the same commit) in one transaction, plus a `commit` history entry.

        Segments already committed keep their first commit (pushing twice is a no-op); an unknown or open
        segment, or a compaction that is not planned, raises `JournalError` and nothing changes.
        """
        ids = json.dumps([int(i) for i in segment_ids])
        with self._transaction() as db:
            rows = self._closed_segments(segment_ids, ids, "committed")
            sealed = [row for row in rows if row[1] == "sealed"]
            now = time.time()
            db.execute(
                "UPDATE segments SET state = 'committed', committed_at = ?, commit_oid = ? "
                "WHERE state = 'sealed' AND id IN (SELECT value FROM json_each(?))",
                [now, commit_oid, ids],
            )
            for compaction_id in compactions:
                self._commit_compaction(compaction_id, commit_oid, now)
            self._add_history(
                "commit",
                f"committed {len(sealed)} segment(s) and {len(compactions)} merge(s) as {commit_oid}",
                {
                    "oid": commit_oid,
                    "url": commit_url,
                    "segments": len(sealed),
                    "bytes": sum(r[2] or 0 for r in sealed),
                    "compactions": len(compactions),
                },
                now,
            )

    # -- compaction ---------------------------------------------------------------------------------

    def live_files(self, run: str) -> list[SegmentRow]:
        """The files of run dir `run` that are not replaced (any state), in name order (= creation order)."""
        with self._lock:
            return [
                SegmentRow(**row)
                for row in queries.query(
                    self.db,
                    "SELECT * FROM segments WHERE run = ? AND state != 'replaced' ORDER BY name", [run]
                )
            ]

    def plan_compaction(
        self, run: str, level: int, name: str, path_in_repo: str, size: int, sha256: str, member_ids: list[int]
    ) -> int:
        """Record a planned merge of the committed, live files `member_ids` of `run`; returns its id.

        Raises `JournalError` (and changes nothing) if any member is not such a file."""
        ids = json.dumps([int(i) for i in member_ids])
        with self._transaction() as db:
            now = time.time()
            compaction_id = self._insert(
                "compactions",
                {"run": run, "level": level, "name": name, "path_in_repo": path_in_repo, "size": size,
                 "sha256": sha256, "state": "planned", "created_at": now},
            )
            cursor = db.execute(
                "UPDATE segments SET replaced_by = ? WHERE run = ? AND state = 'committed' AND replaced_by IS NULL "
                "AND id IN (SELECT value FROM json_each(?))",
                [compaction_id, run, ids],
            )
            if cursor.rowcount != len(set(member_ids)):
                raise JournalError(f"cannot merge segments {sorted(member_ids)} of {run!r}: not all committed and live")
        return compaction_id

    def compactions(self, state: str) -> list[CompactionRow]:
        """Compactions in `state`, oldest first."""
        if state not in COMPACTION_STATES:
            raise ValueError(f"unknown compaction state {state!r}; expected one of {COMPACTION_STATES}")
        with self._lock:
            return [
                CompactionRow(**row)
                for row in queries.query(self.db, "SELECT * FROM compactions WHERE state = ? ORDER BY id", [state])
            ]

    def compaction_members(self, compaction_id: int) -> list[SegmentRow]:
        """The files a compaction replaces (or will), in name order."""
        with self._lock:
            return [
                SegmentRow(**row)
                for row in queries.query(
                    self.db,
                    "SELECT * FROM segments WHERE replaced_by = ? ORDER BY name", [compaction_id]
                )
            ]

    def confirm_compaction(self, compaction_id: int, commit_oid: str | None) -> None:
        """`planned -> committed` for a merge found on the Hub after a crash (`commit_oid` may be unknown)."""
        with self._transaction():
            self._commit_compaction(compaction_id, commit_oid, time.time())
            self._add_history("compaction", f"compaction {compaction_id} found on the Hub", {"compaction": compaction_id})

    def _commit_compaction(self, compaction_id: int, commit_oid: str | None, now: float) -> None:
        """Inside a transaction: members -> 'replaced', the merged file -> a committed row of its level."""
        row = self.db.execute(
            "SELECT run, level, name, path_in_repo, size, sha256 FROM compactions WHERE id = ? AND state = 'planned'",
            [compaction_id],
        ).fetchone()
        if row is None:
            raise JournalError(f"compaction {compaction_id} is not planned")
        run, level, name, path_in_repo, size, sha256 = row
        segment_id = self._insert(
            "segments",
            {"run": run, "name": name, "path_in_repo": path_in_repo, "state": "committed", "size": size,
             "sha256": sha256, "attempts": 0, "created_at": now, "sealed_at": now, "committed_at": now,
             "commit_oid": commit_oid, "level": level},
        )
        replaced = self.db.execute(
            "UPDATE segments SET state = 'replaced' WHERE replaced_by = ? AND state = 'committed'", [compaction_id]
        ).rowcount
        self._count_replaced(replaced, now)
        self.db.execute(
            "UPDATE compactions SET state = 'committed', segment_id = ?, committed_at = ?, commit_oid = ? "
            "WHERE id = ?",
            [segment_id, now, commit_oid, compaction_id],
        )

    def _count_replaced(self, added: int, now: float) -> None:
        """Inside a transaction: keep the count of `replaced` rows (for `status`, which then reads one row instead
        of counting a long run's compaction history); a journal from before the count is counted once."""
        stored = queries.stored_replaced_count(self.db)
        count = queries.counted_replaced_rows(self.db) if stored is None else stored + added  # counted: includes them
        self._set_flag(queries.REPLACED_KEY, count, now)

    def abandon_compaction(self, compaction_id: int) -> None:
        """Forget a planned merge the Hub never got; its members are live again."""
        with self._transaction() as db:
            cursor = db.execute("DELETE FROM compactions WHERE id = ? AND state = 'planned'", [compaction_id])
            if cursor.rowcount != 1:
                raise JournalError(f"compaction {compaction_id} is not planned")
            db.execute("UPDATE segments SET replaced_by = NULL WHERE replaced_by = ?", [compaction_id])

    def mark_applied(self, compaction_id: int) -> None:
        """`committed -> applied`: the logdir holds the merged file instead of the files it replaces."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE compactions SET state = 'applied' WHERE id = ? AND state = 'committed'", [compaction_id]
            )
            if cursor.rowcount != 1:
                raise JournalError(f"compaction {compaction_id} is not committed")

    def requeue_segments(self, segment_ids: list[int], reason: str) -> None:
        """`committed -> sealed` again (the Hub turned out not to hold them), keeping `reason` as their
        last error, plus a `requeue` history entry. Sealed ones stay as they are; an unknown or open
        segment raises `JournalError` and nothing changes."""
        reason = redact(reason)
        ids = json.dumps([int(i) for i in segment_ids])
        with self._transaction() as db:
            rows = self._closed_segments(segment_ids, ids, "requeued")
            db.execute(
                "UPDATE segments SET state = 'sealed', committed_at = NULL, commit_oid = NULL, "
                "last_error = ? WHERE state = 'committed' AND id IN (SELECT value FROM json_each(?))",
                [reason, ids],
            )
            requeued = sum(1 for row in rows if row[1] == "committed")
            self._add_history("requeue", f"requeued {requeued} segment(s): {reason}", {"segments": requeued})

    def _closed_segments(
        self, segment_ids: list[int], ids: str, verb: str
    ) -> list[tuple[int, str, int | None]]:
        """`(id, state, size)` of `segment_ids`; `JournalError` if any is unknown or open."""
        rows = self.db.execute(
            "SELECT id, state, size FROM segments WHERE id IN (SELECT value FROM json_each(?))", [ids]
        ).fetchall()
        states = {row[0]: row[1] for row in rows}
        bad = sorted(i for i in set(segment_ids) if states.get(i, "open") == "open")
        if bad:
            raise JournalError(f"cannot mark segments {bad} {verb}: unknown or still open")
        return rows

    def record_failure(self, segment_ids: list[int], error: str, *, permanent: bool) -> None:
        """Count a failed push of `segment_ids` (state unchanged) and add an `error` history entry."""
        error = redact(error)
        ids = json.dumps([int(i) for i in segment_ids])
        with self._transaction() as db:
            db.execute(
                "UPDATE segments SET attempts = attempts + 1, last_error = ? "
                "WHERE id IN (SELECT value FROM json_each(?))",
                [error, ids],
            )
            self._add_history("error", error, {"segments": len(segment_ids), "permanent": permanent})

    # -- status -------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Counts and the latest commit/error, from one consistent snapshot (see `queries.run_summary`)."""
        with self._transaction("DEFERRED") as db:
            return queries.run_summary(db)

    def add_conflicts(self, segment_ids: list[int]) -> None:
        """Record segments whose path on the Hub holds another run's file: they are never pushed (kept on
        disk and in their state) and uploads leave them out; `status` counts them."""
        self.set_value(queries.CONFLICTS_KEY, sorted(self.conflicts() | {int(i) for i in segment_ids}))

    def conflicts(self) -> set[int]:
        """Ids recorded by `add_conflicts`."""
        return set(self.get_value(queries.CONFLICTS_KEY, []))
