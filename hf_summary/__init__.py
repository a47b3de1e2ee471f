"""hf-summary: crash-safe TensorBoard logging to the Hugging Face Hub.

``HFSummaryWriter`` is a drop-in tensorboardX ``SummaryWriter`` whose event files reach a Hub repo through a
journaled uploader process that survives crashes of the training process.
"""

from hf_summary.writer import HFSummaryWriter

__all__ = ["HFSummaryWriter"]
__version__ = "0.1.0"
