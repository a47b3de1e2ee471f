"""PyTorch Lightning: `HFSummaryLogger`, a `TensorBoardLogger` whose experiment is an `HFSummaryWriter`.

Example:
    ```py
    >>> import lightning.pytorch as pl
    >>> from hf_summary.integrations.lightning import HFSummaryLogger
    >>> logger = HFSummaryLogger("logs", repo_id="username/my-run", commit_every=1)
    >>> trainer = pl.Trainer(logger=logger, max_epochs=3)
    ```
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn

from hf_summary.integrations import purge_from, writer_class
from hf_summary.writer import HFSummaryWriter

__all__ = ["HFSummaryLogger"]


class HFSummaryLogger(TensorBoardLogger):
    """Lightning's `TensorBoardLogger` (same arguments, same files) that also pushes the run to a Hub repo.

    Only global rank 0 builds a writer (other ranks get Lightning's dummy experiment). `log_metrics`,
    `log_hyperparams`, `log_graph` and `save` work as in the stock logger; `finalize` closes the writer,
    which waits (up to `close_timeout`) for the final push.

    Restarts: `version=None` becomes the SLURM job id when there is one (as Lightning's default logger does), so
    a requeued job logs into the same `version_<job id>` run; elsewhere pin `version` to resume a run. When
    `fit` resumes from a checkpoint, the step Lightning resumes logging at is marked as a restart, so
    TensorBoard hides what an earlier process logged after that checkpoint (locally or, on a new node, in the
    repo folder the run continues). Lightning handles SIGTERM itself (it stops at the next step
    and calls `finalize`), so the writer installs no SIGTERM handler unless `handle_sigterm=True` is given.

    Args:
        save_dir, name, version, log_graph, default_hp_metric, prefix, sub_dir: as `TensorBoardLogger`.
        repo_id: the Hub repo to push to.
        **kwargs: passed to `HFSummaryWriter` (`commit_every`, `path_in_repo`, `token`, ...). The default
            `path_in_repo` mirrors the local layout: `tensorboard/<name>/<version>`.
    """

    def __init__(
        self,
        save_dir: _PATH,
        *,
        repo_id: str,
        name: str | None = "lightning_logs",
        version: int | str | None = None,
        log_graph: bool = False,
        default_hp_metric: bool = True,
        prefix: str = "",
        sub_dir: _PATH | None = None,
        **kwargs: Any,
    ):
        kwargs.setdefault("handle_sigterm", False)
        super().__init__(
            save_dir,
            name=name,
            version=SLURMEnvironment.job_id() if version is None else version,
            log_graph=log_graph,
            default_hp_metric=default_hp_metric,
            prefix=prefix,
            sub_dir=sub_dir,
            **kwargs,
        )
        self._repo_id = repo_id
        self._resuming: weakref.ref[pl.Trainer] | None = None

    @property
    @rank_zero_experiment
    def experiment(self) -> HFSummaryWriter:
        """The run's `HFSummaryWriter` (torch's flavour when `torch.utils.tensorboard` imports, as stock)."""
        if self._experiment is not None:
            return self._experiment
        kwargs = {"path_in_repo": self._default_path_in_repo(), **self._kwargs}
        self._experiment = writer_class()(self._repo_id, logdir=self.log_dir, **kwargs)
        return self._experiment

    @rank_zero_only
    def log_graph(self, model: pl.LightningModule, input_array: torch.Tensor | None = None) -> None:
        """As stock. Lightning calls it at the start of every `fit`, right after loading the checkpoint: the
        logger notes the trainer, to mark a restart at its first `log_metrics` if the fit resumed."""
        trainer = getattr(model, "_trainer", None)
        self._resuming = None if trainer is None else weakref.ref(trainer)
        super().log_graph(model, input_array)

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if self._resuming is not None and step is not None:
            trainer, self._resuming = self._resuming(), None
            if trainer is not None and trainer.ckpt_path and trainer.state.fn == TrainerFn.FITTING:
                # Lightning's own logging step as restored (it can differ from global_step, and from the step of
                # a user's first log_metrics): what an earlier process logged from there on is replayed now.
                purge_from(self.experiment, trainer.fit_loop.epoch_loop._batches_that_stepped)
        super().log_metrics(metrics, step)

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "_resuming": None}

    def _default_path_in_repo(self) -> str:
        relative = Path(os.path.relpath(self.log_dir, self.save_dir))
        return "/".join(["tensorboard", *(part for part in relative.parent.parts if part not in (".", ".."))])

