"""`hf-summary view`: a live TensorBoard of a run on the local Hub, checked through TensorBoard's HTTP API."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from helpers import REPO_ROOT, wait_until
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, RepoFile
from view_kit import STOP_S, ViewProcess, alive, hub_env, logged_steps, tb_steps

from hf_summary import HFSummaryWriter
from hf_summary.compaction import FANOUT
from hf_summary.hub import open_client
from hf_summary.localhub.testing import LocalHub
from hf_summary.mirror import Mirror
from hf_summary.segments import is_event_file


def _repo_event_files(api: HfApi, repo_id: str) -> dict[str, str]:
    """{path: Xet hash} of the repo's event files at its head."""
    return {e.path: e.xet_hash for e in api.list_repo_tree(repo_id, recursive=True)
            if isinstance(e, RepoFile) and is_event_file(e.path)}


def xet_downloads(hub, xet_hashes: set[str]) -> dict[str, int]:
    """How often each of these files was downloaded (hf_xet asks the CAS for one reconstruction per download)."""
    counted = hub.stats()["reconstructions"]
    return {xet_hash: counted.get(xet_hash, 0) for xet_hash in xet_hashes}


def _bucket_event_files(api: HfApi, bucket_id: str) -> dict[str, str]:
    """{path: Xet hash} of the bucket's event files."""
    return {e.path: e.xet_hash for e in api.list_bucket_tree(bucket_id, recursive=True)
            if e.type == "file" and is_event_file(e.path)}


def _mirrored(mirror: Path) -> tuple[set[str], set[str]]:
    """Paths (relative to the mirror) of every file in it, whatever its name: (with content, emptied). The
    mirror empties the files the Hub no longer has, for the TensorBoard that may be reading one."""
    files = {}
    for path in mirror.rglob("*"):
        with contextlib.suppress(FileNotFoundError):  # a temporary file, renamed in the meantime
            if path.is_file():
                files[path.relative_to(mirror).as_posix()] = path.stat().st_size
    return {p for p, size in files.items() if size}, {p for p, size in files.items() if not size}


def _log(writer: HFSummaryWriter, steps: range) -> None:
    for step in steps:
        writer.add_scalar("train/loss", 1 / (step + 1), step)
        writer.add_scalars("lr", {"a": step * 0.1, "b": step * 0.2}, step)
    assert writer.push_to_hub(timeout=60)


def _compact(api: HfApi, repo_id: str, logdir: Path, run: str) -> tuple[str, list[str]]:
    """Merge the run's first two segments on the Hub as compaction does: one commit adds their concatenation,
    named to sort where the first one was, and deletes both. Returns (merged path, replaced paths)."""
    names = sorted(p.name for p in logdir.iterdir() if is_event_file(p.name))[:2]
    merged = f"{run}/{names[0]}-merged"
    operations = [
        CommitOperationAdd(merged, b"".join((logdir / name).read_bytes() for name in names)),
        *(CommitOperationDelete(f"{run}/{name}") for name in names),
    ]
    api.create_commit(repo_id, operations, commit_message="compaction")
    return merged, [f"{run}/{name}" for name in names]


def test_view_follows_a_live_private_run_through_compaction_downloading_each_file_once(
    tmp_path, hub, writer_env, repo_id
):
    logdir = tmp_path / "live"
    api = HfApi(endpoint=hub.endpoint, token=hub.token("alice"))
    args = ["view", repo_id, "--port", "0", "--interval", "1", "--cache-dir", str(tmp_path / "cache")]
    with HFSummaryWriter(repo_id, logdir=logdir, commit_every=60, repo_private=True) as writer:
        _log(writer, range(0, 30))
        with ViewProcess(args, hub_env(hub, tmp_path, hub.token("alice")), tmp_path) as view:
            url, tb_pid = view.tensorboard()
            tb_processes = [psutil.Process(tb_pid), *psutil.Process(tb_pid).children(recursive=True)]
            mirror = Path(view.line("Mirroring ").split(" into ")[1].rsplit(" (", 1)[0])
            assert mirror.is_relative_to(tmp_path / "cache" / "view")
            for start in (30, 70):  # the writer goes on pushing while view runs
                _log(writer, range(start, start + 40))
            wait_until(lambda: tb_steps(url) == logged_steps(logdir, "tensorboard/live"), 90, interval=1,
                       message="every step so far")
            listed = _repo_event_files(api, repo_id)

            merged, replaced = _compact(api, repo_id, logdir, "tensorboard/live")
            wait_until(lambda: _mirrored(mirror) == (set(listed) - set(replaced) | {merged}, set(replaced)), 30,
                       interval=0.2, message="the mirror follows the compaction")
            assert view.line("fetched 1 new event file(s), removed 2")
            _log(writer, range(110, 150))
            writer.close()
            expected = logged_steps(logdir, "tensorboard/live")
            assert len(expected) == 3 and all(steps == list(range(150)) for steps in expected.values())
            wait_until(lambda: tb_steps(url) == expected, 90, interval=1, message="every step of every tag, once")

            remote = _repo_event_files(api, repo_id)
            assert len(remote) >= 6 and merged in remote
            assert _mirrored(mirror) == (set(remote), set(replaced))
            every_file = {*listed.values(), *remote.values()}
            assert xet_downloads(hub, every_file) == dict.fromkeys(every_file, 1)

            assert view.interrupt() == 0
            assert view.lines[-1] == "Stopped."
            wait_until(lambda: not any(alive(p) for p in tb_processes), STOP_S,
                       message="TensorBoard and its data server stop")


