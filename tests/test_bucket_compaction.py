"""Compaction on a bucket target: the merge rides a batch (added, then the merged segments deleted); after it
the bucket and the logdir hold the same files and every event once."""

from __future__ import annotations

from collections import Counter

from trainer_kit import assert_repo_matches_logdir

from hf_summary import HFSummaryWriter
from hf_summary.compaction import FANOUT
from hf_summary.verify import iter_events


def test_compaction_rides_a_bucket_batch(tmp_path, writer_env, repo_name):
    bucket_id = f"alice/{repo_name}"
    logdir = tmp_path / "compacted"
    with HFSummaryWriter(bucket_id, logdir=logdir, repo_type="bucket", commit_every=60) as writer:
        for push in range(FANOUT + 2):
            for step in range(10):
                writer.add_scalar("loss", step, push * 10 + step)
            assert writer.push_to_hub(timeout=60)
    assert_repo_matches_logdir(writer_env, bucket_id, logdir, tmp_path / "copy", repo_type="bucket")
    copy = tmp_path / "copy" / "tensorboard" / "compacted"
    counts = Counter((run, e.step) for run, e in iter_events(copy) if e.HasField("summary"))
    assert set(counts.values()) == {1} and len(counts) == (FANOUT + 2) * 10
    assert len(list(copy.glob("*tfevents*"))) < FANOUT + 2  # merged
