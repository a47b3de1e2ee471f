"""Summaries of the `torch.utils.tensorboard` surface that tensorboardX does not build itself."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tensorboardX.proto.api_pb2 import Experiment
from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData
from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboardX.proto.tensor_pb2 import TensorProto
from tensorboardX.proto.tensor_shape_pb2 import TensorShapeProto
from tensorboardX.x2num import make_np

from hf_summary._events import varint

_DT_FLOAT, _DT_DOUBLE = 1, 2
# torch's dtype name -> the TensorProto dtype and the field holding the elements, as torch.utils.tensorboard maps them
_TENSOR_FIELDS = {
    "float16": (19, "half_val"),
    "bfloat16": (14, "half_val"),
    "float32": (_DT_FLOAT, "float_val"),
    "float64": (_DT_DOUBLE, "double_val"),
    "int8": (6, "int_val"),
    "uint8": (4, "uint32_val"),
    "int16": (5, "int_val"),
    "int32": (3, "int_val"),
    "int64": (9, "int64_val"),
    "complex64": (8, "scomplex_val"),
    "complex128": (18, "dcomplex_val"),
    "bool": (10, "bool_val"),
}
_SCALARS_METADATA = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="scalars"))
_TENSOR_METADATA = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="tensor"))


def tensor_scalar(tag: str, value: object, double_precision: bool = False) -> Summary:
    """A scalar stored as a rank-0 tensor (torch's `add_scalar(new_style=True)`, byte for byte)."""
    number = float(make_np(value).squeeze())
    if double_precision:
        tensor = TensorProto(dtype=_DT_DOUBLE, double_val=[number])
    else:
        tensor = TensorProto(dtype=_DT_FLOAT, float_val=[number])
    return Summary(value=[Summary.Value(tag=tag, tensor=tensor, metadata=_SCALARS_METADATA)])


def tensor_summary(tag: str, array: np.ndarray, dtype: str) -> Summary:
    """torch's `add_tensor`, byte for byte: `array` (elements from `hf_summary._tensors.tensor_array`)
    as a TensorProto of torch's `dtype` name, its elements in that dtype's repeated field."""
    if dtype not in _TENSOR_FIELDS:
        raise ValueError(f"{tag} has unsupported tensor dtype {dtype}; add_tensor takes {', '.join(_TENSOR_FIELDS)}")
    if array.nbytes >= 1 << 31:
        raise ValueError(f"{tag}: a tensor of {array.nbytes} bytes is beyond protobuf's 2 GB limit")
    proto_dtype, field = _TENSOR_FIELDS[dtype]
    flat = array.reshape(-1)
    if field == "half_val":  # as torch: each value's float32 bits, as a signed int
        flat = flat.astype(np.float32).view(np.int32)
    elif field.endswith("complex_val"):  # real and imaginary parts in turn
        flat = flat.view(flat.real.dtype)
    shape = TensorShapeProto(dim=[TensorShapeProto.Dim(size=n) for n in array.shape])
    if field == "uint32_val":  # field 16, which tensorboardX's TensorProto lacks: its packed varints, by hand
        proto = TensorProto(dtype=proto_dtype, tensor_shape=shape)
        if flat.size:
            packed = b"".join(varint(n) for n in flat.tolist())
            proto.MergeFromString(b"\x82\x01" + varint(len(packed)) + packed)
    else:
        proto = TensorProto(dtype=proto_dtype, tensor_shape=shape, **{field: flat.tolist()})
    return Summary(value=[Summary.Value(tag=tag, tensor=proto, metadata=_TENSOR_METADATA)])


def with_discrete_domains(experiment: Summary, domains: dict[str, Sequence[object]]) -> Summary:
    """Add torch's `hparam_domain_discrete` to a tensorboardX hparams experiment summary."""
    value = experiment.value[0]
    data = HParamsPluginData.FromString(value.metadata.plugin_data.content)
    exp: Experiment = data.experiment
    for info in exp.hparam_infos:
        if info.name in domains:
            info.domain_discrete.extend(domains[info.name])
    value.metadata.plugin_data.content = data.SerializeToString()
    return experiment
