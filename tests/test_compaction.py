"""Compaction: the level policy's bounds, merged names, the journal's v1 -> v2 migration, and real pushes to the
local Hub that merge committed segments (the repo and the logdir hold the same files, every event once)."""

from __future__ import annotations

import math
import sqlite3
from collections import Counter
from pathlib import Path

from helpers import V1_SCHEMA
from tensorboardX.proto.event_pb2 import Event
from trainer_kit import assert_journal_sound, assert_repo_matches_logdir, local_segments

from hf_summary import HFSummaryWriter
from hf_summary.compaction import FANOUT, mergeable
from hf_summary.journal import SCHEMA_VERSION, Journal, SegmentRow
from hf_summary.segments import (
    merge_level,
    merged_name,
    parse_segment_run_id,
    read_records,
    segment_name,
    segment_span,
)


def _row(n: int, level: int = 0) -> SegmentRow:
    name = segment_name(n, "host", run_id="0a1b2c3d")
    return SegmentRow(n, "", name, f"p/{name}", "committed", 1, "x", 0, None, 0.0, None, None, None, None,
                      level=level)


def simulate(pushes: int) -> tuple[int, float]:
    """The policy over ``pushes`` pushes of one run dir (a segment each, one merge at most per push):
    the most live files ever seen, and bytes uploaded per byte logged."""
    live: list[SegmentRow] = []
    uploaded = 0
    weight: dict[int, int] = {}  # row id -> segments it holds
    most = 0
    for n in range(pushes):
        if group := mergeable(live):
            merged = _row(group[0].id, group[0].level + 1)
            weight[merged.id] = sum(weight[row.id] for row in group)
            uploaded += weight[merged.id]
            start = live.index(group[0])
            live[start:start + len(group)] = [merged]
        live.append(_row(n + 1_000_000))
        weight[n + 1_000_000] = 1
        uploaded += 1
        most = max(most, len(live))
    return most, uploaded / pushes


def test_policy_bounds_files_and_upload_amplification_for_a_30_day_run():
    pushes = 30 * 24 * 12  # 30 days at the default 5-minute tick
    most, amplification = simulate(pushes)
    levels = math.floor(math.log(pushes, FANOUT)) + 1
    assert most <= FANOUT * levels + 1 <= 128, most
    assert amplification <= levels, amplification
    print(f"30-day run: at most {most} files per run dir, {amplification:.2f} bytes uploaded per byte logged")


def test_merged_names_sort_where_their_first_segment_did_and_tell_their_span():
    def name(n: int, suffix: str = "") -> str:
        return segment_name(1796165988000 + n, "host.a", suffix, run_id="0a1b2c3d")

    names = [name(n) for n in range(1, 20)]
    first = merged_name(names[0], names[7], 1)
    second = merged_name(names[8], names[15], 1)
    top = merged_name(first, second, 2)
    base = 1796165988000
    assert (segment_span(first), segment_span(second), segment_span(top)) == (
        (base + 1, base + 8), (base + 9, base + 16), (base + 1, base + 16))
    assert (merge_level(names[0]), merge_level(first), merge_level(top)) == (0, 1, 2)
    assert sorted([names[16], top, name(0)]) == [name(0), top, names[16]]
    assert len({first, top, names[0]}) == 3
    assert parse_segment_run_id(top) == "0a1b2c3d"
    assert merged_name(name(3, ".x"), name(4, ".x"), 1).endswith(f".m1-{base + 4:013d}.x")


def test_a_version_1_journal_is_migrated_in_place(tmp_path):
    logdir = tmp_path / "old"
    (logdir / ".hf_summary").mkdir(parents=True)
    conn = sqlite3.connect(logdir / ".hf_summary" / "journal.db")
    conn.executescript(V1_SCHEMA)
    for n in range(1, 6):
        conn.execute(
            "INSERT INTO segments (run, name, path_in_repo, state, size, sha256, created_at, commit_oid) "
            "VALUES ('', ?, ?, 'committed', 10, 'x', 0, 'oid')", [f"s{n}", f"p/s{n}"]
        )
    conn.execute("DELETE FROM segments WHERE id = 5")  # AUTOINCREMENT must not hand id 5 out again
    conn.commit()
    conn.close()
    with Journal(logdir, create=False) as journal:
        assert [row.name for row in journal.segments("committed")] == ["s1", "s2", "s3", "s4"]
        assert all(row.level == 0 and row.replaced_by is None for row in journal.segments())
        assert journal.next_sequence() >= 6
        assert journal.add_open_segment("", "s6", "p/s6", writer_pid=1) == 6
        assert journal.integrity_check() == "ok"
    conn = sqlite3.connect(logdir / ".hf_summary" / "journal.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def _records(root: Path) -> Counter:
    """How many times each (run, tag, step) record appears under ``root``."""
    counts: Counter = Counter()
    for path in root.rglob("*tfevents*"):
        if ".hf_summary" in path.relative_to(root).parts:
            continue
        run = path.parent.relative_to(root).as_posix()
        for data in read_records(path):
            event = Event.FromString(data)
            for value in event.summary.value:
                counts[(run, value.tag, event.step)] += 1
    return counts


def test_pushes_merge_committed_segments_on_the_hub_and_in_the_logdir(tmp_path, writer_env, repo_id):
    logdir = tmp_path / "long"
    pushes = 3 * FANOUT + 2
    with HFSummaryWriter(repo_id, logdir=logdir, commit_every=60) as writer:
        for push in range(pushes):
            for step in range(push * 5, push * 5 + 5):
                writer.add_scalar("loss", step * 0.5, step)
                writer.add_scalars("pair", {"a": step, "b": -step}, step)
            assert writer.push_to_hub(timeout=60)
    counts = _records(logdir)
    assert set(counts.values()) == {1}
    assert {step for (run, tag, step) in counts if run == "."} == set(range(pushes * 5))
    assert_repo_matches_logdir(writer_env, repo_id, logdir, tmp_path / "hub")
    names = [path for path in local_segments(logdir) if "/" not in path]
    assert len(names) <= FANOUT + 3, names
    assert max(merge_level(name) for name in names) >= 1
    with Journal(logdir, create=False) as journal:
        status = journal.status()
        assert status["replaced_segments"] >= FANOUT * 3 and status["unfinished_compactions"] == 0
        assert not journal.compactions("planned") and not journal.compactions("committed")
        replaced = {row.id for row in journal.segments("replaced")}
        for compaction in journal.compactions("applied"):
            assert {row.id for row in journal.compaction_members(compaction.id)} <= replaced
    assert_journal_sound(logdir)
