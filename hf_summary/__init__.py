"""hf-summary: crash-safe TensorBoard logging to the Hugging Face Hub.

`HFSummaryWriter` is a drop-in tensorboardX `SummaryWriter` whose event files reach a Hub repo through a
journaled uploader process that survives crashes of the training process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hf_summary.writer import HFSummaryWriter

__all__ = ["HFSummaryWriter"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # Imported on first use, so that the uploader child and the CLI do not pull in tensorboardX (and torch).
    if name == "HFSummaryWriter":
        from hf_summary.writer import HFSummaryWriter

        return HFSummaryWriter
    raise AttributeError(f"module 'hf_summary' has no attribute {name!r}")
