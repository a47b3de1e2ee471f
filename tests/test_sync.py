"""`hf-summary sync PATH...`: pushes every run under some directories, each to its own destination, verified as by
`recover`; leaves a live writer's open segments to it (judged on this host by its process, on another by its
heartbeat); pushes nothing twice and loses nothing across invocations; `status` on the parent lists every run."""

from __future__ import annotations

import json
import re
import signal
import time
from dataclasses import replace
from pathlib import Path

from helpers import wait_until
from trainer_kit import (
    Trainer,
    api,
    assert_journal_sound,
    assert_repo_matches_logdir,
    cli,
    commit_titles,
    fake_dead_run,
    hub_env,
    local_segments,
    loss_steps,
    sha256_of,
)

from hf_summary.journal import Journal, journal_path
from hf_summary.liveness import STALE_AFTER_S, HeartbeatWatch, WriterRecord, save_record


def _lines(stdout: str) -> dict[str, str]:
    """The per-run lines of sync's output, by logdir: ``{logdir: "OK ..."}``."""
    return {line.split()[1]: line for line in stdout.splitlines() if not line.startswith("Total:")}


def _pushed(stdout: str) -> int:
    return int(re.search(r"^Total: .*; pushed (\d+) segment\(s\)", stdout, re.M).group(1))


def _hub_copy(hub, repo_id: str, folder: str, dest: Path) -> dict[str, str]:
    """Path under ``folder`` -> sha256 of every file the repo holds there."""
    client = api(hub)
    copy = {}
    for entry in client.list_repo_tree(repo_id, path_in_repo=folder, recursive=True):
        if getattr(entry, "size", None) is not None:
            path = client.hf_hub_download(repo_id, entry.path, local_dir=dest)
            copy[entry.path[len(folder) + 1:]] = sha256_of(Path(path))
    return copy