def test_view_follows_a_live_private_bucket_through_compaction_downloading_each_file_once(
    tmp_path, monkeypatch
):
    """The writer's own compaction merges FANOUT segments per run dir on the push after them; view follows
    every push and fetches each bucket file once: on its own Hub, every Xet reconstruction is view's."""
    with LocalHub() as own_hub:
        monkeypatch.setenv("HF_ENDPOINT", own_hub.endpoint)
        monkeypatch.setenv("HF_TOKEN", own_hub.token("alice"))
        api = HfApi(endpoint=own_hub.endpoint, token=own_hub.token("alice"))
        bucket_id, logdir = "alice/live-bucket", tmp_path / "live"
        args = ["view", bucket_id, "--repo-type", "bucket", "--port", "0", "--interval", "1",
                "--cache-dir", str(tmp_path / "cache")]
        seen: dict[str, str] = {}  # every event file the bucket held when looked at
        with HFSummaryWriter(bucket_id, logdir=logdir, repo_type="bucket", commit_every=60,
                             repo_private=True) as writer:
            _log(writer, range(0, 5))
            with ViewProcess(args, hub_env(own_hub, tmp_path, own_hub.token("alice")), tmp_path) as view:
                url, _ = view.tensorboard()
                mirror = Path(view.line("Mirroring ").split(" into ")[1].rsplit(" (", 1)[0])
                assert mirror == tmp_path / "cache" / "view" / "buckets--alice--live-bucket"
                for push in range(1, FANOUT):  # the writer goes on pushing while view runs
                    _log(writer, range(push * 5, push * 5 + 5))
                wait_until(lambda: tb_steps(url) == logged_steps(logdir, "tensorboard/live"), 90, interval=1,
                           message="every step of the first pushes")
                seen |= _bucket_event_files(api, bucket_id)
                assert len(seen) == 3 * FANOUT  # one segment per run dir per push

                _log(writer, range(FANOUT * 5, FANOUT * 5 + 5))  # this push carries the merges
                after = _bucket_event_files(api, bucket_id)
                assert len(after) == 3 * 2 and not set(after) & set(seen)  # a merged file + the new segment
                seen |= after
                wait_until(lambda: _mirrored(mirror) == (set(after), set(seen) - set(after)), 30, interval=0.2,
                           message="the mirror follows the compaction")
                _log(writer, range(FANOUT * 5 + 5, FANOUT * 5 + 20))
                writer.close()
                expected = logged_steps(logdir, "tensorboard/live")
                assert len(expected) == 3
                assert all(steps == list(range(FANOUT * 5 + 20)) for steps in expected.values())
                wait_until(lambda: tb_steps(url) == expected, 90, interval=1, message="every step of every tag, once")

                final = _bucket_event_files(api, bucket_id)
                seen |= final
                assert _mirrored(mirror) == (set(final), set(seen) - set(final))
                assert own_hub.stats()["reconstructions"] == {xet_hash: 1 for xet_hash in seen.values()}
                assert view.interrupt() == 0


