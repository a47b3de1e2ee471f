"""The kinds of scalar a training loop logs, for the benchmarks that time `add_scalar` per kind: a Python float,
a numpy scalar, a 0-d numpy array, and (where torch is installed) a 0-d float32 and a 0-d bfloat16 tensor."""

from __future__ import annotations

from collections.abc import Callable
from importlib.util import find_spec

KINDS = ("float", "numpy", "numpy_0d", "tensor", "bfloat16")
TORCH_KINDS = ("tensor", "bfloat16")
LABELS = {"float": "Python float", "numpy": "`numpy.float32`", "numpy_0d": "0-d `numpy` array",
          "tensor": "0-d `torch.Tensor` (float32)", "bfloat16": "0-d `torch.Tensor` (bfloat16)"}


def available_kinds() -> tuple[str, ...]:
    """The kinds this interpreter can make (the tensors need torch)."""
    return KINDS if find_spec("torch") else tuple(kind for kind in KINDS if kind not in TORCH_KINDS)


def maker(kind: str) -> Callable[[float], object]:
    """A function turning a float into a value of `kind` (imports numpy, and torch for the tensor kinds)."""
    import numpy as np

    if kind == "float":
        return float
    if kind == "numpy":
        return np.float32
    if kind == "numpy_0d":
        return lambda x: np.array(x, dtype=np.float32)
    import torch

    dtype = torch.bfloat16 if kind == "bfloat16" else torch.float32
    return lambda x: torch.tensor(x, dtype=dtype)