def test_sync_pushes_a_tree_of_runs_across_two_invocations_while_one_is_still_written(tmp_path, hub, repo_name):
    env = hub_env(hub)
    offline = {**env, "HF_HUB_OFFLINE": "1"}
    root = tmp_path / "cluster"
    repo_a, repo_b, repo_live, repo_outside = (f"alice/{repo_name}-{x}" for x in ("a", "b", "live", "out"))
    a, c, b, nested, live = root / "a", root / "c", root / "group" / "b", root / "group" / "b" / "nested", root / "live"
    with Trainer(a, {"REPO": repo_a, **offline}, tmp_path) as trainer:  # an offline run that closed
        trainer.command("log 60", "logged")
        trainer.command("close", "closed")
    with Trainer(c, {"REPO": repo_a, **offline}, tmp_path) as preempted:  # same repo, its own folder
        preempted.command("log 40", "logged")
        preempted.command("push nowait", "pushed")
        preempted.command("log 30", "logged")
        preempted.proc.send_signal(signal.SIGTERM)
        assert preempted.proc.wait(10) == -signal.SIGTERM
        preempted.sigkill()
    fake_dead_run(b, endpoint=hub.endpoint, repo_id=repo_b)  # a dead writer's run, with a run nested inside it
    fake_dead_run(nested, endpoint=hub.endpoint, repo_id=repo_b)
    fake_dead_run(tmp_path / "outside", endpoint=hub.endpoint, repo_id=repo_outside)
    (root / "group" / "link").symlink_to(tmp_path / "outside", target_is_directory=True)  # never followed
    runs = {str(path) for path in (a, c, b, nested, live)}

    with Trainer(live, {"REPO": repo_live, **offline}, tmp_path) as trainer:
        trainer.command("log 100", "logged")
        trainer.command("push nowait", "pushed")  # sealed: sync may push it
        trainer.send("spin")  # then logs on into the next segment, all through the first sync
        wait_until(lambda: trainer.acked > 150, timeout=30, message="the trainer to log on")
        first = cli("sync", str(root), env=env)
        assert first.returncode == 1, first.stdout + first.stderr
        lines = _lines(first.stdout)
        assert set(lines) == runs
        assert {run: line.split()[0] for run, line in lines.items()} == {
            **{run: "OK" for run in runs}, str(live): "WRITING"
        }
        assert f"left to live writer(s) [{trainer.pid}]" in lines[str(live)]
        assert "Total: 5 run(s), 4 on the Hub, 1 still being written" in first.stdout
        with Journal(live, create=False) as journal:
            (still_open,) = journal.open_segments()
            assert still_open.writer_pid == trainer.pid and len(journal.segments("committed")) == 1

        listed = cli("status", str(root), "--json", env={})
        assert listed.returncode == 0, listed.stderr
        statuses = {status["logdir"]: status for status in json.loads(listed.stdout)}
        assert set(statuses) == runs
        assert statuses[str(live)]["state"] == "offline" and statuses[str(live)]["writer_alive"] is True
        assert statuses[str(live)]["open_segments"] == 1
        assert statuses[str(c)]["preempted"] is True and statuses[str(a)]["preempted"] is False
        assert all(statuses[run]["pending_segments"] == 0 for run in runs)
        text = cli("status", str(root), env={}).stdout.splitlines()
        assert len(text) == 5 and any(line.startswith(f"{live}  model {repo_live}") and "offline, 0 segment(s) "
                                      "pending, 1 open" in line for line in text), text

        trainer.proc.send_signal(signal.SIGTERM)  # preempted while it logs: it seals on its way out
        assert trainer.proc.wait(10) == -signal.SIGTERM
        trainer.sigkill()

    second = cli("sync", str(root), env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert all(line.startswith("OK") for line in _lines(second.stdout).values())
    assert "pushed 1 segment(s)" in _lines(second.stdout)[str(live)]
    segments = 0
    for run in runs:
        assert_journal_sound(Path(run))
        with Journal(run, create=False) as journal:
            segments += len(journal.segments("committed"))
    assert _pushed(first.stdout) + _pushed(second.stdout) == segments == 1 + 2 + 3 + 3 + 2  # each exactly once

    repos = (repo_a, repo_b, repo_live)
    commits = [len(commit_titles(hub, repo)) for repo in repos]
    third = cli("sync", str(root), env=env)
    assert third.returncode == 0 and _pushed(third.stdout) == 0, third.stdout + third.stderr
    assert [len(commit_titles(hub, repo)) for repo in repos] == commits  # a second run makes no commit

    for run, repo in ((a, repo_a), (c, repo_a), (nested, repo_b), (live, repo_live)):
        assert_repo_matches_logdir(hub, repo, run, tmp_path / f"copy-{run.name}")
    own = {path: sha for path, sha in local_segments(b).items() if not path.startswith("nested/")}
    assert _hub_copy(hub, repo_b, "tensorboard/b", tmp_path / "copy-b") == own  # nothing of the nested run
    assert set(range(trainer.acked + 1)) <= loss_steps(live)
    assert set(range(preempted.acked + 1)) <= loss_steps(c)
    assert not api(hub).repo_exists(repo_outside)


def test_sync_judges_a_writer_on_another_host_by_its_heartbeat_counter_on_its_own_clock(tmp_path, hub, repo_id):
    logdir = tmp_path / "remote"
    files = fake_dead_run(logdir, endpoint=hub.endpoint, repo_id=repo_id, writer_pid=4242)
    day_ago = time.time() - 86_400  # that node's clock is a day behind this one's: it does not matter
    record = WriterRecord("node-17", 4242, 1000.0, offline=True, started_at=day_ago, heartbeat_at=day_ago, beats=5)
    assert not replace(record, closed_at=day_ago).alive()  # closed: gone, whatever its heartbeat
    with Journal(logdir) as journal:
        save_record(journal, record)  # a writer alive on another node of a shared filesystem
    open_bytes = files[-1].read_bytes()
    env = hub_env(hub)

    first = cli("sync", str(logdir), env=env)
    assert first.returncode == 1, first.stdout + first.stderr
    assert first.stdout.startswith("WRITING") and "left to live writer(s) [4242]" in first.stdout
    assert "pushed 2 segment(s)" in first.stdout
    assert files[-1].read_bytes() == open_bytes
    with Journal(logdir, create=False) as journal:
        assert [row.name for row in journal.open_segments()] == [files[-1].name]
        save_record(journal, replace(record, beats=6))  # it beats on

    second = cli("sync", str(logdir), env=env)
    assert second.returncode == 1 and second.stdout.startswith("WRITING"), second.stdout + second.stderr
    watch = HeartbeatWatch(logdir)
    assert json.loads(watch.path.read_text())[record.key][0] == 6
    # then the node is lost: its counter stays at 6, which this host first saw STALE_AFTER_S ago by its clock
    watch.path.write_text(json.dumps({record.key: [6, time.time() - STALE_AFTER_S - 1]}))

    third = cli("sync", str(logdir), env=env)
    assert third.returncode == 0, third.stdout + third.stderr
    assert third.stdout.startswith("OK") and "pushed 1 segment(s)" in third.stdout
    assert_repo_matches_logdir(hub, repo_id, logdir, tmp_path / "copy")
    assert_journal_sound(logdir)


def test_sync_of_a_path_without_runs_says_so(tmp_path, hub, repo_id):
    empty = tmp_path / "empty"
    (empty / "deep" / "er").mkdir(parents=True)
    fake_dead_run(tmp_path / "elsewhere", endpoint=hub.endpoint, repo_id=repo_id)
    (empty / "deep" / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)  # not followed
    env = hub_env(hub)
    for path in (empty, empty / "deep"):
        result = cli("sync", str(path), env=env)
        assert result.returncode == 2 and result.stdout == "", result.stdout + result.stderr
        assert f"no hf-summary journal at or under {path}" in result.stderr
        status = cli("status", str(path), env={})
        assert status.returncode == 2 and "no hf-summary journal" in status.stderr
    missing = cli("sync", str(tmp_path / "nope"), env=env)
    assert missing.returncode == 2 and "is not a directory" in missing.stderr
    refused = cli("sync", str(tmp_path / "elsewhere"), env={**env, "HF_HUB_OFFLINE": "1"})
    assert refused.returncode == 2 and "HF_HUB_OFFLINE is set" in refused.stderr
    with Journal(tmp_path / "elsewhere", create=False) as journal:
        assert len(journal.pending_segments()) == 2 and len(journal.open_segments()) == 1
    assert not api(hub).repo_exists(repo_id)


def test_sync_again_and_again_while_an_offline_writer_rolls_pushes_each_segment_once(tmp_path, hub, repo_id):
    logdir = tmp_path / "rolling"
    env = hub_env(hub)
    with Trainer(logdir, {"REPO": repo_id, **env, "HF_HUB_OFFLINE": "1", "COMMIT_EVERY": "0.01"}, tmp_path) as trainer:
        trainer.send("spin")  # logs all along and seals a segment every 0.6 s, whatever sync is doing
        results = []

        def sealed() -> int:
            with Journal(logdir, create=False) as journal:
                return sum(1 for row in journal.segments() if row.state != "open")

        for _ in range(4):  # each sync finds at least one segment sealed since the previous one
            before = sealed()
            wait_until(lambda before=before: sealed() > before, timeout=30, message="the writer to seal another segment")
            results.append(cli("sync", str(logdir), env=env))
            assert results[-1].returncode == 1 and results[-1].stdout.startswith("WRITING"), results[-1].stdout
        trainer.proc.send_signal(signal.SIGTERM)
        assert trainer.proc.wait(10) == -signal.SIGTERM
        trainer.sigkill()
    results.append(cli("sync", str(logdir), env=env))
    assert results[-1].returncode == 0, results[-1].stdout + results[-1].stderr
    with Journal(logdir, create=False) as journal:
        live = journal.segments("committed")  # the files in the logdir: segments, and merged files if any
        pushed = [row for row in live + journal.segments("replaced") if row.level == 0]  # each sealed one
    assert len(pushed) > 4 and sum(_pushed(result.stdout) for result in results) == len(pushed)
    assert len(local_segments(logdir)) == len(live)
    assert_repo_matches_logdir(hub, repo_id, logdir, tmp_path / "copy")
    assert set(range(trainer.acked + 1)) <= loss_steps(logdir)
    assert_journal_sound(logdir)


def test_sync_from_another_host_pushes_a_sealed_segment_only_once_it_reads_it_whole(tmp_path, hub, repo_id):
    logdir = tmp_path / "remote"
    files = fake_dead_run(logdir, endpoint=hub.endpoint, repo_id=repo_id, writer_pid=4242)
    now = time.time()
    with Journal(logdir) as journal:  # a writer alive on another node of a shared filesystem
        save_record(journal, WriterRecord("node-17", 4242, 1000.0, offline=True, started_at=now, heartbeat_at=now))
    whole = files[1].read_bytes()
    files[1].write_bytes(whole[: len(whole) // 2])  # this host's cache has not caught up with that node's writes
    env = {**hub_env(hub), "HF_SUMMARY_SHARED_FS": "1"}
    journal_before = journal_path(logdir).read_bytes()

    first = cli("sync", str(logdir), env=env)
    assert first.returncode == 1 and first.stdout.startswith("WRITING"), first.stdout + first.stderr
    assert "pushed 1 segment(s)" in first.stdout and "1 sealed segment(s) not yet seen whole" in first.stdout
    assert {entry.path for entry in api(hub).list_repo_tree(repo_id, "tensorboard/remote")} == {
        f"tensorboard/remote/{files[0].name}"}
    assert journal_path(logdir).read_bytes() == journal_before  # the writer's journal is left as it is

    files[1].write_bytes(whole)  # now seen whole
    second = cli("sync", str(logdir), env=env)
    assert second.returncode == 1 and "pushed 1 segment(s)" in second.stdout, second.stdout + second.stderr
    third = cli("sync", str(logdir), env=env)
    assert third.returncode == 1 and "pushed 0 segment(s)" in third.stdout, third.stdout + third.stderr
