"""accelerate: `HFSummaryTracker`, registered under the name `"hf_summary"` when this module is imported.

Example:
    ```py
    >>> import hf_summary.integrations.accelerate  # registers log_with="hf_summary"
    >>> from accelerate import Accelerator
    >>> accelerator = Accelerator(log_with="hf_summary", project_dir="runs")
    >>> accelerator.init_trackers("my-project", config={"lr": 1e-3},
    ...                           init_kwargs={"hf_summary": {"repo_id": "username/my-run"}})
    >>> accelerator.log({"loss": 0.5}, step=1)
    >>> accelerator.end_training()
    ```
"""

from __future__ import annotations

import os
import time
from typing import Any

import yaml
from accelerate.tracking import GeneralTracker, on_main_process, register_tracker_class
from accelerate.utils import listify

from hf_summary.integrations import writer_class
from hf_summary.writer import HFSummaryWriter

__all__ = ["HFSummaryTracker"]


class HFSummaryTracker(GeneralTracker):
    """accelerate's `TensorBoardTracker` (same layout: `<logging_dir>/<run_name>`, same events), written by
    an `HFSummaryWriter` on the main process only.

    `log` does not flush after every call as the stock tracker does: each event is already in the OS when it
    returns. `finish` (`accelerator.end_training()`) closes the writer, which waits (up to `close_timeout`)
    for the final push.

    Args:
        run_name: `init_trackers`' project name; the run directory is `logging_dir/run_name`.
        logging_dir: the accelerator's `project_dir` (or `logging_dir`).
        repo_id: the Hub repo to push to (`init_kwargs={"hf_summary": {"repo_id": ...}}`).
        **writer_kwargs: passed to `HFSummaryWriter` (`commit_every`, `path_in_repo`, `token`, ...).
    """

    name = "hf_summary"
    requires_logging_directory = True

    def __init__(
        self, run_name: str, logging_dir: str | os.PathLike[str], repo_id: str | None = None, **writer_kwargs: Any
    ):
        super().__init__()
        if repo_id is None:
            raise TypeError(
                'HFSummaryTracker needs a repo_id: pass init_kwargs={"hf_summary": {"repo_id": "username/my-run"}} '
                "to accelerator.init_trackers(), or log_with=HFSummaryTracker(run_name, logging_dir, repo_id=...)"
            )
        self.run_name = run_name
        self.logging_dir = os.path.join(os.fspath(logging_dir), run_name)
        self._repo_id = repo_id
        self._writer_kwargs = writer_kwargs
        self.writer: HFSummaryWriter | None = None

    @on_main_process
    def start(self) -> None:
        if self.writer is None:
            self.writer = writer_class()(self._repo_id, logdir=self.logging_dir, **self._writer_kwargs)

    @property
    def tracker(self) -> HFSummaryWriter | None:
        return self.writer

    @on_main_process
    def store_init_configuration(self, values: dict[str, Any]) -> None:
        """The hyperparameters as an `add_hparams` sub-run, and `hparams.yml` beside its events."""
        sub_run = str(time.time())
        self.writer.add_hparams(values, metric_dict={}, run_name=sub_run)
        os.makedirs(os.path.join(self.logging_dir, sub_run), exist_ok=True)
        with open(os.path.join(self.logging_dir, sub_run, "hparams.yml"), "w") as outfile:
            yaml.dump(values, outfile)

    @on_main_process
    def log(self, values: dict[str, Any], step: int | None = None, **kwargs: Any) -> None:
        """Numbers (and one-element tensors) as scalars, strings as text, dicts as `add_scalars`; `kwargs` go
        to those methods."""
        for key, value in listify(values).items():
            if isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, global_step=step, **kwargs)
            elif isinstance(value, str):
                self.writer.add_text(key, value, global_step=step, **kwargs)
            elif isinstance(value, dict):
                self.writer.add_scalars(key, value, global_step=step, **kwargs)

    @on_main_process
    def finish(self) -> None:
        self.writer.close()


register_tracker_class(HFSummaryTracker)
