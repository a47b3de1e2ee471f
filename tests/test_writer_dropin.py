"""Drop-in gaps found by running tensorboardX's own tests with HFSummaryWriter: dry runs, a logdir of ``/``,
and torch's flavour of the surface (``hf_summary.torch``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import psutil
import pytest
from helpers import event_keys, hub_events
from huggingface_hub import HfApi

from hf_summary import HFSummaryWriter
from hf_summary.torch import SummaryWriter as TorchFlavourWriter
from hf_summary.verify import iter_events


def _children() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


@pytest.mark.parametrize("logdir", ["/", None, "dry"])
def test_write_to_disk_false_creates_nothing_and_calls_no_one(tmp_path, monkeypatch, hub, writer_env, repo_id, logdir):
    monkeypatch.chdir(tmp_path)
    requests_before, children_before = hub.stats()["requests"], _children()
    with HFSummaryWriter(repo_id, logdir=logdir, write_to_disk=False, commit_every=0.01) as writer:
        writer.add_scalar("a", 1.0, 0)
        writer.add_scalars("group", {"x": 1.0, "y": 2.0}, 0)
        writer.add_hparams({"lr": 0.1}, {"m": 1.0})
        writer.add_text("note", "hello", 0)
        writer.add_histogram("h", np.arange(10), 0)
        writer.flush()
        assert writer.push_to_hub() is True
    writer.add_scalar("after_close", 1.0, 1)
    writer.close()
    assert list(tmp_path.iterdir()) == []
    assert _children() == children_before
    assert hub.stats()["requests"] == requests_before
    assert not HfApi(endpoint=hub.endpoint, token=hub.token()).repo_exists(repo_id)


def test_a_filesystem_root_is_refused_before_anything_starts(hub, writer_env, repo_id):
    with pytest.raises(ValueError, match="filesystem root.*directory of its own"):
        HFSummaryWriter(repo_id, logdir="/")
    assert not Path("/.hf_summary").exists()
    assert not HfApi(endpoint=hub.endpoint, token=hub.token()).repo_exists(repo_id)


def test_double_precision_without_new_style_is_a_simple_value_as_in_torch(tmp_path, writer_env, repo_id):
    with HFSummaryWriter(repo_id, logdir=tmp_path / "run") as writer:
        writer.add_scalar("plain", 0.1, 0, double_precision=True)
        writer.add_scalar("tensor", 0.1, 0, new_style=True, double_precision=True)
    values = {value.tag: value for _, event in iter_events(tmp_path / "run") for value in event.summary.value}
    assert values["plain"].WhichOneof("value") == "simple_value"
    assert values["plain"].simple_value == pytest.approx(0.1)
    assert list(values["tensor"].tensor.double_val) == [0.1]


def test_add_scalars_names_sub_runs_as_each_family_does(tmp_path, hub, writer_env, repo_id):
    with HFSummaryWriter(repo_id, logdir=tmp_path / "tbx") as writer:
        writer.add_scalars("loss/all", {"train": 0.5, "eval": 0.6}, 1)
    with TorchFlavourWriter(repo_id, logdir=tmp_path / "torch") as writer:
        writer.add_scalars("loss/all", {"train": 0.5, "eval": 0.6}, 1)
        writer.add_scalar("odd tag", 1.0, 1)
    assert {(k[0], k[1]) for k in event_keys(tmp_path / "tbx")} == {
        ("loss/all/train", "loss/all"), ("loss/all/eval", "loss/all")
    }
    torch_keys = event_keys(tmp_path / "torch")
    assert {(k[0], k[1]) for k in torch_keys} == {
        ("loss_all_train", "loss/all"), ("loss_all_eval", "loss/all"), ("", "odd tag")
    }
    assert hub_events(hub, repo_id, tmp_path, path_in_repo="tensorboard/torch") == torch_keys


@pytest.mark.frameworks
@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="compares with torch.utils.tensorboard")
def test_torch_flavour_writes_what_torch_writes(tmp_path, writer_env, repo_id):
    from torch.utils.tensorboard import SummaryWriter

    def log(writer) -> None:
        writer.add_scalar("double", 0.1, 0, double_precision=True)
        writer.add_scalar("new", 0.25, 1, new_style=True)
        writer.add_scalars("main/tag", {"a": 1.0, "b": 2.0}, 2, walltime=5.0)

    reference = SummaryWriter(log_dir=str(tmp_path / "reference"))
    log(reference)
    reference.close()
    with TorchFlavourWriter(repo_id, logdir=tmp_path / "ours") as writer:
        log(writer)

    def comparable(root: Path) -> set[tuple]:
        return {(key[0], key[1], key[2], key[4]) for key in event_keys(root)}

    assert comparable(tmp_path / "ours") == comparable(tmp_path / "reference")
