"""Security: where the token goes (and does not), file modes, what the uploader writes and uploads, and the
local Hub's auth on the endpoints tests/localhub/test_localhub_auth.py does not cover."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
import textwrap
import time
import traceback
from pathlib import Path

import psutil
import pytest
from helpers import REPO_ROOT, event_keys, hub_events, kill_uploaders, uploader_processes, wait_until
from huggingface_hub import HfApi

from hf_summary import HFSummaryWriter
from hf_summary.journal import Journal, journal_path
from hf_summary.localhub.testing import LocalHub
from hf_summary.segments import parse_segment_sequence


@pytest.fixture
def secret_hub():
    """A local Hub whose users have random tokens, so that finding the bytes anywhere is a real leak."""
    users = {"alice": "hf_" + secrets.token_hex(20), "bob": "hf_" + secrets.token_hex(20)}
    with LocalHub(users=users) as hub:
        yield hub


def _no_secret(secret: str, where: str, data: bytes | str) -> None:
    raw = data.encode() if isinstance(data, str) else data
    assert secret.encode() not in raw, f"the token appears in {where}"


def _descendants_except(pids: set[int]) -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if p.pid not in pids]


def test_token_never_leaves_the_trainer_but_through_the_pipe(tmp_path, secret_hub, monkeypatch, caplog, capfd):
    """Passed as ``token=`` (HF_TOKEN unset), the token is in no child's argv or environment, no byte of the
    journal (with its -wal/-shm) or of any file in the logdir, no log line, no ``status``/``recover`` output
    and no exception message, even while pushes fail and are retried."""
    hub, token = secret_hub, secret_hub.token("alice")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))  # no stored login to fall back on
    caplog.set_level(logging.DEBUG)
    logdir = tmp_path / "run"
    writer = HFSummaryWriter("alice/secret-run", logdir=logdir, token=token, commit_every=0.01)
    try:
        hub.set_faults([{"method": "POST", "path": "/commit/", "status": 503, "times": 2},
                        {"method": "POST", "path": "/preupload/", "status": 429, "retry_after": 0, "times": 1}])
        for step in range(200):
            writer.add_scalar("loss", float(step), step)
        with Journal(logdir, create=False) as journal:
            wait_until(lambda: journal.history("commit", limit=1) and journal.history("error", limit=1),
                       timeout=60, interval=0.2, message="a failed and a successful push")
        [uploader] = uploader_processes(logdir)
        for process in _descendants_except({hub.pid}):  # the uploader, and anything it started
            for name in ("cmdline", "environ"):
                _no_secret(token, f"/proc/{process.pid}/{name} of {process.cmdline()}",
                           Path(f"/proc/{process.pid}/{name}").read_bytes())
        assert uploader.pid in {p.pid for p in _descendants_except({hub.pid})}
        for path in sorted(p for p in journal_path(logdir).parent.rglob("*") if p.is_file()):  # the WAL too
            _no_secret(token, str(path), path.read_bytes())
    finally:
        writer.close()
    for path in sorted(p for p in logdir.rglob("*") if p.is_file()):
        _no_secret(token, str(path), path.read_bytes())
    assert (journal_path(logdir).parent / "uploader.log").read_text().count("push failed") >= 1

    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    for command in (["status", str(logdir)], ["status", "--json", str(logdir)]):
        out = subprocess.run([sys.executable, "-m", "hf_summary", *command], capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr
        _no_secret(token, f"hf-summary {' '.join(command)}", out.stdout + out.stderr)
    out = subprocess.run([sys.executable, "-m", "hf_summary", "recover", str(logdir)], capture_output=True,
                         text=True, env={**env, "HF_TOKEN": token}, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    _no_secret(token, "hf-summary recover", out.stdout + out.stderr)

    for bad in (hub.token("bob"), "hf_" + secrets.token_hex(20)):  # cannot write alice's repo / unknown token
        with pytest.raises(PermissionError) as caught:
            HFSummaryWriter("alice/secret-run", logdir=tmp_path / "refused", token=bad)
        _no_secret(bad, "the PermissionError", "".join(traceback.format_exception(caught.value)))
    with pytest.raises(TypeError) as caught:
        HFSummaryWriter("alice/secret-run", logdir=tmp_path / "refused", token=token.encode())
    _no_secret(token, "the TypeError", "".join(traceback.format_exception(caught.value)))

    _no_secret(token, "captured log records", "\n".join(r.getMessage() for r in caplog.records))
    captured = capfd.readouterr()  # the uploader's stderr is ours
    _no_secret(token, "stdout/stderr", captured.out + captured.err)


def test_journal_and_log_are_private_even_with_umask_0(tmp_path, writer_env, repo_id):
    logdir = tmp_path / "run"
    previous = os.umask(0)  # the uploader inherits it too
    try:
        writer = HFSummaryWriter(repo_id, logdir=logdir, commit_every=0.01)
    finally:
        os.umask(previous)
    private = journal_path(logdir).parent

    def modes() -> dict[str, int]:
        """Files of the journal's directory (0600 expected) and its staging directories (0700 expected) as 0600."""
        return {p.name: p.stat().st_mode & 0o777 & ~(0o100 if p.is_dir() else 0) for p in private.iterdir()}

    try:
        for step in range(100):
            writer.add_scalar("loss", float(step), step)
        wait_until(lambda: {"journal.db-wal", "journal.db-shm", "uploader.log"} <= set(modes()), timeout=30,
                   message="the uploader's files")
        assert private.stat().st_mode & 0o777 == 0o700
        assert set(modes().values()) == {0o600}, modes()
    finally:
        writer.close()
    assert private.stat().st_mode & 0o777 == 0o700
    assert set(modes().values()) == {0o600}, modes()


