"""The SummaryWriter surface: every public method's events reach the Hub, byte for byte."""

from __future__ import annotations

import importlib.util
import inspect
import threading

import numpy as np
import pytest
import tensorboardX
from helpers import event_keys, hub_events, uploader_processes
from huggingface_hub import HfApi, ModelCard

from hf_summary import HFSummaryWriter


def _log_everything(writer: HFSummaryWriter) -> None:
    rng = np.random.default_rng(0)
    for step in range(5):
        writer.add_scalar("loss", 1.0 / (step + 1), step)
    writer.add_scalar("new_style", 0.5, 1, new_style=True)
    writer.add_scalar("double", 0.1, 2, double_precision=True)
    writer.add_scalars("compare", {"train": 0.1, "eval": 0.2}, 1)
    writer.add_histogram("weights", rng.normal(size=1000), 1)
    writer.add_histogram_raw("raw", min=0, max=3, num=4, sum=6, sum_squares=14,
                             bucket_limits=[1, 2, 3], bucket_counts=[1, 2, 1], global_step=1)
    writer.add_image("image", rng.random((3, 8, 8)), 1)
    writer.add_images("images", rng.random((2, 3, 8, 8)), 1)
    writer.add_image_with_boxes("boxes", rng.random((3, 16, 16)), np.array([[1, 1, 8, 8]]), 1)
    writer.add_text("note", "hello *world*", 1)
    writer.add_audio("audio", rng.uniform(-1, 1, 800), 1, sample_rate=8000)
    writer.add_video("video", rng.random((1, 4, 3, 8, 8)), 1, fps=4)
    writer.add_embedding(rng.normal(size=(10, 4)), metadata=[str(n) for n in range(10)], tag="points")
    writer.add_pr_curve("pr", rng.integers(0, 2, 50), rng.random(50), 1)
    writer.add_pr_curve_raw("pr_raw", [10, 8], [5, 3], [0, 2], [0, 2], [0.67, 0.73], [1.0, 0.8], 1, num_thresholds=2)
    writer.add_custom_scalars({"group": {"losses": ["Multiline", ["loss", "compare/train"]]}})
    writer.add_custom_scalars_multilinechart(["loss", "new_style"], title="lines")
    writer.add_custom_scalars_marginchart(["loss", "loss", "loss"], title="margin")
    writer.add_mesh("mesh", np.array([[[0, 0, 0], [1, 0, 0], [0, 1, 0]]], dtype=float),
                    faces=np.array([[[0, 1, 2]]]), global_step=1)
    writer.add_tensor("tensor", np.arange(6, dtype=np.float32).reshape(2, 3), 1)
    writer.add_hparams({"lr": 0.1, "optimizer": "adam"}, {"hparam/accuracy": 0.9}, name="trial")
    writer.add_hparams({"lr": 0.2}, {"hparam/accuracy": 0.8}, run_name="torch_style",
                       hparam_domain_discrete={"lr": [0.1, 0.2]})
    with writer.use_metadata(global_step=7):
        writer.add_scalar("with_metadata", 3.0)
    if importlib.util.find_spec("matplotlib"):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure = plt.figure()
        plt.plot([1, 2, 3])
        writer.add_figure("figure", figure, 1)


def test_is_a_tensorboardx_summary_writer_with_the_torch_extras(tmp_path, writer_env, repo_id):
    with HFSummaryWriter(repo_id, logdir=tmp_path / "run") as writer:
        assert isinstance(writer, tensorboardX.SummaryWriter)
        assert writer.get_logdir() == writer.log_dir == writer.logdir == str(tmp_path / "run")
        for name, _member in inspect.getmembers(tensorboardX.SummaryWriter, inspect.isfunction):
            if not name.startswith("_"):
                assert callable(getattr(writer, name)), name
        for name in ("add_tensor", "get_logdir"):
            assert callable(getattr(writer, name))
        assert writer.repo_id == repo_id and writer.repo_type == "model" and writer.repo_revision == "main"


def test_every_method_reaches_the_hub(tmp_path, hub, writer_env, repo_id):
    logdir = tmp_path / "surface"
    patterns = ["*.tfevents.*", "*projector_config.pbtxt", "*.tsv"]
    with HFSummaryWriter(repo_id, logdir=logdir, commit_every=60, repo_allow_patterns=patterns) as writer:
        _log_everything(writer)
    logged = event_keys(logdir)
    tags = {key[1] for key in logged}
    assert {"loss", "new_style", "double", "weights", "raw", "image", "images", "boxes", "note/text_summary", "audio", "video",

            "pr", "pr_raw", "mesh_1", "mesh_2", "tensor", "with_metadata", "custom_scalars__config__"} <= tags
    assert ("compare/train", "compare", 1) in {(k[0], k[1], k[2]) for k in logged}
    assert ("", "with_metadata", 7) in {(k[0], k[1], k[2]) for k in logged}
    assert ("trial", "_hparams_/experiment") in {(k[0], k[1]) for k in logged}
    assert hub_events(hub, repo_id, tmp_path, path_in_repo="tensorboard/surface") == logged
    files = HfApi(endpoint=hub.endpoint, token=hub.token()).list_repo_files(repo_id)
    assert {"tensorboard/surface/projector_config.pbtxt", "tensorboard/surface/00000/points/tensors.tsv",
            "tensorboard/surface/00000/points/metadata.tsv"} <= set(files)
    assert not uploader_processes(logdir)


def test_export_scalars_and_flush_keep_working(tmp_path, writer_env, repo_id):
    with HFSummaryWriter(repo_id, logdir=tmp_path / "run") as writer:
        writer.add_scalar("a", 1.0, 0)
        writer.flush()
        writer.export_scalars_to_json(str(tmp_path / "scalars.json"))
    assert (tmp_path / "scalars.json").exists()


def test_card_gets_the_tag_once(tmp_path, hub, writer_env, repo_id):
    for attempt in range(2):
        with HFSummaryWriter(repo_id, logdir=tmp_path / f"run{attempt}") as writer:
            writer.add_scalar("a", 1.0, attempt)
    readme = HfApi(endpoint=hub.endpoint, token=hub.token()).hf_hub_download(
        repo_id, "README.md", local_dir=tmp_path / "card"
    )
    assert ModelCard.load(readme).data.tags.count("hf-summary-writer") == 1


def test_logging_from_many_threads_loses_nothing(tmp_path, hub, writer_env, repo_id):
    logdir = tmp_path / "threads"
    with HFSummaryWriter(repo_id, logdir=logdir, commit_every=0.01) as writer:
        def log(thread: int) -> None:
            for step in range(500):
                writer.add_scalar(f"t{thread}", float(step), step)

        threads = [threading.Thread(target=log, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    logged = event_keys(logdir)
    assert len([k for k in logged if k[1].startswith("t")]) == 2000
    assert hub_events(hub, repo_id, tmp_path, path_in_repo="tensorboard/threads") == logged


@pytest.mark.frameworks  # runs in `tox -e frameworks`, which has torch
@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="add_graph needs torch")
def test_add_graph_reaches_the_hub(tmp_path, hub, writer_env, repo_id):
    import torch

    logdir = tmp_path / "graph"
    with HFSummaryWriter(repo_id, logdir=logdir) as writer:
        writer.add_graph(torch.nn.Linear(3, 2), torch.zeros(1, 3))
    assert any(key[1] == "__graph__" for key in event_keys(logdir))
    assert hub_events(hub, repo_id, tmp_path, path_in_repo="tensorboard/graph") == event_keys(logdir)
