"""HFSummaryTracker against the real accelerate, on a tiny CPU loop (tests/accelerate_job.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import (
    event_keys,
    finish_job,
    hub_events,
    require_frameworks,
    start_job,
    uploader_processes,
    visible_steps,
)

require_frameworks("torch", "accelerate", "tensorboard")

pytestmark = pytest.mark.frameworks

JOB = Path(__file__).with_name("accelerate_job.py")


def test_log_with_hf_summary_on_two_processes_logs_once_from_the_main_one(tmp_path, hub, writer_env, repo_id):
    config = {"project_dir": str(tmp_path / "runs"), "repo_id": repo_id, "steps": 5}
    job = start_job(JOB, config, tmp_path, {"OMP_NUM_THREADS": "1"},
                    launcher=("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"))
    out, err = finish_job(job, timeout=300)
    assert job.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
    assert sorted(line for line in out.splitlines() if line.startswith("done")) == [
        "done rank 0 writer hf_summary.torch", "done rank 1 writer accelerate.tracking",  # a blank tracker
    ]
    log_dir = tmp_path / "runs" / "proj"
    keys = event_keys(log_dir)
    assert visible_steps(log_dir, "", "loss") == [0, 1, 2, 3, 4]
    assert visible_steps(log_dir, "pair_a", "pair") == [0, 1, 2, 3, 4]  # torch's add_scalars naming, as stock
    assert len([key for key in keys if key[1] == "note/text_summary"]) == 5
    (hparams_run,) = {key[0] for key in keys if key[1] == "_hparams_/experiment"}
    assert "optimizer: sgd" in (log_dir / hparams_run / "hparams.yml").read_text()
    assert hub_events(hub, repo_id, tmp_path, path_in_repo="tensorboard/proj") == keys
    assert not uploader_processes(log_dir)


def test_a_missing_repo_id_says_where_to_put_it(tmp_path):
    from hf_summary.integrations.accelerate import HFSummaryTracker

    with pytest.raises(TypeError, match='init_kwargs=\\{"hf_summary": \\{"repo_id"'):
        HFSummaryTracker("proj", tmp_path)
