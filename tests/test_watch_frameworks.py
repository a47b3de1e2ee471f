"""`hf-summary watch` against the writers it was made for, the real ones on their CPU builds (tests/foreign_job.py):
Keras 3's ``TensorBoard`` callback, ``tf.summary``, and JAX/Flax through CLU's and Flax's TensorBoard writers.
What the Hub holds is checked twice: record by record (each event exactly once), and through TensorBoard's own
reader, which must show the same runs, tags, steps and values on the downloaded repo as on the job's logdir."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import (
    REPO_ROOT,
    download_repo,
    finish_job,
    require_frameworks,
    start_job,
    uploader_processes,
    wait_until,
)
from trainer_kit import hub_env, pid_gone

require_frameworks("tensorflow", "keras", "jax", "flax", "clu", "tensorboard", env="foreign")

from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer  # noqa: E402

from hf_summary.tailcopy import parse_repo_copy_name  # noqa: E402
from hf_summary.verify import iter_events  # noqa: E402

pytestmark = pytest.mark.foreign

JOB = Path(__file__).with_name("foreign_job.py")
JOB_TIMEOUT_S = 300


def _config(tmp_path: Path, repo_id: str, framework: str, **overrides) -> dict:
    return {"framework": framework, "logdir": str(tmp_path / "logs" / framework), "repo_id": repo_id, "epochs": 3,
            **overrides}


def _records(root: Path) -> collections.Counter:
    """Every record under ``root`` with how many times it is there (a set would hide a doubled event)."""
    return collections.Counter((run, event.SerializeToString(deterministic=True)) for run, event in iter_events(root))


def tensorboard_view(root: Path) -> dict:
    """What TensorBoard's Python reader shows of ``root``: for every run and tag of every kind, the (step, wall
    time, value) of each event, nothing sampled away."""
    multiplexer = EventMultiplexer(size_guidance={kind: 0 for kind in (
        "compressedHistograms", "images", "audio", "scalars", "histograms", "tensors")})
    multiplexer.AddRunsFromDirectory(str(root)).Reload()
    view = {}
    for run, tags in multiplexer.Runs().items():
        accumulator = multiplexer.GetAccumulator(run)
        for tag in tags["scalars"]:
            view[run, "scalars", tag] = [(e.step, e.wall_time, e.value) for e in accumulator.Scalars(tag)]
        for tag in tags["tensors"]:
            view[run, "tensors", tag] = [(e.step, e.wall_time, e.tensor_proto.SerializeToString())
                                         for e in accumulator.Tensors(tag)]
        for tag in tags["histograms"]:
            view[run, "histograms", tag] = [(e.step, e.wall_time, str(e.histogram_value))
                                            for e in accumulator.Histograms(tag)]
        for tag in tags["images"]:
            view[run, "images", tag] = [(e.step, e.wall_time, e.encoded_image_string) for e in accumulator.Images(tag)]
        for tag in tags["run_metadata"]:
            view[run, "run_metadata", tag] = accumulator.RunMetadata(tag).SerializeToString()
        if tags["graph"]:
            view[run, "graph", ""] = accumulator.Graph().SerializeToString()
    return view


def _hub_folder(hub, repo_id: str, framework: str, tmp_path: Path) -> Path:
    return download_repo(hub.endpoint, hub.token(), repo_id, tmp_path / "hub") / "tensorboard" / framework


def _assert_the_hub_shows_what_the_logdir_shows(hub, repo_id: str, logdir: Path, tmp_path: Path) -> tuple[Path, dict]:
    on_hub = _hub_folder(hub, repo_id, logdir.name, tmp_path)
    local = _records(logdir)
    assert local, "the framework got nothing to the disk"
    assert _records(on_hub) == local  # every record once
    assert all(parse_repo_copy_name(path.name) for path in on_hub.rglob("*tfevents*"))
    view = tensorboard_view(logdir)
    assert tensorboard_view(on_hub) == view
    wait_until(lambda: not uploader_processes(logdir), timeout=30, message="every uploader to exit")
    return on_hub, view


def _run(tmp_path: Path, hub, config: dict) -> str:
    job = start_job(JOB, config, tmp_path, hub_env(hub))
    out, err = finish_job(job, timeout=JOB_TIMEOUT_S)
    assert job.returncode == 0, f"stdout:\n{out}\nstderr:\n{err[-4000:]}"
    assert "watcher exit 0" in out, err[-4000:]
    return out


def _steps(view: dict, run: str, kind: str, tag: str) -> list[int]:
    return [entry[0] for entry in view[run, kind, tag]]


def test_keras_fit_with_the_tensorboard_callback_reaches_the_hub_once(tmp_path, hub, repo_id):
    config = _config(tmp_path, repo_id, "keras")
    _run(tmp_path, hub, config)
    _, view = _assert_the_hub_shows_what_the_logdir_shows(hub, repo_id, Path(config["logdir"]), tmp_path)
    epochs, batches = list(range(3)), list(range(1, 13))  # 32 samples in batches of 8: 4 per epoch, counted from 1
    assert _steps(view, "train", "tensors", "epoch_loss") == epochs
    assert _steps(view, "validation", "tensors", "epoch_loss") == epochs
    assert _steps(view, "train", "tensors", "batch_loss") == batches
    assert _steps(view, "validation", "tensors", "evaluation_loss_vs_iterations") == [4, 8, 12]
    for layer in ("dense", "dense_1"):
        for weight in ("kernel", "bias"):
            assert _steps(view, "train", "tensors", f"sequential/{layer}/{weight}/histogram") == epochs
    assert _steps(view, "train", "tensors", "keras") == [0]  # the graph: Keras 3 logs its model config


def test_keras_preempted_mid_fit_loses_nothing_keras_flushed(tmp_path, hub, repo_id):
    """A job-wide SIGTERM (the scheduler signals every process of the job: trainer, watcher, uploader) while
    ``fit`` runs: Keras dies at once, and every record it got to the disk is on the Hub, once."""
    config = _config(tmp_path, repo_id, "keras", epochs=40, sleep=0.3)
    job = start_job(JOB, config, tmp_path, hub_env(hub))
    try:
        watcher = int(job.stdout.readline().split()[1])
        for line in job.stdout:
            if line.strip() == "epoch 4":
                break
        logdir = Path(config["logdir"])
        for process in [*uploader_processes(logdir)]:
            process.send_signal(signal.SIGTERM)
        os.kill(watcher, signal.SIGTERM)
        job.send_signal(signal.SIGTERM)
    finally:
        out, err = finish_job(job, timeout=JOB_TIMEOUT_S)
    assert job.returncode == -signal.SIGTERM, err[-4000:]
    wait_until(lambda: pid_gone(watcher), timeout=120, interval=0.2, message="the watcher to push and exit")
    _, view = _assert_the_hub_shows_what_the_logdir_shows(hub, repo_id, logdir, tmp_path)
    assert len(_steps(view, "train", "tensors", "batch_loss")) >= 4 * 4  # at least the epochs before the signal


def test_tf_summary_custom_loop_with_images_text_and_a_traced_graph(tmp_path, hub, repo_id):
    config = _config(tmp_path, repo_id, "tf_summary")
    _run(tmp_path, hub, config)
    _, view = _assert_the_hub_shows_what_the_logdir_shows(hub, repo_id, Path(config["logdir"]), tmp_path)
    for tag in ("loss", "sample", "note", "weights"):
        assert _steps(view, ".", "tensors", tag) == [0, 1, 2], tag
    assert _steps(view, ".", "tensors", "step_fn") == [0]  # trace_export: the traced graph, as run metadata


@pytest.mark.parametrize("framework", ["clu", "flax"])
def test_a_flax_loop_logging_through_clu_and_flax_writers(tmp_path, hub, repo_id, framework):
    config = _config(tmp_path, repo_id, framework)
    _run(tmp_path, hub, config)
    _, view = _assert_the_hub_shows_what_the_logdir_shows(hub, repo_id, Path(config["logdir"]), tmp_path)
    for tag in ("loss", "lr", "kernel", "kernel_image", "note"):
        assert any(t == tag and _steps(view, ".", kind, t) == [0, 1, 2] for _, kind, t in view), (tag, list(view))


def test_importing_the_watcher_imports_no_framework():
    code = ("import sys, hf_summary.watch; print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'tensorflow', 'keras', 'jax', 'flax', 'clu', 'torch', 'tensorboard'}))")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
