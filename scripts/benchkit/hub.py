"""What the benchmarks read back from the local Hub and from event files."""

from __future__ import annotations

import socket
from pathlib import Path

from hf_summary.localhub.testing import LocalHub


def repo_commits(hub: LocalHub, repo_id: str) -> int:
    return hub.stats()["repos"].get(f"model/{repo_id}", {}).get("commits", 0)


def closed_port_endpoint() -> str:
    """An endpoint on a loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def scalar_steps(root: Path, tag: str = "loss") -> set[int]:
    """Steps of `tag` in every event file under `root`: a raw record scan (no sampling)."""
    from tensorboardX.proto.event_pb2 import Event

    from hf_summary.segments import read_records

    steps = set()
    for path in root.rglob("*tfevents*"):
        if ".hf_summary" in path.parts or not path.is_file():
            continue
        for data in read_records(path):
            event = Event.FromString(data)
            if any(value.tag == tag for value in event.summary.value):
                steps.add(event.step)
    return steps


def hub_steps(hub: LocalHub, repo_id: str, dest: Path) -> set[int]:
    """Steps of `loss` in the repo's event files, downloaded with the real client into `dest`."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.endpoint, token=hub.token())
    for name in api.list_repo_files(repo_id):
        if "tfevents" in name:
            api.hf_hub_download(repo_id, name, local_dir=dest)
    return scalar_steps(dest)



def commit_time(hub: LocalHub, repo_id: str, count: int) -> float:
    """Wall-clock time of the `count`-th commit of the repo's main branch (1 = the initial commit)."""
    from huggingface_hub import HfApi

    history = HfApi(endpoint=hub.endpoint, token=hub.token()).list_repo_commits(repo_id)  # newest first
    return history[len(history) - count].created_at.timestamp()


