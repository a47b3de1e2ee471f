"""`hf-summary sync` of many runs that go to one repo: they share their commits (one per batch of runs, bounded in
files), each run's journal marks its segments committed only after the commit that carried them, runs to other
repos land in their own, a rerun pushes nothing, a sync killed between a commit and the journals pushes nothing
twice when run again, and a commit refused for the repo's commit budget (HTTP 429) is spaced, not given up."""

from __future__ import annotations

import re
import signal
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

from helpers import download_repo
from trainer_kit import assert_journal_sound, cli, commit_titles, fake_dead_run, hub_env

from hf_summary.journal import Journal
from hf_summary.liveness import WriterRecord, save_record
from hf_summary.localhub.testing import LocalHub
from hf_summary.verify import iter_events

STEPS = 60  # fake_dead_run's 3 segments (2 sealed, 1 left open by a dead writer) of 20 steps each


def _dead_runs(parent: Path, count: int, hub, repo_id: str, **kwargs) -> list[Path]:
    """``count`` runs under ``parent`` as dead writers leave them (see ``fake_dead_run``), all to ``repo_id``."""
    logdirs = [parent / f"run-{n:02d}" for n in range(count)]
    for logdir in logdirs:
        fake_dead_run(logdir, endpoint=hub.endpoint, repo_id=repo_id, **kwargs)
    return logdirs


def _pushes(hub, repo_id: str) -> int:
    """The commits of hf-summary's pushes in the repo (its creation's commit is not one)."""
    return sum(1 for title in commit_titles(hub, repo_id) if title.startswith("hf-summary:"))


def _lines(stdout: str) -> dict[str, str]:
    return {line.split()[1]: line for line in stdout.splitlines() if not line.startswith("Total:")}


def _total(stdout: str) -> tuple[int, int]:
    """(segments, commits) of sync's total line."""
    found = re.search(r"^Total: .*; pushed (\d+) segment\(s\), \d+ bytes in (\d+) commit\(s\)$", stdout, re.M)
    return int(found.group(1)), int(found.group(2))


def _assert_each_step_once(hub, repo_id: str, logdirs: list[Path], dest: Path) -> None:
    copy = download_repo(hub.endpoint, hub.token(), repo_id, dest)
    for logdir in logdirs:
        steps = Counter(event.step for _, event in iter_events(copy / "tensorboard" / logdir.name)
                        for value in event.summary.value if value.tag == "loss")
        assert steps == Counter(range(STEPS)), logdir


def _assert_all_committed(logdirs: list[Path]) -> None:
    for logdir in logdirs:
        assert_journal_sound(logdir)
        with Journal(logdir, create=False) as journal:
            assert len(journal.segments("committed")) == 3 and not journal.pending_segments(), logdir


def test_sync_of_many_runs_into_one_repo_makes_one_commit_per_batch(tmp_path, hub, repo_name):
    sweep, other = f"alice/{repo_name}-sweep", f"alice/{repo_name}-other"
    root = tmp_path / "runs"
    in_sweep = _dead_runs(root, 12, hub, sweep)
    in_other = _dead_runs(root / "other", 3, hub, other)
    env = hub_env(hub)

    first = cli("sync", str(root), "--files-per-commit", "9", env=env)  # 3 runs of 3 segments per commit
    assert first.returncode == 0, first.stdout + first.stderr
    lines = _lines(first.stdout)
    assert set(lines) == {str(logdir) for logdir in in_sweep + in_other}
    assert all(line.startswith("OK") and "pushed 3 segment(s)" in line and "in 1 commit(s)" in line
               for line in lines.values()), first.stdout
    assert (_pushes(hub, sweep), _pushes(hub, other)) == (4, 1)  # ceil(12 / 3) and ceil(3 / 3), not 15
    assert _total(first.stdout) == (15 * 3, 5)
    _assert_all_committed(in_sweep + in_other)
    _assert_each_step_once(hub, sweep, in_sweep, tmp_path / "copy-sweep")
    _assert_each_step_once(hub, other, in_other, tmp_path / "copy-other")

    titles = {repo: commit_titles(hub, repo) for repo in (sweep, other)}
    again = cli("sync", str(root), env=env)
    assert again.returncode == 0 and _total(again.stdout) == (0, 0), again.stdout + again.stderr
    assert {repo: commit_titles(hub, repo) for repo in (sweep, other)} == titles  # a rerun commits nothing