def test_a_bucket_mirror_shows_each_file_whole_and_in_name_order(tmp_path):
    """hf_xet writes a download in place as it goes, several files at once; TensorBoard's loader must see none
    of that (it moves on to the next file by name and never goes back). With each xorb fetch held 1 s, a
    watcher polling the mirror sees every event file appear whole, one after the other in name order."""
    with LocalHub() as own_hub:
        api = HfApi(endpoint=own_hub.endpoint, token=own_hub.token())
        api.create_bucket("alice/order")
        contents = {f"run/events.out.tfevents.{i:04d}.host.hfs": os.urandom(200_000) for i in range(3)}
        api.batch_bucket_files("alice/order", add=[(content, path) for path, content in contents.items()])
        client = open_client(repo_id="alice/order", repo_type="bucket", endpoint=own_hub.endpoint,
                             token=own_hub.token())
        mirror = Mirror(client, "", cache_dir=tmp_path / "cache")
        first_seen: dict[str, int] = {}  # event file -> its size when first seen, in the order they appeared
        stop = threading.Event()

        def watch() -> None:
            while True:
                done = stop.is_set()  # one more look after the refresh returned
                for path in sorted(mirror.logdir.rglob("*tfevents*")):
                    with contextlib.suppress(FileNotFoundError):
                        first_seen.setdefault(path.relative_to(mirror.logdir).as_posix(), path.stat().st_size)
                if done:
                    return
                time.sleep(0.005)

        watcher = threading.Thread(target=watch)
        own_hub.set_faults([{"method": "GET", "path": "/fetch/", "delay_s": 1}])
        watcher.start()
        try:
            refresh = mirror.refresh()
        finally:
            stop.set()
            watcher.join()
            own_hub.clear_faults()
        assert refresh.added == list(contents)
        assert list(first_seen.items()) == [(path, len(content)) for path, content in contents.items()]
        assert {p.relative_to(mirror.logdir).as_posix(): p.read_bytes() for p in mirror.logdir.rglob("*")
                if p.is_file()} == contents


def test_view_killed_takes_tensorboard_along_and_resumes_from_its_mirror(tmp_path, hub, writer_env, repo_id):
    logdir = tmp_path / "again"
    with HFSummaryWriter(repo_id, logdir=logdir, commit_every=60) as writer:
        for step in range(20):
            writer.add_scalar("loss", step, step)
    env = hub_env(hub, tmp_path, None)
    args = ["view", repo_id, "--path", "tensorboard", "--port", "0", "--cache-dir", str(tmp_path / "cache")]
    for fetched, there in ((1, 0), (0, 1)):
        with ViewProcess(args, env, tmp_path) as view:
            assert f"({fetched} file(s) fetched, {there} already there)" in view.line("Mirroring ")
            url, tb_pid = view.tensorboard()
            wait_until(lambda url=url: tb_steps(url) == {("again", "loss"): list(range(20))}, 60, interval=1)
            if fetched:  # SIGKILL: no chance to stop TensorBoard, which notices its parent is gone
                tb_processes = [psutil.Process(tb_pid), *psutil.Process(tb_pid).children(recursive=True)]
                view.process.kill()
                view.process.wait(STOP_S)
                wait_until(lambda ps=tb_processes: not any(alive(p) for p in ps), STOP_S, message="TensorBoard exits")
            else:
                assert view.interrupt() == 0
    (xet_hash,) = _repo_event_files(HfApi(endpoint=hub.endpoint, token=hub.token()), repo_id).values()
    assert xet_downloads(hub, {xet_hash}) == {xet_hash: 1}


def test_view_rides_out_a_hub_outage(tmp_path, monkeypatch):
    with LocalHub() as own_hub:
        monkeypatch.setenv("HF_ENDPOINT", own_hub.endpoint)
        monkeypatch.setenv("HF_TOKEN", own_hub.token("alice"))
        logdir = tmp_path / "outage"
        args = ["view", "alice/outage", "--port", "0", "--interval", "0.5", "--cache-dir", str(tmp_path / "cache")]
        with HFSummaryWriter("alice/outage", logdir=logdir, commit_every=60) as writer:
            _log(writer, range(0, 10))
            with ViewProcess(args, hub_env(own_hub, tmp_path, own_hub.token("alice")), tmp_path) as view:
                url, _ = view.tensorboard()
                own_hub.stop()
                assert view.line("refresh failed, retrying: ")
                own_hub.start()  # same port and data
                _log(writer, range(10, 20))
                wait_until(lambda: tb_steps(url) == logged_steps(logdir, "tensorboard/outage"), 60, interval=1,
                           message="the steps pushed after the outage")


