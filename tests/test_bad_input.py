"""Bad input gets a clear error before anything starts, and nothing is lost.

Constructor arguments, unusable logdirs, a journal written by another program, a file size limit while
logging, and malformed requests to the local Hub (a disk that fills up while logging: tests/test_disk_full.py).
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest
from helpers import event_keys, hub_events, kill_uploaders, run_script, uploader_processes
from huggingface_hub import HfApi
from storage_kit import tmpfs

from hf_summary import HFSummaryWriter
from hf_summary.journal import Journal, journal_path
from hf_summary.segments import last_complete_offset
from hf_summary.watch import Watcher

# -- constructor arguments ------------------------------------------------------------------------------


def _bad(kwargs: dict, error: type[Exception], name: str):
    """One bad argument: the exception expected and the argument its message must name."""
    return pytest.param(kwargs, error, name, id=",".join(f"{k}={v!r}" for k, v in kwargs.items()))


BAD_ARGUMENTS = [
    _bad({"repo_id": "not a repo"}, ValueError, "repo_id"),
    _bad({"repo_id": "a/b/c"}, ValueError, "repo_id"),
    _bad({"repo_id": "alice/a..b"}, ValueError, "repo_id"),
    _bad({"repo_id": ""}, ValueError, "repo_id"),
    _bad({"repo_id": None}, ValueError, "repo_id"),
    _bad({"repo_id": 5}, ValueError, "repo_id"),
    _bad({"commit_every": 0}, ValueError, "commit_every"),
    _bad({"commit_every": -1}, ValueError, "commit_every"),
    _bad({"commit_every": "5"}, ValueError, "commit_every"),
    _bad({"commit_every": True}, ValueError, "commit_every"),
    _bad({"commit_every": math.nan}, ValueError, "commit_every"),
    _bad({"commit_every": math.inf}, ValueError, "commit_every"),
    _bad({"close_timeout": -1}, ValueError, "close_timeout"),
    _bad({"drain_timeout": "10"}, ValueError, "drain_timeout"),
    _bad({"drain_timeout": math.nan}, ValueError, "drain_timeout"),
    _bad({"close_timeout": math.nan}, ValueError, "close_timeout"),
    _bad({"path_in_repo": "../x"}, ValueError, "path_in_repo"),
    _bad({"path_in_repo": "a/../b"}, ValueError, "path_in_repo"),
    _bad({"path_in_repo": "/abs"}, ValueError, "path_in_repo"),
    _bad({"path_in_repo": "./x"}, ValueError, "path_in_repo"),
    _bad({"path_in_repo": "a\\b"}, ValueError, "path_in_repo"),
    _bad({"path_in_repo": 3}, TypeError, "path_in_repo"),
    _bad({"repo_allow_patterns": 3}, TypeError, "repo_allow_patterns"),
    _bad({"repo_allow_patterns": ["*.tfevents.*", 3]}, TypeError, "repo_allow_patterns"),
    _bad({"repo_ignore_patterns": b"*"}, TypeError, "repo_ignore_patterns"),
    _bad({"repo_ignore_patterns": {"secret/*": True}}, TypeError, "repo_ignore_patterns"),
    _bad({"token": 123}, TypeError, "token"),
    _bad({"token": b"hf_bytes_are_not_a_token"}, TypeError, "token"),
    _bad({"token": True}, TypeError, "token"),
    _bad({"repo_type": "modle"}, ValueError, "repo_type"),
    _bad({"repo_private": "yes"}, TypeError, "repo_private"),
]


WATCHER_NUMBERS = [case for case in BAD_ARGUMENTS if set(case.values[0]) <= {"commit_every", "drain_timeout"}]


@pytest.mark.parametrize(("kwargs", "error", "names"), WATCHER_NUMBERS)
def test_a_watcher_refuses_the_numbers_a_writer_refuses(tmp_path, kwargs, error, names):
    logdir = tmp_path / "watched"
    with pytest.raises(error, match=names):
        Watcher(logdir, "alice/watched", **kwargs)
    assert not logdir.exists()


@pytest.mark.parametrize(("kwargs", "error", "names"), BAD_ARGUMENTS)
def test_bad_arguments_fail_before_anything_starts(tmp_path, hub, writer_env, repo_id, kwargs, error, names):
    kwargs = dict(kwargs)
    target = kwargs.pop("repo_id", repo_id)
    logdir = tmp_path / "run"
    threads_before = set(threading.enumerate())
    sigterm_before = signal.getsignal(signal.SIGTERM)
    writer = None
    try:
        with pytest.raises(error, match=names) as caught:
            writer = HFSummaryWriter(target, logdir=logdir, **kwargs)
    finally:
        if writer is not None:  # it should not exist: do not leave it running
            writer.close()
    if "token" in kwargs:
        assert str(kwargs["token"]) not in str(caught.value)  # a token is never echoed back
    assert not journal_path(logdir).exists()
    assert not logdir.exists() or not list(logdir.rglob("*tfevents*"))
    assert not uploader_processes(logdir)
    assert set(threading.enumerate()) <= threads_before
    assert signal.getsignal(signal.SIGTERM) == sigterm_before
    if isinstance(target, str) and target == repo_id:
        assert not HfApi(endpoint=hub.endpoint, token=hub.token()).repo_exists(repo_id)


# -- unusable logdirs -----------------------------------------------------------------------------------


def test_logdir_that_is_a_file(tmp_path, writer_env, repo_id):
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    with pytest.raises(NotADirectoryError, match="afile"):
        HFSummaryWriter(repo_id, logdir=afile)
    with pytest.raises(OSError, match="afile/sub"):  # a path under a file: nothing can be created there
        HFSummaryWriter(repo_id, logdir=afile / "sub")
    assert afile.read_text() == "not a directory"


def test_logdir_where_nothing_can_be_created(writer_env, repo_id):
    with pytest.raises(OSError, match="cannot create logdir"):
        HFSummaryWriter(repo_id, logdir="/proc/hf-summary-test/run")  # procfs: no directory can be made


def test_logdir_on_a_read_only_filesystem(tmp_path, writer_env, repo_id):
    with tmpfs(tmp_path / "ro", "ro,size=64k") as readonly:
        with pytest.raises(PermissionError, match="not writable"):
            HFSummaryWriter(repo_id, logdir=readonly)  # exists, but nothing can be written in it
        with pytest.raises(OSError, match="cannot create logdir") as caught:
            HFSummaryWriter(repo_id, logdir=readonly / "run")
        assert caught.value.errno == errno.EROFS


def test_logdir_given_with_dot_dot_is_pushed_under_its_real_name(tmp_path, hub, writer_env, repo_id):
    base = tmp_path / "base"
    (base / "sub").mkdir(parents=True)
    with HFSummaryWriter(repo_id, logdir=base / "sub" / "..", close_timeout=20, drain_timeout=5) as writer:
        writer.add_scalar("loss", 1.0, 0)
    try:
        files = [f for f in HfApi(endpoint=hub.endpoint, token=hub.token()).list_repo_files(repo_id) if "tfevents" in f]
        assert files and all(f.startswith("tensorboard/base/") for f in files), files
    finally:
        kill_uploaders(base)


# -- a journal written by another program -----------------------------------------------------------------


def _other_apps_database(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.executemany("INSERT INTO users (name) VALUES (?)", [("ada",), ("grace",)])
    conn.commit()
    conn.close()


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not a database\n" * 100)


def _newer_schema(path: Path) -> None:
    Journal(path.parent.parent).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=99")
    conn.commit()
    conn.close()


@pytest.fixture(scope="module")
def crashed_run(tmp_path_factory, local_hub) -> Path:
    """A logdir whose trainer and uploader were SIGKILLed before any push: 50 events on disk, none on the Hub."""
    work = tmp_path_factory.mktemp("crashed")
    logdir = work / "run"
    crashed = run_script(
        """
        import os
        from hf_summary import HFSummaryWriter
        writer = HFSummaryWriter(os.environ["REPO"], logdir=os.environ["LOGDIR"], commit_every=60)
        for step in range(50):
            writer.add_scalar("before", float(step), step)
        print("logged", flush=True)
        input()
        """,
        {"REPO": f"alice/crashed-{os.getpid()}", "LOGDIR": str(logdir), "HF_ENDPOINT": local_hub.endpoint,
         "HF_TOKEN": local_hub.token()},
        work, stdin=subprocess.PIPE,
    )
    try:
        assert crashed.stdout.readline().strip() == "logged", crashed.stderr.read()
        for uploader in uploader_processes(logdir):  # first, so it never sees its trainer die and pushes
            uploader.send_signal(signal.SIGKILL)
    finally:
        crashed.kill()
        crashed.communicate()
    kill_uploaders(logdir)
    assert len(event_keys(logdir)) == 50
    return logdir


@pytest.mark.parametrize("make", [_other_apps_database, _garbage, _newer_schema], ids=["other-app", "garbage", "newer"])
def test_foreign_journal_is_moved_aside_and_rebuilt_and_nothing_is_lost(
    tmp_path, hub, writer_env, repo_id, crashed_run, make
):
    """A crashed run left segments that never reached the Hub; then its journal was replaced by a file of
    another program. The next writer moves that file aside (every byte kept), rebuilds the journal from the
    segments on disk, and pushes the old events with the new ones."""
    logdir = tmp_path / "run"
    shutil.copytree(crashed_run, logdir)
    before = event_keys(logdir)
    db = journal_path(logdir)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    make(db)
    original = hashlib.sha256(db.read_bytes()).hexdigest()
    try:
        with HFSummaryWriter(repo_id, logdir=logdir, commit_every=60) as writer:
            for step in range(20):
                writer.add_scalar("after", float(step), step)
        assert hub_events(hub, repo_id, tmp_path, path_in_repo="tensorboard/run") == event_keys(logdir)
        assert before < event_keys(logdir)

        kept = [p for p in db.parent.iterdir() if ".broken-" in p.name and not p.name.endswith(("-wal", "-shm"))]
        assert len(kept) == 1, sorted(p.name for p in db.parent.iterdir())
        assert hashlib.sha256(kept[0].read_bytes()).hexdigest() == original  # every byte kept
        if make is _other_apps_database:
            conn = sqlite3.connect(kept[0])
            assert [r[0] for r in conn.execute("SELECT name FROM users ORDER BY id")] == ["ada", "grace"]
            conn.close()
        with Journal(logdir, create=False) as journal:
            assert journal.integrity_check() == "ok"
            assert journal.status()["pending_segments"] == 0
    finally:
        kill_uploaders(logdir)


# -- a disk that fills up while logging ----------------------------------------------------------------

FSIZE_TRAINER = """
    import errno, json, os, resource, signal
    import numpy as np
    from hf_summary import HFSummaryWriter

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing us
    limit = int(os.environ["FSIZE"])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    writer = HFSummaryWriter(os.environ["REPO"], logdir=os.environ["LOGDIR"], commit_every=60)
    rng = np.random.default_rng(0)
    acknowledged, failure = [], None
    for step in range(100000):
        try:
            writer.add_scalar("loss", float(step), step)
            writer.add_histogram("weights", rng.normal(size=2000), step)
        except OSError as exc:
            failure = {"errno": exc.errno, "type": type(exc).__name__, "message": str(exc)}
            break
        acknowledged.append(step)
    writer.close()
    print(json.dumps({"failure": failure, "last": acknowledged[-1]}))