# -- what the uploader writes ---------------------------------------------------------------------------

_WRITE_CALLS = ("open", "openat", "creat", "mkdir", "mkdirat", "rename", "renameat", "renameat2", "unlink",
                "unlinkat", "link", "linkat", "symlink", "symlinkat", "truncate", "chmod", "fchmodat", "rmdir",
                "utimensat", "chown", "fchownat", "mknod", "mknodat")
# "?": no complaint about calls this architecture lacks (aarch64 has no open, mkdir, rename...)
_TRACED = ",".join("?" + name for name in (*_WRITE_CALLS, "execve", "clone", "clone3", "fork", "vfork", "chdir"))
_CALL = re.compile(r"^(\w+)\((.*)\)\s+=\s+(-?\d+|\?)")
_PATH = re.compile(r'(?:(AT_FDCWD|\d+)<((?:[^>\\]|\\.)*)>, )?"((?:[^"\\]|\\.)*)"')
_CHILD = re.compile(r"^(?:clone3?|fork|vfork)\(.*=\s+(\d+)$")
_READ_ONLY = re.compile(r"\bO_RDONLY\b")


def _uploader_writes(trace_prefix: Path, cwd: Path) -> list[tuple[str, str]]:
    """(syscall, absolute path) of every successful call that may change the filesystem, made by the
    uploader process or any of its threads, from ``strace -ff -y`` output files."""
    files = {int(p.suffix[1:]): p for p in trace_prefix.parent.glob(trace_prefix.name + ".*")}
    roots = [pid for pid, p in files.items()
             if re.search(r'^execve\(.*"hf_summary\.uploader"', p.read_text(errors="replace"), re.M)]
    assert roots, "no uploader in the trace"
    pids, queue = set(), list(roots)
    while queue:
        pid = queue.pop()
        if pid in pids or pid not in files:
            continue
        pids.add(pid)
        queue += [int(m.group(1)) for m in map(_CHILD.match, files[pid].read_text(errors="replace").splitlines()) if m]
    found = []
    for pid in pids:
        for line in files[pid].read_text(errors="replace").splitlines():
            match = _CALL.match(line)
            if not match or match.group(1) not in _WRITE_CALLS or match.group(3).startswith("-"):
                continue
            name, args = match.group(1), match.group(2)
            if name in ("open", "openat") and _READ_ONLY.search(args) and "O_CREAT" not in args and "O_TRUNC" not in args:
                continue
            paths = _PATH.findall(args)
            if name in ("symlink", "symlinkat"):
                paths = paths[1:]  # the first string is the link's target, not a path written
            for _, directory, path in paths:
                found.append((name, os.path.normpath(os.path.join(directory or str(cwd), path))))
    return found


def _strace_options() -> list[str]:
    """strace's options for tracing what a process writes; skips the test when strace cannot run here."""
    if shutil.which("strace") is None:
        pytest.skip("needs strace")
    for options in (["--seccomp-bpf"], []):  # the filter makes tracing cheap; older straces lack it
        probe = subprocess.run(["strace", *options, "-f", "-qq", "-o", os.devnull, "-e", "trace=?execve", "true"],
                               capture_output=True, text=True)
        if probe.returncode == 0:
            return options
    pytest.skip(f"strace cannot trace here: {probe.stderr.strip()}")


