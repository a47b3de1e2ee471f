"""Local Hub: the server process (startup line, signals, restart, crash) and persistence."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download

from hf_summary.localhub.server import parse_users
from hf_summary.localhub.testing import LocalHub


def _port_is_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_parse_users() -> None:
    assert parse_users(["alice:tok1", "bob:tok:with:colons"]) == {"alice": "tok1", "bob": "tok:with:colons"}
    for bad in (["alice"], ["alice:"], [":tok"], ["bad name:tok"], ["a:t", "a:u"], ["a:t", "b:t"]):
        with pytest.raises(ValueError):
            parse_users(bad)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_prints_one_line_and_stops_cleanly_on_signals(tmp_path: Path, sig: signal.Signals) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hf_summary",
            "hub",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path),
            "--user",
            "alice:t",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("Local Hub listening on http://127.0.0.1:")
        port = int(line.strip().rsplit(":", 1)[1])
        assert port != 0 and _port_is_open(port)
        process.send_signal(sig)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert (process.returncode, stdout, stderr) == (0, "", "")


def test_restart_and_crash_keep_repos_commits_and_files(tmp_path: Path) -> None:
    with LocalHub(data_dir=tmp_path / "data") as hub:
        api = HfApi(endpoint=hub.endpoint, token=hub.token())
        api.create_repo("alice/kept", private=True)
        api.create_branch("alice/kept", branch="dev")
        api.upload_file(
            path_or_fileobj=b"persisted", path_in_repo="dir/f.txt", repo_id="alice/kept", revision="dev"
        )
        before = (api.list_repo_commits("alice/kept", revision="dev"), api.list_repo_refs("alice/kept"))
        port, pid = hub.port, hub.pid

        hub.restart()
        assert (hub.port, hub.pid != pid) == (port, True)
        assert (
            api.list_repo_commits("alice/kept", revision="dev"),
            api.list_repo_refs("alice/kept"),
        ) == before
        assert api.repo_info("alice/kept").private

        hub.kill()
        assert not _port_is_open(port)
        hub.start()
        local = hf_hub_download(
            "alice/kept",
            "dir/f.txt",
            revision="dev",
            endpoint=hub.endpoint,
            token=hub.token(),
            cache_dir=tmp_path / "cache",
        )
        assert Path(local).read_bytes() == b"persisted"
        assert not HfApi(endpoint=hub.endpoint, token=hub.token("bob")).repo_exists("alice/kept")
        hub.stop()
        assert not _port_is_open(port)
    assert (tmp_path / "data" / "hub.db").exists()  # a given data dir is left in place


def test_local_hub_cleans_up_its_temporary_data_dir() -> None:
    with LocalHub(users={"carol": "hf_carol"}) as hub:
        data_dir, port = hub.data_dir, hub.port
        assert HfApi(endpoint=hub.endpoint, token=hub.token("carol")).whoami()["name"] == "carol"
    assert not data_dir.exists()
    assert not _port_is_open(port)