"""


def test_file_size_limit_raises_oserror_and_what_was_logged_is_pushed(tmp_path, hub, writer_env, repo_id):
    """RLIMIT_FSIZE stands in for a full disk: the write that does not fit fails with EFBIG, the trainer sees
    the OSError from add_* (as with tensorboardX), and everything logged before is pushed at close()."""
    logdir = tmp_path / "limited"
    proc = run_script(FSIZE_TRAINER, {"REPO": repo_id, "LOGDIR": str(logdir), "FSIZE": str(1 << 20)}, tmp_path)
    try:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        result = json.loads(out.strip().splitlines()[-1])
        assert result["failure"] == {**result["failure"], "errno": errno.EFBIG, "type": "OSError"}, result
        [segment] = [p for p in logdir.glob("*tfevents*")]
        assert last_complete_offset(segment) == segment.stat().st_size  # no torn record left behind
        local = event_keys(logdir)
        assert {k[2] for k in local if k[1] == "loss"} >= set(range(result["last"] + 1))
        assert hub_events(hub, repo_id, tmp_path, path_in_repo="tensorboard/limited") == local
        assert not uploader_processes(logdir)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        kill_uploaders(logdir)


# -- the local Hub answers malformed requests with 4xx and stores nothing ---------------------------------
# (commit bodies, preupload samples and sizes, oversize preupload/commit bodies: tests/localhub/test_localhub_commits.py;
#  LFS signatures and content: tests/localhub/test_localhub_lfs.py)


def _stored_files(hub) -> set[str]:
    return {p.relative_to(hub.data_dir).as_posix() for p in hub.data_dir.rglob("*")
            if p.is_file() and not p.name.startswith("hub.db")}


@pytest.fixture
def filled(api: HfApi, repo_id: str) -> str:
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=b"hello", path_in_repo="f.txt", repo_id=repo_id)
    return repo_id


def test_path_traversal_is_refused_everywhere(local_hub, http, api: HfApi, filled: str):
    auth = {"authorization": f"Bearer {local_hub.token()}"}
    secret = (local_hub.data_dir / "secret").read_bytes()
    head, stored = api.repo_info(filled).sha, _stored_files(local_hub)
    base = local_hub.endpoint
    requests = [
        ("GET", f"{base}/{filled}/resolve/main/..%2F..%2F..%2Fsecret", {}),
        ("GET", f"{base}/{filled}/resolve/main/%2e%2e/%2e%2e/%2e%2e/secret", {}),
        ("GET", f"{base}/{filled}/resolve/..%2F..%2F..%2F/secret", {}),
        ("GET", f"{base}/api/models/{filled}/tree/main/..%2F..", {}),
        ("GET", f"{base}/api/models/{filled}/tree/main/%2e%2e", {}),
        ("GET", f"{base}/api/models/alice/..%2F..%2Fsecret", {}),
        ("GET", f"{base}/api/models/..%2F../..%2Fsecret", {}),
        ("POST", f"{base}/api/models/{filled}/paths-info/main", {"json": {"paths": ["../../secret"]}}),
        ("POST", f"{base}/api/models/{filled}/preupload/main",
         {"json": {"files": [{"path": "../escape.txt", "sample": "", "size": 1}]}}),
        ("POST", f"{base}/api/models/{filled}/preupload/main",
         {"json": {"files": [{"path": "/abs.txt", "sample": "", "size": 1}]}}),
        ("POST", f"{base}/api/repos/create", {"json": {"name": "..", "organization": "alice"}}),
        ("POST", f"{base}/api/repos/create", {"json": {"name": "x", "organization": "../alice"}}),
        ("PUT", f"{base}/_localhub/lfs/upload/model/{filled}/..%2F..%2Fsecret?size=1&expires=9999999999&signature=x",
         {"content": b"x"}),
        ("POST", f"{base}/api/models/{filled}/branch/..%2F..%2Fx", {"json": {}}),
    ]
    for method, url, kwargs in requests:
        response = http.request(method, url, headers=auth, **kwargs)
        assert 400 <= response.status_code < 500, (method, url, response.status_code, response.text)
        assert secret not in response.content
    assert api.repo_info(filled).sha == head
    assert _stored_files(local_hub) == stored
    assert [b.name for b in api.list_repo_refs(filled).branches] == ["main"]


def test_malformed_json_bodies_are_refused_on_every_endpoint(local_hub, http, api: HfApi, filled: str):
    auth = {"authorization": f"Bearer {local_hub.token()}"}
    head, stored = api.repo_info(filled).sha, _stored_files(local_hub)
    base = local_hub.endpoint
    endpoints = [
        f"{base}/api/repos/create",
        f"{base}/api/models/{filled}/preupload/main",
        f"{base}/api/models/{filled}/paths-info/main",
        f"{base}/api/models/{filled}/super-squash/main",
        f"{base}/api/models/{filled}/branch/dev",
        f"{base}/{filled}.git/info/lfs/objects/batch",
        f"{base}/_localhub/lfs/verify/model/{filled}",
        f"{base}/api/validate-yaml",
    ]
    bodies = [b"{not json", b"\xff\xfe\x00", b"[1, 2, 3]", b'"a string"', b"null"]
    for url in endpoints:
        for body in bodies:
            headers = {**auth, "content-type": "application/json"}
            response = http.post(url, content=body, headers=headers)
            assert 400 <= response.status_code < 500, (url, body, response.status_code, response.text)
    for url in (f"{base}/api/repos/create", f"{base}/{filled}.git/info/lfs/objects/batch"):
        response = http.post(url, content=b" " * (17 * 1024 * 1024), headers=auth)
        assert response.status_code == 413, url
    assert api.repo_info(filled).sha == head
    assert [b.name for b in api.list_repo_refs(filled).branches] == ["main"]
    assert _stored_files(local_hub) == stored