def test_view_of_a_local_logdir(tmp_path):
    from tensorboardX import SummaryWriter

    with SummaryWriter(str(tmp_path / "runs" / "local")) as writer:
        for step in range(15):
            writer.add_scalar("acc", step / 15, step)
    env = {k: v for k, v in os.environ.items() if k != "HF_ENDPOINT"}
    with ViewProcess(["view", str(tmp_path / "runs"), "--port", "0"], env, tmp_path) as view:
        url, _ = view.tensorboard()
        wait_until(lambda: tb_steps(url) == {("local", "acc"): list(range(15))}, 60, interval=1)
        assert view.interrupt() == 0


@pytest.fixture
def event_repo(hub, writer_env, repo_id, tmp_path) -> str:
    """A public repo with one run under tensorboard/."""
    with HFSummaryWriter(repo_id, logdir=tmp_path / "run", commit_every=60) as writer:
        writer.add_scalar("loss", 1.0, 0)
    return repo_id


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing repo", "No model repo 'alice/{name}-nope' on http://127.0.0.1:"),
        ("private, no token", "No model repo 'alice/{name}-private' on http://127.0.0.1:"),
        ("empty repo", "holds no event files"),
        ("missing folder", "has no folder 'nope' at revision 'main'"),
        ("missing revision", "has no revision 'nope'"),
        ("wrong type", "No dataset repo"),
        ("not a repo id", "is neither a directory nor a repo id"),
        ("missing bucket", "No bucket 'alice/{name}-nope' on http://127.0.0.1:"),
        ("private bucket, no token", "No bucket 'alice/{name}-private' on http://127.0.0.1:"),
        ("empty bucket", "bucket alice/{name}-empty holds no event files"),
        ("missing bucket folder", "alice/{name}-bucket has no folder 'nope'."),
        ("bucket with a revision", "a bucket has no revisions (no commits, no branches): leave out --revision."),
    ],
)
def test_view_says_clearly_what_is_wrong(tmp_path, hub, event_repo, repo_name, case, message):
    api = HfApi(endpoint=hub.endpoint, token=hub.token("alice"))
    args = {
        "missing repo": [f"alice/{repo_name}-nope"],
        "private, no token": [f"alice/{repo_name}-private"],
        "empty repo": [f"alice/{repo_name}-empty"],
        "missing folder": [event_repo, "--path", "nope"],
        "missing revision": [event_repo, "--revision", "nope"],
        "wrong type": [event_repo, "--repo-type", "dataset"],
        "not a repo id": ["no//such dir"],
        "missing bucket": [f"alice/{repo_name}-nope", "--repo-type", "bucket"],
        "private bucket, no token": [f"alice/{repo_name}-private", "--repo-type", "bucket"],
        "empty bucket": [f"alice/{repo_name}-empty", "--repo-type", "bucket"],
        "missing bucket folder": [f"alice/{repo_name}-bucket", "--repo-type", "bucket", "--path", "nope"],
        "bucket with a revision": [f"alice/{repo_name}-bucket", "--repo-type", "bucket", "--revision", "main"],
    }[case]
    event_file = "tensorboard/r/events.out.tfevents.1.h"
    if case == "private, no token":
        api.create_repo(args[0], private=True)
        api.upload_file(path_or_fileobj=b"x", path_in_repo=event_file, repo_id=args[0])
    if case == "empty repo":
        api.create_repo(args[0])
    if "bucket" in case and case != "missing bucket":
        api.create_bucket(args[0], private=case.startswith("private"))
        if case != "empty bucket":
            api.batch_bucket_files(args[0], add=[(b"x", event_file)])
    result = subprocess.run(
        [sys.executable, "-m", "hf_summary", "view", *args, "--port", "0", "--cache-dir", str(tmp_path / "cache")],
        env={**hub_env(hub, tmp_path, None), "PYTHONPATH": str(REPO_ROOT)},
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert message.format(name=repo_name) in result.stderr
    assert "Traceback" not in result.stderr
    if case.startswith("private"):
        assert "HF_TOKEN" in result.stderr


@pytest.mark.parametrize("command", [["view", "alice/anything"], ["demo", "--view"]])
def test_without_tensorboard_view_says_how_to_install_it(tmp_path, command):
    code = (
        "import sys; sys.modules['tensorboard'] = None  # as if it were not installed\n"
        f"from hf_summary.cli import main; sys.exit(main({command!r}))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HF_ENDPOINT")}
    result = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": str(REPO_ROOT)},
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "pip install 'hf-summary[view]'" in result.stderr
    assert "Training" not in result.stdout  # the demo checks before it trains
