"""A byte range of a local file pushed as a file of its own (`hf_summary.hub.ranges`), as `hf-summary watch` pushes
a merge of its copies: through the real client to the local Hub, read into memory (Xet) or as a view (basic LFS),
and never committed once the file no longer holds the recorded bytes."""

from __future__ import annotations

import hashlib

import pytest

from hf_summary.hub import FileRange, HubError, open_client
from hf_summary.hub import ranges as ranges_module
from hf_summary.hub.ranges import RangeChangedError, RangeReader, upload_sources

HEAD, BODY, TAIL = b"head" * 100, bytes(range(256)) * 4000, b"tail" * 100


def _source(tmp_path):
    path = tmp_path / "events.out.tfevents.1.host"
    path.write_bytes(HEAD + BODY + TAIL)
    return FileRange(path, len(HEAD), len(HEAD) + len(BODY), hashlib.sha256(BODY).hexdigest())


@pytest.fixture(params=["model", "bucket"])
def client(request, local_hub, repo_name):
    client = open_client(repo_id=f"alice/{repo_name}", repo_type=request.param, endpoint=local_hub.endpoint,
                         token=local_hub.token())
    client.ensure_repo(private=None)
    return client


@pytest.mark.parametrize("in_memory", [True, False], ids=["bytes", "view"])
def test_a_range_lands_as_a_file_holding_exactly_its_bytes(client, tmp_path, monkeypatch, in_memory):
    source = _source(tmp_path)
    if not in_memory:
        monkeypatch.setattr(ranges_module, "IN_MEMORY_BYTES", 0)
    [handed] = upload_sources([(source, "tb/run/merged")])
    assert isinstance(handed, bytes if in_memory else RangeReader)
    if isinstance(handed, RangeReader):
        handed.close()
    client.commit_files([(source, "tb/run/merged")], "a range")
    assert (client.download("tb", tmp_path / "copy") / "tb/run/merged").read_bytes() == BODY


@pytest.mark.parametrize("in_memory", [True, False], ids=["bytes", "view"])
@pytest.mark.parametrize("change", ["rewritten", "truncated"])
def test_a_range_the_file_no_longer_holds_is_never_committed(client, tmp_path, monkeypatch, in_memory, change):
    source = _source(tmp_path)
    if not in_memory:
        monkeypatch.setattr(ranges_module, "IN_MEMORY_BYTES", 0)
    if change == "rewritten":
        source.path.write_bytes(HEAD + BODY[::-1] + TAIL)
    else:
        source.path.write_bytes(HEAD + BODY[:-1])
    with pytest.raises(HubError, match="no longer holds|shorter than"):
        client.commit_files([(source, "tb/run/merged")], "a range")
    assert client.list_files("tb") == {}


def test_a_view_checks_every_pass_from_its_start_and_reads_only_its_range(tmp_path):
    source = _source(tmp_path)
    with source.open() as view:
        assert view.read(10) == BODY[:10] and view.read() == BODY[10:] and view.read() == b""
        view.seek(5)
        assert view.read(7) == BODY[5:12]  # not from the start: not checked, nor failing
        view.seek(0)
        source.path.write_bytes(HEAD + b"X" + BODY[1:] + TAIL)  # changed between two passes (an upload's retry)
        with pytest.raises(RangeChangedError):
            while view.read(1 << 16):
                pass
