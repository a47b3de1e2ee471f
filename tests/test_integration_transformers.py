"""HFSummaryCallback against the real transformers Trainer, on a tiny CPU GPT-2 (tests/transformers_job.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import (
    event_keys,
    finish_job,
    hub_events,
    preempt_at,
    require_frameworks,
    start_job,
    uploader_processes,
    visible_steps,
    wait_until,
)

require_frameworks("torch", "transformers", "tensorboard")

from hf_summary.segments import parse_segment_sequence  # noqa: E402
from hf_summary.verify import iter_events  # noqa: E402

pytestmark = pytest.mark.frameworks

JOB = Path(__file__).with_name("transformers_job.py")
PATH_IN_REPO = "tensorboard/hf_summary"  # the default run dir is <output_dir>/runs/hf_summary


def _config(tmp_path: Path, repo_id: str, **overrides) -> dict:
    return {"output_dir": str(tmp_path / "out"), "repo_id": repo_id, "max_steps": 4, **overrides}


def test_every_train_call_is_pushed_by_the_same_writer(tmp_path, hub, writer_env, repo_id):
    out, err = finish_job(start_job(JOB, _config(tmp_path, repo_id, train_calls=2), tmp_path))
    log_dir = tmp_path / "out" / "runs" / "hf_summary"
    assert f"done {log_dir}" in out, err
    files = [path for path in log_dir.rglob("*tfevents*") if ".hf_summary" not in path.parts]
    assert files and all(parse_segment_sequence(path.name) is not None for path in files)  # no plain writer's
    keys = event_keys(log_dir)
    assert visible_steps(log_dir, "", "train/loss") == [1, 2, 3, 4, 1, 2, 3, 4]
    texts = [key[1] for key in keys if key[1].endswith("text_summary")]
    assert sorted(texts) == ["args/text_summary"] * 2 + ["model_config/text_summary"] * 2
    assert hub_events(hub, repo_id, tmp_path, path_in_repo=PATH_IN_REPO) == keys
    assert not uploader_processes(log_dir)


def test_a_preempted_run_resumed_from_its_checkpoint_continues_the_same_run(tmp_path, hub, writer_env, repo_id):
    """SIGTERM after step 5 is logged (checkpoint at 3): the writer seals and the uploader pushes; the restart resumes
    from checkpoint-3 into the same run dir and marks the restart at step 4, so every step shows once."""
    config = _config(tmp_path, repo_id, max_steps=8, save_steps=3, sleep=0.3)
    first = start_job(JOB, config, tmp_path)
    try:
        preempt_at(first, "step 6")  # printed before step 6 is logged
    finally:
        finish_job(first)
    log_dir = tmp_path / "out" / "runs" / "hf_summary"
    wait_until(lambda: not uploader_processes(log_dir), 60, message="the uploader's final push")
    assert hub_events(hub, repo_id, tmp_path, path_in_repo=PATH_IN_REPO) == event_keys(log_dir)
    assert 5 <= max(visible_steps(log_dir, "", "train/loss")) < 8

    resume = {**config, "sleep": 0.0, "resume": str(tmp_path / "out" / "checkpoint-3")}
    out, err = finish_job(start_job(JOB, resume, tmp_path))
    assert f"done {log_dir}" in out, err
    assert visible_steps(log_dir, "", "train/loss") == list(range(1, 9))
    assert [event.step for _, event in iter_events(log_dir) if event.HasField("session_log")] == [4]
    assert hub_events(hub, repo_id, tmp_path, path_in_repo=PATH_IN_REPO) == event_keys(log_dir)


def test_sigterm_with_transformers_jit_checkpoint_stops_cleanly_pushes_and_resumes(tmp_path, hub, writer_env, repo_id):
    """``enable_jit_checkpoint``: transformers' SIGTERM handler is installed first, ours chains to it at once; the
    Trainer checkpoints and stops, ``on_train_end`` pushes, and the restart resumes from that checkpoint."""
    config = _config(tmp_path, repo_id, max_steps=40, sleep=0.3, jit=True)
    first = start_job(JOB, config, tmp_path)
    try:
        preempt_at(first, "step 4")
    finally:
        out, err = finish_job(first)
    log_dir = tmp_path / "out" / "runs" / "hf_summary"
    assert f"done {log_dir}" in out, err  # a clean stop, not a death by signal
    (checkpoint,) = (tmp_path / "out").glob("checkpoint-*")
    stopped_at = int(checkpoint.name.rpartition("-")[2])
    assert 4 <= stopped_at < 40
    logged = visible_steps(log_dir, "", "train/loss")
    assert logged == list(range(1, len(logged) + 1)) and len(logged) in (stopped_at, stopped_at + 1)  # the
    # checkpoint may be taken before the optimizer step of the last step logged (on_pre_optimizer_step)
    assert hub_events(hub, repo_id, tmp_path, path_in_repo=PATH_IN_REPO) == event_keys(log_dir)

    out, err = finish_job(start_job(JOB, {**config, "sleep": 0.0, "resume": str(checkpoint)}, tmp_path))
    assert f"done {log_dir}" in out, err
    assert visible_steps(log_dir, "", "train/loss") == list(range(1, 41))
    assert hub_events(hub, repo_id, tmp_path, path_in_repo=PATH_IN_REPO) == event_keys(log_dir)
    assert not uploader_processes(log_dir)
