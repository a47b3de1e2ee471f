"""`HFSummaryWriter` with the `torch.utils.tensorboard` behaviour, for code that came from torch.

The two `SummaryWriter` families share a surface but not every result. This one does what torch's does where
they differ: `add_scalars` names its sub-runs `main_tag_tag` (`/` in `main_tag` becomes `_`) instead of
tensorboardX's `main_tag/tag`, keeps tags as given (tensorboardX cleans them), and makes image pixels as torch
does (in float32, clipped to 0..255; tensorboardX wraps integer images around). `HFSummaryWriter` itself keeps
tensorboardX's behaviour. The plug-ins in `hf_summary.integrations` pick this flavour whenever
`torch.utils.tensorboard` is importable, as the frameworks' own TensorBoard loggers do.

Example:
    ```py
    >>> from hf_summary.torch import SummaryWriter
    >>> with SummaryWriter(repo_id="username/my-run", logdir="runs/exp1") as writer:
    ...     writer.add_scalars("loss", {"train": 0.5, "eval": 0.6}, 0)   # runs/exp1/loss_train, runs/exp1/loss_eval
    ```
"""

from __future__ import annotations

import time

from tensorboardX.proto.summary_pb2 import Summary
from tensorboardX.x2num import make_np

from hf_summary._tensors import numpy_arguments, scalar_number, torch_pixels
from hf_summary.writer import HFSummaryWriter

__all__ = ["SummaryWriter"]


class SummaryWriter(HFSummaryWriter):
    """`HFSummaryWriter` (same constructor) behaving as `torch.utils.tensorboard.SummaryWriter`."""

    _CLEAN_TAGS = False

    def _add_simple_scalar(self, tag: str, value, global_step, walltime, display_name: str, description: str) -> None:
        """torch's `add_scalar`: the tag as given (tensorboardX's `display_name` and `summary_description`
        still work)."""
        if display_name or description:
            super()._add_simple_scalar(tag, value, global_step, walltime, display_name, description)
            return
        self._get_file_writer().add_summary(_simple_value(tag, value), global_step, walltime)

    def add_scalars(self, main_tag: str, tag_scalar_dict: dict, global_step=None, walltime=None) -> None:
        """Each tag goes to its own sub-run `logdir/<main_tag with '/' as '_'>_<tag>`, as in torch."""
        walltime = time.time() if walltime is None else walltime
        fw_logdir = self._get_file_writer().get_logdir()
        for tag, scalar_value in tag_scalar_dict.items():
            value = scalar_number(scalar_value)
            writer = self._sub_run_writer(f"{fw_logdir}/{main_tag.replace('/', '_')}_{tag}")
            if not self._add_lean_scalar(writer, main_tag, value, global_step, walltime):
                writer.add_summary(_simple_value(main_tag, value), global_step, walltime)

    @numpy_arguments
    def add_image(self, tag: str, img_tensor, *args, **kwargs) -> None:
        """Pixels as torch makes them (`torch_pixels`)."""
        super().add_image(tag, torch_pixels(img_tensor), *args, **kwargs)

    @numpy_arguments
    def add_images(self, tag: str, img_tensor, *args, **kwargs) -> None:
        """Pixels as torch makes them (`torch_pixels`)."""
        super().add_images(tag, torch_pixels(img_tensor), *args, **kwargs)

    @numpy_arguments
    def add_image_with_boxes(self, tag: str, img_tensor, *args, **kwargs) -> None:
        """Pixels as torch makes them (`torch_pixels`)."""
        super().add_image_with_boxes(tag, torch_pixels(img_tensor), *args, **kwargs)


def _simple_value(tag: str, value: object) -> Summary:
    array = make_np(value).squeeze()
    if array.ndim != 0:
        raise ValueError(f"a scalar must hold one element, got shape {make_np(value).shape} for tag {tag!r}")
    return Summary(value=[Summary.Value(tag=tag, simple_value=float(array))])
