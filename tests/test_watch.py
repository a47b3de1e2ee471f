"""`hf-summary watch`: foreign writers (tensorboardX's and torch's own SummaryWriter, with their buffering) are
pushed record by record, once, in order, whatever is killed when."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from helpers import (
    REPO_ROOT,
    download_repo,
    hub_text,
    kill_uploaders,
    run_script,
    uploader_processes,
    wait_until,
)
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.summary import scalar
from trainer_kit import api, cli, commit_titles, fake_dead_run, hub_env, pid_gone

from hf_summary import compaction
from hf_summary.assets import RACY_MARGIN_S
from hf_summary.compaction import FANOUT
from hf_summary.journal import Journal, JournalCorruptError, RunSettings
from hf_summary.segments import frame_record, last_complete_offset
from hf_summary.tailcopy import CopyName, TailCopier, parse_repo_copy_name
from hf_summary.uploader.pusher import Pusher
from hf_summary.verify import iter_events
from hf_summary.watch import WatchBusyError, Watcher, WatchError

SOURCE = "events.out.tfevents.1795714803.vm"

# A foreign trainer: its own SummaryWriter (WRITER=tensorboardX or torch), flushing every FLUSH_SECS (default 1) as
# a user would configure it, logging until killed or told to stop. It opens a second run directory and rewrites
# hparams.yaml midway, and acknowledges each step on stdout. SIGTERM (or STOP_AT steps) ends it cleanly: it closes
# its writers. With START_WATCH it starts its own watcher (start_watch), which watches it.
FOREIGN = """
    import os, signal, sys, time
    import numpy as np
    if os.environ["WRITER"] == "torch":
        from torch.utils.tensorboard import SummaryWriter
    else:
        from tensorboardX import SummaryWriter

    logdir = os.environ["LOGDIR"]
    stop_at = int(os.environ.get("STOP_AT", "-1"))
    signal.signal(signal.SIGTERM, lambda signum, frame: globals().update(stop_at=step + 1))
    if os.environ.get("START_WATCH"):
        from hf_summary.watch import start_watch

        print("watcher", start_watch(logdir, os.environ["REPO"], commit_every=0.02).pid, flush=True)
    flush_secs = int(os.environ.get("FLUSH_SECS", "1"))
    writer = SummaryWriter(logdir, flush_secs=flush_secs)
    second = None
    rng = np.random.default_rng(0)
    open(os.path.join(logdir, "hparams.yaml"), "w").write("lr: 0.1\\n")
    step = 0
    while step != stop_at:
        writer.add_scalar("loss", step * 0.5, step)
        if step % 10 == 0:
            writer.add_histogram("weights", rng.normal(size=200), step)
            writer.add_scalars("group", {"a": step, "b": -step}, step)
        if step == 300:
            second = SummaryWriter(os.path.join(logdir, "phase2"), flush_secs=flush_secs)
            open(os.path.join(logdir, "hparams.yaml"), "w").write("lr: 0.01\\n")
        if second is not None:
            second.add_scalar("acc", step / 1000, step)
        print(step, flush=True)
        step += 1
        time.sleep(0.003)
    writer.close()
    if second is not None:
        second.close()
    print("closed", flush=True)
"""


# tensorboardX writes each record with four write() calls into a 4 KiB buffer: a record bigger than the buffer goes
# to the file at once, but its 4-byte footer stays behind until the next flush (120 s here), so the file ends torn.
TORN = """
    import os, time
    import numpy as np
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(os.environ["LOGDIR"], flush_secs=120)
    for step in range(50):
        writer.add_scalar("loss", step * 0.5, step)
    writer.add_histogram("big", np.random.default_rng(0).normal(size=20000), 50)
    print("logged", flush=True)
    time.sleep(600)
