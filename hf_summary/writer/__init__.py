from hf_summary.writer.summary_writer import EXISTING_RUN_CHOICES, ExistingRunError, HFSummaryWriter

__all__ = ["EXISTING_RUN_CHOICES", "ExistingRunError", "HFSummaryWriter"]
