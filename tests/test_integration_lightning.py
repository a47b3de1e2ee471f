"""HFSummaryLogger against the real PyTorch Lightning, on a tiny CPU model (tests/lightning_job.py)."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest
from helpers import (
    download_repo,
    event_keys,
    finish_job,
    hub_events,
    preempt_at,
    require_frameworks,
    start_job,
    uploader_processes,
    visible_steps,
)

require_frameworks("torch", "lightning", "tensorboard")

from huggingface_hub import HfApi  # noqa: E402

from hf_summary.verify import iter_events  # noqa: E402

pytestmark = pytest.mark.frameworks

JOB = Path(__file__).with_name("lightning_job.py")


def _config(tmp_path: Path, repo_id: str, **overrides) -> dict:
    return {"save_dir": str(tmp_path / "logs"), "ckpt_dir": str(tmp_path / "ckpt"), "repo_id": repo_id,
            "max_steps": 6, "ckpt_every": 100, **overrides}


def test_a_lightning_run_reaches_the_hub_as_the_stock_logger_writes_it(tmp_path, hub, writer_env, repo_id):
    out, err = finish_job(start_job(JOB, _config(tmp_path, repo_id), tmp_path))
    assert "done" in out, err
    log_dir = tmp_path / "logs" / "lightning_logs" / "version_0"
    keys = event_keys(log_dir)
    runs_and_tags = {(key[0], key[1]) for key in keys}
    assert {("", "train_loss"), ("", "hp_metric"), ("", "_hparams_/experiment"), ("", "__graph__"),
            ("pair_a", "pair"), ("pair_b", "pair")} <= runs_and_tags  # torch's add_scalars naming, as stock
    assert sorted(visible_steps(log_dir, "", "train_loss")) == list(range(6))
    assert "lr: 0.1" in (log_dir / "hparams.yaml").read_text()
    assert hub_events(hub, repo_id, tmp_path, path_in_repo="tensorboard/lightning_logs/version_0") == keys
    assert not uploader_processes(log_dir)


def test_a_ddp_run_on_two_processes_logs_once_from_rank_zero(tmp_path, hub, writer_env, repo_id):
    """Lightning's own DDP launcher on 2 CPU processes: rank 0 writes and pushes the run, rank 1 gets a dummy
    experiment and starts no uploader."""
    config = _config(tmp_path, repo_id, devices=2, strategy="ddp")
    job = start_job(JOB, config, tmp_path, {"OMP_NUM_THREADS": "1"})
    out, err = finish_job(job, timeout=300)
    assert job.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
    log_dir = tmp_path / "logs" / "lightning_logs" / "version_0"
    assert sorted(line for line in out.splitlines() if line.startswith("done")) == [
        f"done {log_dir} rank 0 writer hf_summary.torch.SummaryWriter",
        f"done {log_dir} rank 1 writer lightning.fabric.loggers.logger._DummyExperiment",
    ]
    keys = event_keys(log_dir)
    assert sorted(visible_steps(log_dir, "", "train_loss")) == list(range(6))
    assert hub_events(hub, repo_id, tmp_path, path_in_repo="tensorboard/lightning_logs/version_0") == keys
    assert not uploader_processes(log_dir)


def test_a_preempted_job_requeued_on_a_new_node_continues_the_run_in_the_repo(tmp_path, hub, writer_env, repo_id):
    """SIGTERM: Lightning stops after the step and finalizes, which pushes. The requeued job (same SLURM job id)
    runs on a new node (an empty logdir; checkpoints on shared storage) and resumes from the last checkpoint: it
    continues the same run in the repo folder, and what the first one logged after that checkpoint is hidden by
    the restart mark, so every step shows once on the Hub."""
    slurm = {"SLURM_JOB_ID": "4242"}
    config = _config(tmp_path, repo_id, max_steps=16, ckpt_every=4, sleep=0.3)
    first = start_job(JOB, config, tmp_path, slurm)
    try:
        preempt_at(first, "step 9")
    finally:
        out, err = finish_job(first)
    assert "Received SIGTERM" in err and "done" not in out, err  # Lightning's SIGTERMException is a SystemExit
    log_dir = tmp_path / "logs" / "lightning_logs" / "version_4242"
    path_in_repo = "tensorboard/lightning_logs/version_4242"
    assert hub_events(hub, repo_id, tmp_path, path_in_repo=path_in_repo) == event_keys(log_dir)
    assert 9 <= max(visible_steps(log_dir, "", "train_loss")) < 15

    import torch

    resumed_at = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)["global_step"]
    assert resumed_at == 8
    shutil.rmtree(tmp_path / "logs")  # the new node's logdir starts empty
    resume = {**config, "sleep": 0.0, "ckpt_path": str(tmp_path / "ckpt" / "last.ckpt")}
    out, err = finish_job(start_job(JOB, resume, tmp_path, slurm))
    assert f"done {log_dir}" in out, err
    on_hub = download_repo(hub.endpoint, hub.token(), repo_id, tmp_path / "hub") / path_in_repo
    assert visible_steps(on_hub, "", "train_loss") == list(range(16))
    assert [event.step for _, event in iter_events(on_hub) if event.HasField("session_log")] == [resumed_at]
    assert event_keys(log_dir) <= event_keys(on_hub)
    assert not uploader_processes(log_dir)


def test_only_rank_zero_builds_a_writer(tmp_path, monkeypatch, hub, writer_env, repo_id):
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    from hf_summary.integrations.lightning import HFSummaryLogger

    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger = HFSummaryLogger(tmp_path / "logs", repo_id=repo_id, version=0)
    logger.log_hyperparams({"lr": 0.1})
    logger.log_metrics({"loss": 1.0}, step=0)
    logger.experiment.add_scalar("direct", 1.0, 0)
    logger.finalize("success")
    assert not (tmp_path / "logs").exists()
    assert not HfApi(endpoint=hub.endpoint, token=hub.token()).repo_exists(repo_id)


def test_slurm_auto_requeue_finalizes_requeues_and_the_requeued_job_resumes(tmp_path, hub, writer_env, repo_id):
    """Lightning's SLURM handling: SIGUSR1 finalizes the logger (a push), saves an HPC checkpoint and runs
    ``scontrol requeue``; SIGTERM then stops the job. The requeued job (same job id) resumes from the HPC
    checkpoint on its own, in the same run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.log"}\n')
    scontrol.chmod(0o755)
    slurm = {"SLURM_JOB_ID": "4243", "SLURM_JOB_NAME": "train", "SLURM_NTASKS": "1", "SLURM_NTASKS_PER_NODE": "1",
             "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "127.0.0.1",
             "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    config = _config(tmp_path, repo_id, max_steps=16, sleep=0.3)
    first = start_job(JOB, config, tmp_path, slurm)
    try:
        preempt_at(first, "step 5", signal.SIGUSR1)
        preempt_at(first, "step 9")
    finally:
        out, err = finish_job(first)
    assert "done" not in out and "Received SIGTERM" in err, err
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4243"]
    log_dir = tmp_path / "logs" / "lightning_logs" / "version_4243"
    path_in_repo = "tensorboard/lightning_logs/version_4243"
    assert hub_events(hub, repo_id, tmp_path, path_in_repo=path_in_repo) == event_keys(log_dir)

    import torch

    (hpc_checkpoint,) = tmp_path.glob("hpc_ckpt_*.ckpt")
    resumed_at = torch.load(hpc_checkpoint, weights_only=False)["global_step"]
    out, err = finish_job(start_job(JOB, {**config, "sleep": 0.0}, tmp_path, slurm))
    assert f"done {log_dir}" in out, err
    # The HPC checkpoint is taken in the middle of a step: Lightning resumes its logging step one past it (and
    # so logs one step more), and the restart mark follows Lightning's step, not global_step.
    (restart,) = [event.step for _, event in iter_events(log_dir) if event.HasField("session_log")]
    assert restart == resumed_at + 1
    assert visible_steps(log_dir, "", "train_loss") == list(range(17))
    assert hub_events(hub, repo_id, tmp_path, path_in_repo=path_in_repo) == event_keys(log_dir)
    assert not uploader_processes(log_dir)
