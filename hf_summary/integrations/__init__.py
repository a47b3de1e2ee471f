"""Plug-ins for trainers that build their own TensorBoard writer, one module per framework, imported on demand.

- `hf_summary.integrations.lightning`: `HFSummaryLogger`, a PyTorch Lightning `TensorBoardLogger`.
- `hf_summary.integrations.transformers`: `HFSummaryCallback`, a transformers `TensorBoardCallback`.
- `hf_summary.integrations.accelerate`: `HFSummaryTracker`, registered as `log_with="hf_summary"`.

Importing this package imports no framework (nor torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hf_summary.writer import HFSummaryWriter


def writer_class() -> type[HFSummaryWriter]:
    """The writer flavour the frameworks' stock TensorBoard loggers would get: `torch.utils.tensorboard`'s when
    it imports (it needs the `tensorboard` package), else tensorboardX's.

    Example:
        ```py
        >>> from hf_summary.integrations import writer_class
        >>> writer_class().__module__ in ("hf_summary.torch", "hf_summary.writer.summary_writer")
        True
        ```
    """
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        from hf_summary.writer import HFSummaryWriter

        return HFSummaryWriter
    from hf_summary.torch import SummaryWriter

    return SummaryWriter


def purge_from(writer: HFSummaryWriter, step: int) -> None:
    """Mark a restart at `step`: TensorBoard hides the events of earlier processes with a step >= `step`
    (what `purge_step` does, for a writer that already exists).

    Example:
        ```py
        >>> purge_from(writer, trainer_state.global_step + 1)   # right after resuming from a checkpoint
        ```
    """
    from tensorboardX.proto.event_pb2 import Event, SessionLog

    writer._get_file_writer().add_event(Event(session_log=SessionLog(status=SessionLog.START)), int(step))