def test_uploader_writes_nothing_outside_the_logdir_and_the_temp_dir(tmp_path, hub, repo_id):
    """The trainer starts its uploader through a wrapper that runs it under ``strace -ff``; every call the
    uploader (any of its threads) makes that could change a file must be in the logdir, the temp dir or the
    host's rendezvous of uploaders sharing pushes (``HF_SUMMARY_RUNTIME_DIR``)."""
    dirs = {name: tmp_path / name for name in ("cwd", "tmp", "home", "trace", "runtime")}
    for path in dirs.values():
        path.mkdir()
    logdir = tmp_path / "run"
    prefix = dirs["trace"] / "trace"
    wrapper = tmp_path / "traced-python"
    strace = ["strace", *_strace_options(), "-ff", "-qq", "-y", "-o", str(prefix), "-e", f"trace={_TRACED}"]
    wrapper.write_text(f'#!/bin/sh\nexec {" ".join(strace)} {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    code = """
        import os, sys, time
        from hf_summary import HFSummaryWriter
        sys.executable = os.environ["TRACED_PYTHON"]  # the uploader is started as `sys.executable -m ...`
        with HFSummaryWriter(os.environ["REPO"], logdir=os.environ["LOGDIR"], commit_every=0.01) as writer:
            for step in range(150):
                writer.add_scalar("loss", float(step), step)
                time.sleep(0.01)
    """
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": hub.token(), "REPO": repo_id, "LOGDIR": str(logdir),
           "TMPDIR": str(dirs["tmp"]), "HF_SUMMARY_RUNTIME_DIR": str(dirs["runtime"]), "HOME": str(dirs["home"]),
           "HF_HOME": str(dirs["home"] / "hf"),
           "XDG_CACHE_HOME": str(dirs["home"] / "cache"), "PYTHONPATH": str(REPO_ROOT),
           "TRACED_PYTHON": str(wrapper)}
    try:
        result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=dirs["cwd"],
                                capture_output=True, text=True, timeout=240)
        assert result.returncode == 0, result.stderr[-3000:]
        writes = _uploader_writes(prefix, dirs["cwd"])
        allowed = (str(logdir.resolve()), str(dirs["tmp"]), str(dirs["runtime"]), "/dev/null")
        outside = sorted({(name, path) for name, path in writes
                          if not any(path == root or path.startswith(root + os.sep) for root in allowed)})
        assert not outside, outside
        assert any(path.startswith(str(logdir.resolve())) for _, path in writes)  # the trace did see its writes
        assert not list(dirs["home"].iterdir()) and not list(dirs["cwd"].iterdir())
        assert hub_events(hub, repo_id, tmp_path, path_in_repo="tensorboard/run") == event_keys(logdir)
    finally:
        kill_uploaders(logdir)


# -- what is uploaded -----------------------------------------------------------------------------------


def test_only_matching_files_under_path_in_repo_are_uploaded_and_symlinks_are_not_followed(
    tmp_path, hub, writer_env, repo_id
):
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret.tfevents.1").write_bytes(b"SECRET OUTSIDE THE LOGDIR")
    (outside / "dir" / "events.out.tfevents.0000000099.host.hfs").write_bytes(b"SECRET IN A LINKED DIR")
    logdir = tmp_path / "run"
    logdir.mkdir()
    (logdir / "link.tfevents.1").symlink_to(outside / "secret.tfevents.1")
    (logdir / "linkdir").symlink_to(outside / "dir", target_is_directory=True)
    (logdir / "passwd.tfevents.x").symlink_to("/etc/passwd")
    (logdir / "notes.txt").write_text("ignored by the patterns")
    (logdir / "projector.tfevents.asset").write_bytes(b"a file of the run that matches the patterns")
    with HFSummaryWriter(repo_id, logdir=logdir, path_in_repo="logs", repo_allow_patterns="*",
                         repo_ignore_patterns=["notes.txt"]) as writer:
        for step in range(10):
            writer.add_scalar("loss", float(step), step)
            writer.add_scalars("many", {"a": 1.0, "b": 2.0}, step)
    api = HfApi(endpoint=hub.endpoint, token=hub.token())
    files = api.list_repo_files(repo_id)
    assert all(f.startswith("logs/run/") or f == "README.md" for f in files), files
    inside = {f.removeprefix("logs/run/") for f in files if f != "README.md"}
    assert "projector.tfevents.asset" in inside
    assert not {f for f in inside if f.startswith((".hf_summary", "link", "passwd", "notes"))}, inside
    assert {f for f in inside if parse_segment_sequence(f) is not None} == {
        p.relative_to(logdir).as_posix() for p in logdir.rglob("events.out.tfevents.*") if not p.is_symlink()
        and "linkdir" not in p.parts}
    dest = tmp_path / "download"
    for name in files:
        api.hf_hub_download(repo_id, name, local_dir=dest)
    for path in dest.rglob("*"):
        if path.is_file() and ".cache" not in path.parts:
            assert b"SECRET" not in path.read_bytes() and b"root:" not in path.read_bytes(), path


def test_a_fifo_in_the_logdir_is_not_read(tmp_path, hub, writer_env, repo_id):
    logdir = tmp_path / "run"
    logdir.mkdir()
    os.mkfifo(logdir / "pipe.tfevents.fifo")  # matches the patterns; opening it to hash it would block forever
    writer = HFSummaryWriter(repo_id, logdir=logdir, close_timeout=3, drain_timeout=3)
    try:
        writer.add_scalar("loss", 1.0, 0)
        assert writer.push_to_hub(timeout=5)
    finally:
        writer.close()
        kill_uploaders(logdir)


# -- the local Hub: auth on the endpoints test_localhub_auth.py does not list ---------------------------


@pytest.fixture
def private_dataset(api: HfApi, repo_id: str) -> str:
    api.create_repo(repo_id, repo_type="dataset", private=True)
    api.upload_file(path_or_fileobj=b"secret", path_in_repo="sub/f.txt", repo_id=repo_id, repo_type="dataset")
    return repo_id


def test_private_dataset_is_invisible_on_every_endpoint(local_hub, http, private_dataset: str):
    r = private_dataset
    reads = [
        ("GET", f"/api/datasets/{r}/tree/main/sub", {}),
        ("GET", f"/api/datasets/{r}/tree/main?recursive=true&expand=true", {}),
        ("GET", f"/api/datasets/{r}/commits/main?expand[]=formatted", {}),
        ("GET", f"/api/datasets/{r}/revision/main?blobs=true", {}),
        ("POST", f"/api/datasets/{r}/paths-info/main", {"data": {"paths": ["sub/f.txt"]}}),
        ("GET", f"/datasets/{r}/resolve/main/sub/f.txt", {}),
        ("HEAD", f"/datasets/{r}/resolve/main/sub/f.txt", {}),
        ("POST", f"/datasets/{r}.git/info/lfs/objects/batch",
         {"json": {"operation": "upload", "objects": [{"oid": "a" * 64, "size": 1}]}}),
        ("POST", f"/_localhub/lfs/verify/dataset/{r}", {"json": {"oid": "a" * 64, "size": 1}}),
        ("POST", f"/api/datasets/{r}/commit/main", {"content": b'{"key":"header","value":{"summary":"x"}}\n'}),
        ("POST", f"/api/datasets/{r}/super-squash/main", {"json": {}}),
        ("DELETE", "/api/repos/delete", {"json": {"name": r.split("/")[1], "organization": "alice", "type": "dataset"}}),
    ]
    for method, path, kwargs in reads:
        for token, status in ((None, 401), ("hf_unknown", 401), (local_hub.token("bob"), 404)):
            headers = {"authorization": f"Bearer {token}"} if token else {}
            response = http.request(method, local_hub.endpoint + path, headers=headers, **kwargs)
            assert response.status_code == status, (method, path, token, response.status_code, response.text)
            assert b"secret" not in response.content
    owner = {"authorization": f"Bearer {local_hub.token()}"}
    assert http.get(f"{local_hub.endpoint}/datasets/{r}/resolve/main/sub/f.txt", headers=owner).content == b"secret"


def test_signed_lfs_upload_urls_are_bound_to_repo_object_size_and_time(local_hub, http, api: HfApi, repo_name):
    key = (local_hub.data_dir / "secret").read_bytes()
    content = b"\0an lfs object"
    oid = hashlib.sha256(content).hexdigest()
    mine, theirs = f"alice/{repo_name}", f"bob/{repo_name}"
    api.create_repo(mine)
    HfApi(endpoint=local_hub.endpoint, token=local_hub.token("bob")).create_repo(theirs)

    def url(repo: str, size: int, expires: int, signed_for: str | None = None) -> str:
        message = f"model/{signed_for or repo}\n{oid}\n{size}\n{expires}".encode()
        signature = hmac.new(key, message, hashlib.sha256).hexdigest()
        return f"{local_hub.endpoint}/_localhub/lfs/upload/model/{repo}/{oid}?size={size}&expires={expires}" \
               f"&signature={signature}"

    later = int(time.time()) + 600
    refused = [
        url(theirs, len(content), later, signed_for=mine),  # a URL signed for one repo used on another
        url(mine, len(content) + 1, later, signed_for=None).replace(f"size={len(content) + 1}", f"size={len(content)}"),
        url(mine, len(content), int(time.time()) - 1),  # expired
    ]
    for target in refused:
        assert http.put(target, content=content).status_code == 403, target
    assert http.put(url(mine, len(content), later), content=content).status_code == 200
    verify = f"{local_hub.endpoint}/_localhub/lfs/verify/model/{theirs}"
    body = {"oid": oid, "size": len(content)}
    assert http.post(verify, json=body, headers={"authorization": f"Bearer {local_hub.token()}"}).status_code == 403
    assert http.post(verify, json=body).status_code == 401
