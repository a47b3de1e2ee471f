"""Local Hub: the per-repo commit rate limit, and concurrent commits from many processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from hf_summary.localhub.testing import LocalHub

WRITERS = 8
WRITER = """
    import sys
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi()
    n = sys.argv[1]
    print("ready", flush=True)
    sys.stdin.readline()  # the barrier: all writers commit at once
    api.create_commit(sys.argv[2], operations=[CommitOperationAdd(f"w{n}.bin", n.encode() * 200_000)],
                      commit_message=f"writer {n}")
"""


@pytest.fixture(scope="module")
def limited_hub() -> Iterator[LocalHub]:
    with LocalHub(commit_limit=2) as hub:
        yield hub


def test_commit_limit_answers_429_and_create_commit_does_not_retry(
    limited_hub: LocalHub, repo_id: str
) -> None:
    api = HfApi(endpoint=limited_hub.endpoint, token=limited_hub.token())
    api.create_repo(repo_id)
    for n in range(2):
        api.upload_file(path_or_fileobj=b"%d" % n, path_in_repo=f"{n}.txt", repo_id=repo_id)
    requests_before = limited_hub.stats()["requests"]
    with pytest.raises(HfHubHTTPError) as e:
        api.upload_file(path_or_fileobj=b"3", path_in_repo="3.txt", repo_id=repo_id)
    assert e.value.response.status_code == 429
    assert 3500 <= int(e.value.response.headers["retry-after"]) <= 3600
    # one preupload and one commit: the client raised the 429 at once
    assert limited_hub.stats()["requests"] - requests_before == 2
    assert api.list_repo_files(repo_id) == ["0.txt", "1.txt"]
    other = f"{repo_id}-other"
    api.create_repo(other)
    api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=other)  # the limit is per repo


def test_a_short_commit_window_frees_slots(repo_id: str) -> None:
    with LocalHub(commit_limit=1, commit_window_s=2) as hub:
        api = HfApi(endpoint=hub.endpoint, token=hub.token())
        api.create_repo(repo_id)
        api.upload_file(path_or_fileobj=b"0", path_in_repo="0.txt", repo_id=repo_id)
        with pytest.raises(HfHubHTTPError) as e:
            api.upload_file(path_or_fileobj=b"1", path_in_repo="1.txt", repo_id=repo_id)
        retry_after = int(e.value.response.headers["retry-after"])
        assert 1 <= retry_after <= 2
        deadline = time.monotonic() + 10
        while True:  # the slot frees once the first commit leaves the window
            try:
                api.upload_file(path_or_fileobj=b"1", path_in_repo="1.txt", repo_id=repo_id)
                break
            except HfHubHTTPError as exc:
                assert exc.response.status_code == 429 and time.monotonic() < deadline
                time.sleep(float(exc.response.headers["retry-after"]))
        assert api.list_repo_files(repo_id) == ["0.txt", "1.txt"]


def test_preupload_429_is_retried_after_retry_after(limited_hub: LocalHub, repo_id: str) -> None:
    """preupload goes through the client's backoff (`http_backoff`), which waits Retry-After + 1 s."""
    api = HfApi(endpoint=limited_hub.endpoint, token=limited_hub.token())
    api.create_repo(repo_id)
    limited_hub.set_faults(
        [{"method": "POST", "path": "/preupload/", "status": 429, "retry_after": 1, "times": 1}]
    )
    try:
        requests_before = limited_hub.stats()["requests"]
        started = time.monotonic()
        api.upload_file(path_or_fileobj=b"late", path_in_repo="late.txt", repo_id=repo_id)
        assert time.monotonic() - started >= 2.0
        assert limited_hub.stats()["requests"] - requests_before == 3  # preupload twice, then commit
    finally:
        limited_hub.clear_faults()
    assert api.list_repo_files(repo_id) == ["late.txt"]


def test_concurrent_commits_from_many_processes_are_serialised(
    local_hub: LocalHub, api: HfApi, repo_id: str, tmp_path
) -> None:
    api.create_repo(repo_id)
    env = {
        **os.environ,
        "HF_ENDPOINT": local_hub.endpoint,
        "HF_TOKEN": local_hub.token(),
        "HF_HOME": str(tmp_path),
    }
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(WRITER), str(n), repo_id],
            env=env,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in range(WRITERS)
    ]
    try:
        for writer in writers:
            assert writer.stdout.readline().strip() == "ready"
        for writer in writers:
            writer.stdin.write("go\n")
            writer.stdin.flush()
        for writer in writers:
            _, stderr = writer.communicate(timeout=120)
            assert writer.returncode == 0, stderr
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
                writer.wait()
    commits = api.list_repo_commits(repo_id)
    assert len(commits) == WRITERS + 1
    assert sorted(c.title for c in commits[:-1]) == sorted(f"writer {n}" for n in range(WRITERS))
    # linear history without lost updates: the k-th commit (oldest first) holds exactly k files
    for k, commit in enumerate(reversed(commits)):
        assert len(api.list_repo_files(repo_id, revision=commit.commit_id)) == k