"""


def _record(step: int) -> bytes:
    return frame_record(Event(wall_time=1.0 + step, step=step, summary=scalar("loss", step * 0.5)).SerializeToString())


def _settings(logdir: Path) -> RunSettings:
    return RunSettings("alice/x", "model", "main", f"tensorboard/{logdir.name}", ["*.yaml"], ["*tfevents*"], False,
                       60.0, None, None)


def _copies(logdir: Path) -> list[tuple[str, CopyName]]:
    """``(source's path in the repo, copy)`` of every copy in the journal."""
    with Journal(logdir, create=False) as journal:
        paths = [row.path_in_repo for row in journal.segments()]
    copies = [(path, parse_repo_copy_name(path)) for path in paths]
    return [(f"{os.path.dirname(path)}/{source}", copy) for path, (source, _, copy) in copies if not copy.merged]


def _events(root: Path) -> list[tuple[str, bytes]]:
    """Every complete record under ``root``, file by file in name order: equal lists mean once, in order."""
    return [(run, event.SerializeToString()) for run, event in iter_events(root)]


class WatcherProcess:
    """`hf-summary watch` as a process, its stderr drained all along (its uploader inherits the pipe)."""

    def __init__(self, logdir: Path, repo_id: str, hub, *args: str, env: dict[str, str] | None = None,
                 python_options: tuple[str, ...] = ()):
        full_env = {**os.environ, **hub_env(hub), "PYTHONPATH": str(REPO_ROOT), **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, *python_options, "-m", "hf_summary", "watch", str(logdir), "--repo-id", repo_id, *args],
            env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self.stderr: list[str] = []
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()

    def wait(self, timeout: float = 120) -> int:
        return self.proc.wait(timeout)

    def log(self) -> str:
        return "".join(self.stderr[-40:])


@pytest.fixture
def processes(tmp_path):
    """Started processes, SIGKILLed (with every uploader of the test's logdirs) on the way out."""
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    for logdir in tmp_path.iterdir():
        kill_uploaders(logdir)


class Foreign:
    """A foreign trainer (FOREIGN) whose acknowledgements are read all along."""

    def __init__(self, writer: str, logdir: Path, cwd: Path, processes, **env: str):
        self.proc = run_script(FOREIGN, {"WRITER": writer, "LOGDIR": str(logdir), **env}, cwd)
        processes.append(self.proc)
        self.step, self.closed, self.watcher = -1, False, None
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.strip() == "closed":
                self.closed = True
            elif line.startswith("watcher "):
                self.watcher = int(line.split()[1])
            else:
                self.step = int(line)

    def wait_for_step(self, step: int) -> None:
        wait_until(lambda: self.step >= step or self.proc.poll() is not None, timeout=120, message=f"step {step}")
        assert self.step >= step, f"the foreign trainer ended early: {''.join(self.stderr[-30:])}"

    def end(self) -> None:
        """SIGTERM: it closes its writers (every record complete) and exits."""
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(60) == 0, "".join(self.stderr[-30:])
        wait_until(lambda: self.closed, timeout=10)


def _hub_copy(hub, repo_id: str, logdir: Path, tmp_path: Path) -> Path:
    dest = download_repo(hub.endpoint, hub.token(), repo_id, tmp_path / f"hub-{uuid.uuid4().hex[:8]}")
    return dest / "tensorboard" / logdir.name


def _assert_hub_holds_every_record_once(hub, repo_id: str, logdir: Path, tmp_path: Path) -> Path:
    copy = _hub_copy(hub, repo_id, logdir, tmp_path)
    local = _events(logdir)
    assert local, "the foreign writer got nothing to the disk"
    assert _events(copy) == local
    names = [path.name for path in copy.rglob("*tfevents*")]
    assert all(parse_repo_copy_name(name) for name in names), names
    wait_until(lambda: not uploader_processes(logdir), timeout=30, message="every uploader to exit")
    with Journal(logdir, create=False) as journal:
        assert not journal.pending_segments()
    return copy


# ------------------------------------------------------------------------------------------- the copier


def test_only_complete_records_are_copied_and_a_restart_resumes_at_the_offset(tmp_path):
    logdir = tmp_path / "logs"
    source = logdir / "train" / SOURCE
    source.parent.mkdir(parents=True)
    records = [_record(step) for step in range(8)]
    source.write_bytes(b"".join(records[:5]) + records[5][:17])  # a torn last record
    with Journal(logdir) as journal:
        journal.save_settings(_settings(logdir))
        copier = TailCopier(journal, _settings(logdir))
        assert len(copier.copy_new_records()) == 1
        assert copier.copy_new_records() == []  # nothing new: no empty copy
    with source.open("ab") as f:
        f.write(records[5][17:] + records[6])
    with Journal(logdir) as journal:  # a new copier (a restarted watcher) resumes at the recorded offset
        assert len(TailCopier(journal, _settings(logdir)).copy_new_records()) == 1
    end = sum(map(len, records[:5]))
    assert [copy for _, copy in _copies(logdir)] == [
        CopyName(1, 0, end), CopyName(2, end, end + len(records[5]) + len(records[6]))
    ]
    on_hub = tmp_path / "as-pushed"
    with Journal(logdir, create=False) as journal:
        for row in journal.segments():
            target = on_hub / row.path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(row.local_path(logdir).read_bytes())
    assert _events(on_hub / "tensorboard" / "logs") == _events(logdir)


def test_tensorboard_reading_the_logdir_does_not_see_the_copies(tmp_path):
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    logdir = tmp_path / "logs"
    (logdir / "train").mkdir(parents=True)
    (logdir / "train" / SOURCE).write_bytes(b"".join(_record(step) for step in range(5)))
    with Journal(logdir) as journal:
        assert TailCopier(journal, _settings(logdir)).copy_new_records()
    multiplexer = EventMultiplexer(size_guidance={"scalars": 0}).AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    assert list(multiplexer.Runs()) == ["train"]
    assert [event.step for event in multiplexer.Scalars("train", "loss")] == list(range(5))


def test_a_source_that_shrinks_or_is_replaced_or_rewritten_starts_a_new_generation(tmp_path):
    logdir = tmp_path / "logs"
    logdir.mkdir()
    source = logdir / SOURCE
    source.write_bytes(b"".join(_record(step) for step in range(4)))
    with Journal(logdir) as journal:
        copier = TailCopier(journal, _settings(logdir))
        copier.copy_new_records()
        source.write_bytes(_record(10))  # truncated and rewritten, as tensorboardX's same-second 'wb' does
        copier.copy_new_records()
        inode = source.stat().st_ino
        source.write_bytes(b"".join(_record(step) for step in range(30, 36)))  # the same, grown past the offset
        assert source.stat().st_ino == inode
        copier.copy_new_records()
        with source.open("ab") as f:  # a plain append continues the generation
            f.write(_record(36))
        copier.copy_new_records()
    source.unlink()
    source.write_bytes(b"".join(_record(step) for step in range(20, 28)))  # replaced while nobody watched
    with Journal(logdir) as journal:
        TailCopier(journal, _settings(logdir)).copy_new_records()
    copies = [copy for _, copy in _copies(logdir)]
    assert [(copy.counter, copy.start) for copy in copies] == [(1, 0), (2, 0), (3, 0), (4, copies[2].end), (5, 0)]
    assert sorted(name.repo_name(SOURCE, "1a2b3c4d") for name in copies) == [
        name.repo_name(SOURCE, "1a2b3c4d") for name in copies
    ]


def test_a_tick_lists_only_the_directories_that_changed(tmp_path):
    logdir = tmp_path / "logs"
    for run in ("train", "validation", "train/inner"):
        (logdir / run).mkdir(parents=True)
        (logdir / run / SOURCE).write_bytes(_record(0))
    with Journal(logdir) as journal:
        copier = TailCopier(journal, _settings(logdir))
        (logdir / ".hf_summary" / "watch").mkdir()
        settled = max(path.stat().st_ctime for path in (logdir, *logdir.rglob("*"))) + RACY_MARGIN_S
        wait_until(lambda: time.time() > settled, timeout=10, message="listings that can be trusted")
        assert len(copier.copy_new_records()) == 3
        listed = copier.listings
        with (logdir / "train" / SOURCE).open("ab") as f:
            f.write(_record(1))
        assert len(copier.copy_new_records()) == 1
        assert copier.listings == listed  # an appended file changes no directory
        (logdir / "validation" / "events.out.tfevents.2.vm").write_bytes(_record(2))
        assert len(copier.copy_new_records()) == 1
        assert copier.listings == listed + 1  # only the directory that got a new file
        assert len(copier.copy_new_records(full=True)) == 0
        assert copier.listings == listed + 1 + 4  # a final copy lists all four (the journal's own dir aside)


def test_a_copy_that_failed_is_tried_again_though_the_file_stays_put(tmp_path):
    logdir = tmp_path / "logs"
    logdir.mkdir()
    (logdir / SOURCE).write_bytes(b"".join(_record(step) for step in range(3)))  # finished: it never changes again
    with Journal(logdir) as journal:
        copier = TailCopier(journal, _settings(logdir))
        blocker = logdir / ".hf_summary" / "watch" / SOURCE  # a file where the copy's directory goes
        blocker.parent.mkdir()
        blocker.write_bytes(b"")
        with pytest.raises(OSError):
            copier.copy_new_records()
        blocker.unlink()
        assert len(copier.copy_new_records()) == 1


def test_a_crash_between_copying_and_journaling_leaves_nothing_behind(tmp_path):
    logdir = tmp_path / "logs"
    logdir.mkdir()
    source = logdir / SOURCE
    source.write_bytes(b"".join(_record(step) for step in range(6)))
    with Journal(logdir) as journal:
        copier = TailCopier(journal, _settings(logdir))
        copier.copy_new_records()
        row = journal.segments()[0]
        journal.drop_segment(row.id)  # as if the watcher died after sealing the copy, before journaling it
    short = row.local_path(logdir).with_name(CopyName(2, 99, 200).local_name)
    short.write_bytes(b"x" * 5)  # as if it died in the middle of writing a copy
    with Journal(logdir) as journal:
        copier = TailCopier(journal, _settings(logdir))
        assert [r.name for r in journal.segments()] == [row.name]  # the sealed copy is adopted
        assert not short.exists()  # the cut one removed
        with source.open("ab") as f:
            f.write(_record(6))
        copier.copy_new_records()
    assert [(copy.counter, copy.start) for _, copy in _copies(logdir)] == [(1, 0), (2, row.size)]


def test_one_watcher_per_logdir_never_an_hfsummarywriter_logdir_nor_a_repo_it_cannot_write(tmp_path, hub, writer_env):
    logdir = tmp_path / "watched"
    first = Watcher(logdir, "alice/one-watcher", commit_every=60)
    thread = threading.Thread(target=first.run)
    thread.start()
    lock = logdir / ".hf_summary" / "watch.lock"
    try:
        wait_until(lambda: lock.exists() and lock.read_text().strip() == str(os.getpid()), timeout=30)
        with pytest.raises(WatchBusyError, match=f"pid {os.getpid()}"):
            Watcher(logdir, "alice/one-watcher").run()
    finally:
        first.stop()
        thread.join(60)
    written = tmp_path / "written"
    fake_dead_run(written, endpoint=hub.endpoint, repo_id="alice/written")
    with pytest.raises(WatchError, match="HFSummaryWriter"):
        Watcher(written, "alice/written").run()
    with pytest.raises(WatchError, match="may not write to the namespace 'bob'"):  # alice's token, at once
        Watcher(tmp_path / "elsewhere", "bob/not-yours").run()
    assert not (tmp_path / "elsewhere" / ".hf_summary").exists()


# ------------------------------------------------------------------------------------------- processes


@pytest.mark.parametrize("writer", ["tensorboardX", pytest.param("torch", marks=pytest.mark.frameworks)])
def test_a_foreign_writer_killed_by_sigkill_every_record_it_got_to_disk_is_on_the_hub_once(
    tmp_path, hub, repo_id, processes, writer
):
    if writer == "torch":
        pytest.importorskip("torch")
    logdir = tmp_path / f"{writer}-run"
    logdir.mkdir()
    foreign = Foreign(writer, logdir, tmp_path, processes)
    # tensorboardX: SIGTERM ends the watcher; torch: it ends by itself when the watched trainer is gone
    extra = ("--pid", str(foreign.proc.pid)) if writer == "torch" else ()
    watcher = WatcherProcess(logdir, repo_id, hub, "--commit-every", "0.02", *extra)
    processes.append(watcher.proc)
    foreign.wait_for_step(random.Random(writer).randint(400, 700))
    wait_until(lambda: _pushes(hub, repo_id) >= 2, timeout=120, interval=0.5,
               message="a few pushes while the trainer runs")
    foreign.proc.send_signal(signal.SIGKILL)
    foreign.proc.wait(10)
    if writer != "torch":
        watcher.proc.send_signal(signal.SIGTERM)
    assert watcher.wait(120) == 0, watcher.log()
    copy = _assert_hub_holds_every_record_once(hub, repo_id, logdir, tmp_path)
    assert {"", "phase2", "group_a", "group/a"} & {p.parent.relative_to(copy).as_posix() for p in copy.rglob("*.hfw")}
    assert (copy / "phase2").is_dir()
    assert (copy / "hparams.yaml").read_text() == "lr: 0.01\n"


def test_a_watcher_killed_and_restarted_mid_run_loses_nothing_and_doubles_nothing(
    tmp_path, hub, repo_id, processes
):
    logdir = tmp_path / "restarted"
    logdir.mkdir()
    foreign = Foreign("tensorboardX", logdir, tmp_path, processes)
    rng = random.Random(7)
    logs = []
    # killed at the two crash points of a copy, then at random moments
    for fault in ("watch_during_copy", "watch_after_seal", None, None, None):
        env = {"HF_SUMMARY_FAULT_POINT": fault} if fault else {}
        watcher = WatcherProcess(logdir, repo_id, hub, "--commit-every", "0.01", env=env)
        processes.append(watcher.proc)
        logs.append(watcher.stderr)
        if fault:
            assert watcher.wait(120) == -signal.SIGKILL, watcher.log()
            continue
        target = _copies_count(logdir) + rng.randint(1, 4)  # let it copy a random number of times, then kill it
        wait_until(lambda target=target: _copies_count(logdir) >= target, timeout=60, message=f"{target} copies")
        assert watcher.proc.poll() is None, watcher.log()
        watcher.proc.send_signal(signal.SIGKILL)
        watcher.wait(10)
    foreign.end()  # every record complete
    watcher = WatcherProcess(logdir, repo_id, hub, "--commit-every", "0.01")
    processes.append(watcher.proc)
    lock = logdir / ".hf_summary" / "watch.lock"
    wait_until(lambda: lock.read_text().strip() == str(watcher.proc.pid), timeout=60, message="the last watcher")
    watcher.proc.send_signal(signal.SIGTERM)  # its final drain copies and pushes what is left
    assert watcher.wait(120) == 0, watcher.log()
    _assert_hub_holds_every_record_once(hub, repo_id, logdir, tmp_path)
    assert "a copy cut short by a crash" in "".join(logs[1])  # what each crash point left was cleaned up
    assert "a copy sealed just before a crash" in "".join(logs[2])
    copies = _copies(logdir)
    by_source: dict[str, list[CopyName]] = {}
    for source, copy in copies:
        by_source.setdefault(source, []).append(copy)
    for source, names in by_source.items():  # contiguous byte ranges: no gap, no overlap
        names.sort()
        assert names[0].start == 0 and all(a.end == b.start for a, b in zip(names, names[1:], strict=False)), (source, names)


def _copies_count(logdir: Path) -> int:
    try:
        with Journal(logdir, create=False) as journal:
            return len(journal.segments())
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize("job_wide", [False, True], ids=["watcher", "watcher-and-uploader"])
def test_sigterm_copies_what_is_left_pushes_it_and_exits(tmp_path, hub, repo_id, processes, job_wide):
    logdir = tmp_path / "preempted"
    logdir.mkdir()
    Foreign("tensorboardX", logdir, tmp_path, processes, STOP_AT="200").proc.wait(60)
    watcher = WatcherProcess(logdir, repo_id, hub, "--commit-every", "60")  # one tick at start, then none
    processes.append(watcher.proc)
    wait_until(lambda: _pushes(hub, repo_id) >= 1, timeout=120, interval=0.5, message="the first push")
    (logdir / "later").mkdir()
    Foreign("tensorboardX", logdir / "later", tmp_path, processes, STOP_AT="100").proc.wait(60)
    for process in uploader_processes(logdir) if job_wide else []:  # a scheduler signals every process
        process.send_signal(signal.SIGTERM)
    watcher.proc.send_signal(signal.SIGTERM)
    assert watcher.wait(120) == 0, watcher.log()
    assert pid_gone(watcher.proc.pid)
    copy = _assert_hub_holds_every_record_once(hub, repo_id, logdir, tmp_path)
    assert (copy / "later").is_dir()


def test_a_sigterm_during_the_watcher_s_imports_is_handled_once_it_can(tmp_path, hub, repo_id, processes):
    """A job-wide SIGTERM can reach `hf-summary watch` during its imports (about a second), before its handlers
    are in: it is held, then handled as any SIGTERM (copy, push, exit 0). `-X importtime` shows when psutil,
    the first of the watcher's own imports, is in; huggingface_hub and the rest follow."""
    logdir = tmp_path / "early"
    logdir.mkdir()
    Foreign("tensorboardX", logdir, tmp_path, processes, STOP_AT="50").proc.wait(60)
    watcher = WatcherProcess(logdir, repo_id, hub, "--commit-every", "60", python_options=("-X", "importtime"))
    processes.append(watcher.proc)
    def imported() -> set[str]:
        return {line.rpartition("|")[2].strip() for line in list(watcher.stderr)}

    wait_until(lambda: "psutil" in imported(), timeout=60, interval=0.001, message="the watcher's imports")
    assert "huggingface_hub" not in imported()
    watcher.proc.send_signal(signal.SIGTERM)
    assert watcher.wait(120) == 0, watcher.log()
    _assert_hub_holds_every_record_once(hub, repo_id, logdir, tmp_path)


def _pushes(hub, repo_id: str) -> int:
    if not api(hub).repo_exists(repo_id):
        return 0
    return sum(1 for title in commit_titles(hub, repo_id) if title.startswith("hf-summary:"))


def test_a_job_that_starts_its_own_watcher_is_pushed_after_a_sigkill(tmp_path, hub, repo_id, processes):
    logdir = tmp_path / "self-watched"
    logdir.mkdir()
    foreign = Foreign("tensorboardX", logdir, tmp_path, processes, START_WATCH="1", REPO=repo_id, **hub_env(hub))
    foreign.wait_for_step(400)
    watcher = foreign.watcher
    assert watcher is not None
    wait_until(lambda: _pushes(hub, repo_id) >= 1, timeout=120, interval=0.5, message="a push while the job runs")
    foreign.proc.send_signal(signal.SIGKILL)
    foreign.proc.wait(10)
    wait_until(lambda: pid_gone(watcher), timeout=120, interval=0.2, message="the watcher to drain and exit")
    _assert_hub_holds_every_record_once(hub, repo_id, logdir, tmp_path)


def test_once_pushes_what_a_finished_job_left_and_exits(tmp_path, hub, repo_id, processes):
    logdir = tmp_path / "finished"
    logdir.mkdir()
    Foreign("tensorboardX", logdir, tmp_path, processes, STOP_AT="350").proc.wait(60)
    watcher = WatcherProcess(logdir, repo_id, hub, "--once", "--no-assets")
    processes.append(watcher.proc)
    assert watcher.wait(120) == 0, watcher.log()
    copy = _assert_hub_holds_every_record_once(hub, repo_id, logdir, tmp_path)
    assert not (copy / "hparams.yaml").exists()
    assert _pushes(hub, repo_id) == 1
    again = WatcherProcess(logdir, repo_id, hub, "--once", "--no-assets")  # nothing new: no commit
    processes.append(again.proc)
    assert again.wait(120) == 0, again.log()
    assert _pushes(hub, repo_id) == 1


def test_a_job_wide_sigterm_pushes_what_the_job_flushes_on_its_way_out(tmp_path, hub, repo_id, processes):
    logdir = tmp_path / "flushed-on-exit"
    logdir.mkdir()
    foreign = Foreign("tensorboardX", logdir, tmp_path, processes, FLUSH_SECS="120")  # all of it in its buffers
    watcher = WatcherProcess(logdir, repo_id, hub, "--commit-every", "0.02", "--pid", str(foreign.proc.pid))
    processes.append(watcher.proc)
    lock = logdir / ".hf_summary" / "watch.lock"
    wait_until(lambda: lock.exists() and lock.read_text().strip() == str(watcher.proc.pid), timeout=60)
    foreign.wait_for_step(300)
    for proc in (foreign.proc, watcher.proc):  # the scheduler signals every process of the job
        proc.send_signal(signal.SIGTERM)
    assert foreign.proc.wait(60) == 0
    assert watcher.wait(120) == 0, watcher.log()
    _assert_hub_holds_every_record_once(hub, repo_id, logdir, tmp_path)


def test_a_torn_tail_left_by_a_killed_writer_is_never_copied(tmp_path, hub, repo_id, processes):
    logdir = tmp_path / "torn"
    logdir.mkdir()
    proc = run_script(TORN, {"LOGDIR": str(logdir)}, tmp_path)
    processes.append(proc)
    assert proc.stdout.readline().strip() == "logged"

    def torn_file():
        files = [path for path in logdir.glob("*tfevents*") if path.stat().st_size > 0]
        return files and last_complete_offset(files[0]) < files[0].stat().st_size and files[0]

    source = wait_until(torn_file, timeout=60, message="the histogram's body on disk without its footer")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    watcher = WatcherProcess(logdir, repo_id, hub, "--once")
    processes.append(watcher.proc)
    assert watcher.wait(120) == 0, watcher.log()
    copy = _assert_hub_holds_every_record_once(hub, repo_id, logdir, tmp_path)
    steps = [event.step for _, event in iter_events(copy) if event.HasField("summary")]
    assert steps == list(range(50))  # the scalars, not the torn histogram
    with Journal(logdir, create=False) as journal:
        assert sum(row.size for row in journal.segments()) == last_complete_offset(source) < source.stat().st_size


def test_start_watch_then_stop_pushes_everything(tmp_path, hub, writer_env, repo_id, processes):
    from hf_summary.watch import start_watch

    logdir = tmp_path / "from-python"
    logdir.mkdir()
    Foreign("tensorboardX", logdir, tmp_path, processes, STOP_AT="250").proc.wait(60)
    watcher = start_watch(logdir, repo_id, commit_every=60, assets=["*.yaml"], path_in_repo="tensorboard")
    try:
        lock = logdir / ".hf_summary" / "watch.lock"
        wait_until(lambda: lock.exists() and lock.read_text().strip() == str(watcher.pid), timeout=60)
        assert watcher.stop(timeout=120) == 0  # SIGINT: copy what is left, push it, exit
    finally:
        if watcher.is_running():
            os.kill(watcher.pid, signal.SIGKILL)
    copy = _assert_hub_holds_every_record_once(hub, repo_id, logdir, tmp_path)
    assert (copy / "hparams.yaml").read_text() == "lr: 0.1\n"  # written before step 300 rewrites it


def test_a_long_watch_keeps_files_bounded_on_the_hub_and_no_second_copy_on_disk(tmp_path, hub, writer_env, repo_id):
    """Tick after tick a foreign file grows: its copies are merged as segments are (FANOUT contiguous copies into
    one, riding in a push), the Hub holds each record once at every commit, and the logdir keeps no copy the Hub
    holds. A restarted watcher resumes exactly, though the copies it would compare with are gone."""
    logdir = tmp_path / "long"
    source = logdir / "train" / SOURCE
    source.parent.mkdir(parents=True)
    source.write_bytes(b"")
    step = 0

    def watch_ticks(ticks: int) -> None:
        nonlocal step
        watcher = Watcher(logdir, repo_id, commit_every=0.002, assets=[])
        thread = threading.Thread(target=watcher.run)
        thread.start()
        try:
            for tick in range(ticks):
                with source.open("ab") as f:
                    f.write(b"".join(_record(step + i) for i in range(3)))
                step += 3
                size = source.stat().st_size
                wait_until(lambda size=size: _pushed_up_to(logdir) == size, timeout=60, message=f"offset {size}")
                on_hub = _hub_copy(hub, repo_id, logdir, tmp_path) if tick % 5 == 4 else None
                if on_hub is not None:
                    assert _events(on_hub) == _events(logdir)  # once, in order, between two ticks
        finally:
            watcher.stop()
            thread.join(120)

    watch_ticks(2 * FANOUT + 3)
    watch_ticks(FANOUT)  # restarted: resumes at the journaled offset, checks the source against the last copy
    on_hub = _hub_copy(hub, repo_id, logdir, tmp_path)
    assert _events(on_hub) == _events(logdir)
    assert [event.step for _, event in iter_events(on_hub)] == list(range(step))
    names = sorted(path.name for path in (on_hub / "train").iterdir())
    assert len(names) < 2 * FANOUT, names  # 27 copies: 3 merged copies of 8 and the last few
    assert sum(parse_repo_copy_name(name)[2].merged for name in names) >= 2, names
    left = [path for path in (logdir / ".hf_summary" / "watch").rglob("*") if path.is_file()]
    assert left == [], left  # everything is pushed: no second copy of the run on disk


def test_an_asset_that_changes_alone_is_pushed_at_the_next_tick(tmp_path, hub, writer_env, repo_id):
    """Only ``hparams.yaml`` changes, no event file grows: the next tick pushes it (not the next copy of events,
    nor the watcher's end)."""
    logdir = tmp_path / "assets"
    (logdir / "train").mkdir(parents=True)
    (logdir / "train" / SOURCE).write_bytes(_record(0))
    watcher = Watcher(logdir, repo_id, commit_every=0.005)  # the default assets: *.yaml among them
    thread = threading.Thread(target=watcher.run)
    thread.start()
    try:
        wait_until(lambda: _pushed_up_to(logdir) == len(_record(0)), timeout=60, message="the first copy pushed")
        for lr in ("0.1", "0.01"):  # a new file, then the same file rewritten
            (logdir / "hparams.yaml").write_text(f"lr: {lr}\n")
            wait_until(lambda lr=lr: hub_text(hub, repo_id, "tensorboard/assets/hparams.yaml") == f"lr: {lr}\n",
                       timeout=30, interval=0.3, message=f"hparams.yaml with lr {lr} on the Hub")
        assert thread.is_alive()  # pushed by a tick, not by the final push
    finally:
        watcher.stop()
        thread.join(120)


def test_a_merge_whose_source_was_rewritten_before_its_push_is_never_committed(tmp_path, hub, writer_env, repo_id,
                                                                                monkeypatch):
    """The foreign file is rewritten in place between a merge's plan and its commit: the push that carries the
    merge fails (its byte range no longer hashes to the plan), the next one abandons it and pushes the rest; the
    Hub keeps the copies it held, and never gets a merged file of other bytes."""
    logdir = tmp_path / "rewritten"
    logdir.mkdir()
    source = logdir / SOURCE
    source.write_bytes(b"")
    settings = Watcher(logdir, repo_id, commit_every=1, assets=[]).settings
    with Journal(logdir) as journal:
        journal.save_settings(settings)
        copier, pusher = TailCopier(journal, settings), Pusher.open(journal, settings, hub.token())
        pusher.client.ensure_repo(private=None)
        for step in range(FANOUT + 1):
            with source.open("ab") as f:
                f.write(_record(step))
            copier.copy_new_records()
            if step == FANOUT:  # this push plans the merge of the first FANOUT copies: rewrite the file then
                monkeypatch.setattr(compaction, "fault", lambda point: point == "after_compaction_planned" and (
                    source.write_bytes(source.read_bytes().replace(b"loss", b"LOSS"))))
                assert pusher.push(pusher.pushable()) is None
                assert len(journal.compactions("planned")) == 1
            pusher.next_attempt = 0.0
            assert pusher.push(pusher.pushable()) is not None
        assert not journal.pending_segments() and not journal.compactions("planned")
        assert not journal.compactions("committed") and not journal.compactions("applied")
    names = [name for name in api(hub).list_repo_files(repo_id) if name.endswith(".hfw")]
    assert len(names) == FANOUT + 1 and not any(parse_repo_copy_name(name)[2].merged for name in names), names


def _pushed_up_to(logdir: Path) -> int:
    """The offset of the source up to which the Hub holds the copies (-1 while some are pending)."""
    try:
        with Journal(logdir, create=False) as journal:
            if journal.pending_segments():
                return -1
            ends = [copy.end for row in journal.segments("committed") if (copy := CopyName.parse(row.name))]
    except (FileNotFoundError, JournalCorruptError):  # the watcher is still creating its journal (no header yet)
        return -1
    return max(ends, default=0)


@pytest.mark.parametrize("then", ["recover", "restart"])
@pytest.mark.parametrize("point", ["after_compaction_planned", "after_compaction_commit", "during_compaction_swap"])
def test_an_uploader_killed_while_merging_copies_loses_and_doubles_nothing(tmp_path, hub, repo_id, processes, point,
                                                                          then):
    """The watcher's uploader dies in the push that merges copies; `recover` or a restarted watcher finishes the
    merge (or abandons it) and goes on: the Hub holds every record once, the logdir no pushed copy."""
    logdir = tmp_path / "merging"
    logdir.mkdir()
    source = logdir / SOURCE
    source.write_bytes(b"")
    steps = iter(range(10**6))

    def grow() -> int:
        with source.open("ab") as f:
            f.write(b"".join(_record(next(steps)) for _ in range(3)))
        return source.stat().st_size

    def merging() -> bool:
        with Journal(logdir, create=False) as journal:
            return bool(journal.compactions("planned" if point != "during_compaction_swap" else "committed"))

    watcher = WatcherProcess(logdir, repo_id, hub, "--commit-every", "0.005", "--no-assets",
                             env={"HF_SUMMARY_FAULT_POINT": point})
    processes.append(watcher.proc)
    wait_until(lambda: "watching" in watcher.log(), timeout=60, message="the watcher's journal")
    while not merging():
        size = grow()
        wait_until(lambda size=size: merging() or _pushed_up_to(logdir) == size, timeout=60, message="a push")
    watcher.proc.send_signal(signal.SIGKILL)
    watcher.wait(10)
    kill_uploaders(logdir)
    staged = [path for path in (logdir / ".hf_summary").glob("compaction/*") if path.is_file()]
    assert staged == []  # a merge of copies is pushed as a byte range of the source: never a copy on disk
    if then == "recover":
        result = cli("recover", str(logdir), env=hub_env(hub))
        assert result.returncode == 0, result.stderr
    restarted = WatcherProcess(logdir, repo_id, hub, "--commit-every", "0.005", "--no-assets")
    processes.append(restarted.proc)
    for _ in range(FANOUT + 2):
        size = grow()
        wait_until(lambda size=size: _pushed_up_to(logdir) == size, timeout=60, message="a push")
    restarted.proc.send_signal(signal.SIGINT)
    assert restarted.wait(120) == 0, restarted.log()
    _assert_hub_holds_every_record_once(hub, repo_id, logdir, tmp_path)
    with Journal(logdir, create=False) as journal:
        assert not journal.compactions("planned") and not journal.compactions("committed")
        assert journal.compactions("applied")
    assert [path for path in (logdir / ".hf_summary" / "watch").rglob("*") if path.is_file()] == []