def test_sync_killed_after_a_shared_commit_pushes_nothing_twice_when_run_again(tmp_path, hub, repo_id):
    root = tmp_path / "runs"
    logdirs = _dead_runs(root, 6, hub, repo_id)
    env = hub_env(hub)

    killed = cli("sync", str(root), "--files-per-commit", "9",
                 env={**env, "HF_SUMMARY_FAULT_POINT": "after_shared_commit"})
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert _pushes(hub, repo_id) == 1  # the first batch's commit was made; no journal heard of it
    for logdir in logdirs:
        with Journal(logdir, create=False) as journal:
            assert not journal.segments("committed") and len(journal.pending_segments()) == 3

    rerun = cli("sync", str(root), "--files-per-commit", "9", env=env)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert all(line.startswith("OK") for line in _lines(rerun.stdout).values()), rerun.stdout
    assert _pushes(hub, repo_id) == 2  # the second batch only: the first one's files were on the Hub already
    _assert_all_committed(logdirs)
    _assert_each_step_once(hub, repo_id, logdirs, tmp_path / "copy")


def test_sync_spaces_its_commits_when_the_repo_commit_budget_is_spent(tmp_path, repo_id):
    root = tmp_path / "runs"
    with LocalHub(commit_limit=2, commit_window_s=2.0) as hub:
        logdirs = _dead_runs(root, 5, hub, repo_id)
        for logdir in logdirs:
            with Journal(logdir, create=False) as journal:  # the gap after a refusal starts at the run's tick
                journal.save_settings(replace(journal.load_settings(), commit_every_s=1.0))
        started = time.monotonic()
        result = cli("sync", str(root), "--files-per-commit", "3", env=hub_env(hub))  # a commit per run
        assert result.returncode == 0, result.stdout + result.stderr
        assert "the repo's commit budget is spent" in result.stderr
        assert time.monotonic() - started > 2 * 2.0  # 5 commits at 2 per 2 s: spaced, not refused for good
        assert _pushes(hub, repo_id) == 5 and _total(result.stdout) == (15, 5)
        _assert_all_committed(logdirs)
        _assert_each_step_once(hub, repo_id, logdirs, tmp_path / "copy")


def test_sync_gives_up_within_its_timeout_on_a_spent_budget_and_leaves_the_runs_pending(tmp_path, repo_id):
    root = tmp_path / "runs"
    with LocalHub(commit_limit=1, commit_window_s=600.0) as hub:
        logdirs = _dead_runs(root, 3, hub, repo_id)
        result = cli("sync", str(root), "--files-per-commit", "3", "--timeout", "20", env=hub_env(hub))
        assert result.returncode == 1, result.stdout + result.stderr
        lines = _lines(result.stdout)
        assert lines[str(logdirs[0])].startswith("OK")
        for logdir in logdirs[1:]:
            assert lines[str(logdir)].startswith("INCOMPLETE") and "HTTP 429" in lines[str(logdir)], result.stdout
            with Journal(logdir, create=False) as journal:
                assert len(journal.pending_segments()) == 3 and not journal.segments("committed")
        assert _pushes(hub, repo_id) == 1


def test_sync_from_another_host_pushes_many_live_runs_sealed_segments_in_one_commit(tmp_path, hub, repo_id):
    root = tmp_path / "runs"
    now = time.time()
    for logdir in _dead_runs(root, 4, hub, repo_id, writer_pid=4242):
        with Journal(logdir) as journal:  # a writer alive on another node of a shared filesystem
            save_record(journal, WriterRecord("node-17", 4242, 1000.0, offline=True, started_at=now, heartbeat_at=now))
    env = {**hub_env(hub), "HF_SUMMARY_SHARED_FS": "1"}

    first = cli("sync", str(root), env=env)
    assert first.returncode == 1, first.stdout + first.stderr
    assert all(line.startswith("WRITING") and "pushed 2 segment(s)" in line for line in _lines(first.stdout).values())
    assert _pushes(hub, repo_id) == 1 and _total(first.stdout) == (8, 1)
    again = cli("sync", str(root), env=env)
    assert again.returncode == 1 and _total(again.stdout) == (0, 0), again.stdout + again.stderr
    assert _pushes(hub, repo_id) == 1
