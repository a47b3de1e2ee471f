"""What training loops log, turned into Python numbers and numpy arrays as `torch.utils.tensorboard` turns it.

torch tensors of any dtype (`bfloat16`, which numpy lacks, becomes `float16` first, as torch's writer does;
detached; copied to the host once), numpy scalars and arrays. torch is never imported here: a value can only be a
torch tensor if the program imported torch, so `sys.modules` tells.
"""

from __future__ import annotations

import functools
import inspect
import math
import sys
from collections.abc import Callable
from typing import TypeVar

import numpy as np

_PLAIN_NUMBERS = (float, int)
_NUMPY_NUMBERS = frozenset(
    kind for kind in set(np.sctypeDict.values()) if issubclass(kind, (np.floating, np.integer, np.bool_))
)
_REAL_KINDS = "fiub"  # numpy dtype kinds float() takes: float, signed, unsigned, bool
_FLOAT16_SMALLEST_NORMAL = 2.0**-14
_FLOAT16_OVERFLOW = 65520.0  # half-way between float16's largest finite value and the next step: rounds to inf
_Method = TypeVar("_Method", bound=Callable)


def _torch():
    """The torch module if the program imported it (and its `Tensor` is defined yet), else None."""
    torch = sys.modules.get("torch")
    return torch if torch is not None and hasattr(torch, "Tensor") else None


def to_numpy(value: object) -> object:
    """`value` as torch's writer hands it to numpy: a torch tensor becomes a numpy array (detached, on the
    host, `bfloat16` as `float16`); anything else comes back as it is."""
    torch = _torch()
    if torch is None or not isinstance(value, torch.Tensor):
        return value
    if value.dtype == torch.bfloat16:
        value = value.to(torch.float16)
    return value.detach().cpu().numpy()


def scalar_number(value: object) -> object:
    """A one-element `value` (a numpy scalar or array, a torch tensor of a real dtype) as the Python number
    the writers would make of it, with one device-to-host copy; anything else as `to_numpy` gives it (for
    the writer's own path to take or refuse)."""
    kind = type(value)
    if kind in _PLAIN_NUMBERS:
        return value
    if kind in _NUMPY_NUMBERS:
        return float(value)
    if kind is np.ndarray:
        return float(value.item()) if value.size == 1 and value.dtype.kind in _REAL_KINDS else value
    torch = _torch()
    if torch is None or not isinstance(value, torch.Tensor):
        return value
    if value.numel() != 1 or value.is_complex() or value.is_meta:
        return to_numpy(value)
    number = float(value.item())  # the one copy to the host (item(): no warning when it requires grad)
    return _bfloat16_as_float16(number) if value.dtype == torch.bfloat16 else number


def _bfloat16_as_float16(number: float) -> float:
    """A bfloat16 value rounded to float16 as torch's `.to(torch.float16)` rounds it (to nearest, ties to even;
    beyond float16's range, infinity), here on the host rather than in another call into torch."""
    magnitude = abs(number)
    if _FLOAT16_SMALLEST_NORMAL <= magnitude < _FLOAT16_OVERFLOW:
        return number  # float16 holds every bfloat16 value there (8 significant bits of its 11)
    if magnitude >= _FLOAT16_OVERFLOW:
        return math.copysign(math.inf, number)
    return float(np.float16(number))


def hparam_value(value: object) -> object:
    """An hparam value as torch's writer takes it: a torch tensor is the number of its first element."""
    converted = to_numpy(value)
    if converted is value:
        return value
    return float(np.asarray(converted).reshape(-1)[0])


def tensor_array(value: object) -> tuple[np.ndarray, str]:
    """`add_tensor`'s view of `value`: its elements as a numpy array, and the name of its dtype as torch names
    it (`bfloat16` and `complex32` come as `float32` and `complex64`, which hold them exactly)."""
    torch = _torch()
    if torch is None or not isinstance(value, torch.Tensor):
        array = np.asarray(value)
        return array, array.dtype.name
    name = str(value.dtype).removeprefix("torch.")
    if value.dtype == torch.bfloat16:
        value = value.float()
    elif value.dtype == torch.complex32:
        value = value.to(torch.complex64)
    return value.detach().cpu().numpy(), name


def torch_pixels(image: object) -> object:
    """An image array as torch's writer turns it into pixels: `uint8` as it is, any other dtype scaled by 255,
    in `float32`, clipped to 0..255 (tensorboardX neither clips nor computes in `float32`)."""
    if not isinstance(image, np.ndarray) or image.dtype == np.uint8:
        return image
    return (image.astype(np.float32) * 255).clip(0, 255).astype(np.uint8)


def numpy_arguments(method: _Method, *, keep: tuple[str, ...] = ()) -> _Method:
    """`method` taking torch tensors of any dtype as arguments: each becomes a numpy array (`to_numpy`)
    before tensorboardX sees it (its own conversion has no `bfloat16`), but for the parameters named in `keep`
    (`add_embedding`'s `metadata`, whose labels are written as `str()` makes them)."""
    names = list(inspect.signature(method).parameters)[1:]  # after self
    kept = {names.index(name) for name in keep}

    @functools.wraps(method)
    def with_numpy_arguments(self, *args, **kwargs):
        if _torch() is not None:
            args = tuple(value if n in kept else to_numpy(value) for n, value in enumerate(args))
            kwargs = {name: value if name in keep else to_numpy(value) for name, value in kwargs.items()}
        return method(self, *args, **kwargs)

    return with_numpy_arguments
