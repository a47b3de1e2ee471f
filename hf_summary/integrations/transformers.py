"""transformers: `HFSummaryCallback`, a `TensorBoardCallback` that pushes the run to a Hub repo.

Example:
    ```py
    >>> from transformers import Trainer, TrainingArguments
    >>> from hf_summary.integrations.transformers import HFSummaryCallback
    >>> args = TrainingArguments("out", report_to="none", logging_steps=10)
    >>> trainer = Trainer(model=model, args=args, train_dataset=dataset,
    ...                   callbacks=[HFSummaryCallback("username/my-run", commit_every=1)])
    >>> trainer.train()
    ```
"""

from __future__ import annotations

import os
from typing import Any

from transformers import TrainerControl, TrainerState, TrainingArguments
from transformers.integrations import TensorBoardCallback

from hf_summary.integrations import purge_from, writer_class

__all__ = ["HFSummaryCallback"]


class HFSummaryCallback(TensorBoardCallback):
    """The stock `TensorBoardCallback` (same events: `on_log` scalars and texts, the `args` and
    `model_config` texts at each `train()`), written by an `HFSummaryWriter` on the main process only.

    Unlike the stock callback, one writer serves every `train()` call: `on_train_end` closes it, which waits
    (up to `close_timeout`) for the final push, and the next `train()` reopens the same writer and run.
    The run directory is stable across restarts: `logdir`, else `TENSORBOARD_LOGGING_DIR`, else
    `<output_dir>/runs/<run_name or "hf_summary">` (the stock default changes with every start). A
    `train(resume_from_checkpoint=...)` marks a restart after the checkpoint's step, so TensorBoard hides what
    an earlier process logged after that checkpoint.

    Args:
        repo_id: the Hub repo to push to.
        logdir: the run directory (see above).
        **writer_kwargs: passed to `HFSummaryWriter` (`commit_every`, `path_in_repo`, `token`, ...).
    """

    def __init__(self, repo_id: str, *, logdir: str | os.PathLike[str] | None = None, **writer_kwargs: Any):
        super().__init__()
        self._SummaryWriter = writer_class()
        self._repo_id = repo_id
        self._writer_kwargs = writer_kwargs
        if logdir is not None:
            self.logging_dir = os.fspath(logdir)

    def _init_summary_writer(self, args: TrainingArguments) -> None:
        self.tb_writer = self._SummaryWriter(self._repo_id, logdir=self.logging_dir, **self._writer_kwargs)

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not state.is_world_process_zero:
            return
        if self.logging_dir is None:
            self.logging_dir = os.path.join(args.output_dir, "runs", args.run_name or "hf_summary")
        super().on_train_begin(args, state, control, **kwargs)
        if state.global_step > 0:  # resumed from a checkpoint: what was logged after it is redone now
            purge_from(self.tb_writer, state.global_step + 1)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.tb_writer is not None:
            self.tb_writer.close()
