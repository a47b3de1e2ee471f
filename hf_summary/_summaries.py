"""Summaries of the ``torch.utils.tensorboard`` surface that tensorboardX does not build itself."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tensorboardX.proto.api_pb2 import Experiment
from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData
from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboardX.proto.tensor_pb2 import TensorProto
from tensorboardX.proto.tensor_shape_pb2 import TensorShapeProto
from tensorboardX.x2num import make_np

_DT_FLOAT, _DT_DOUBLE = 1, 2
_SCALARS_METADATA = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="scalars"))
_TENSOR_METADATA = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="tensor"))


def tensor_scalar(tag: str, value: object, double_precision: bool = False) -> Summary:
    """A scalar stored as a rank-0 tensor (torch's ``add_scalar(new_style=True)``, byte for byte)."""
    number = float(make_np(value).squeeze())
    if double_precision:
        tensor = TensorProto(dtype=_DT_DOUBLE, double_val=[number])
    else:
        tensor = TensorProto(dtype=_DT_FLOAT, float_val=[number])
    return Summary(value=[Summary.Value(tag=tag, tensor=tensor, metadata=_SCALARS_METADATA)])


def tensor_summary(tag: str, tensor: object) -> Summary:
    """Any float array as a TensorProto (torch's ``add_tensor``)."""
    array = np.asarray(make_np(tensor))
    double = array.dtype == np.float64
    proto = TensorProto(
        dtype=_DT_DOUBLE if double else _DT_FLOAT,
        tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=n) for n in array.shape]),
        tensor_content=array.astype(np.float64 if double else np.float32).tobytes(),
    )
    return Summary(value=[Summary.Value(tag=tag, tensor=proto, metadata=_TENSOR_METADATA)])


def with_discrete_domains(experiment: Summary, domains: dict[str, Sequence[object]]) -> Summary:
    """Add torch's ``hparam_domain_discrete`` to a tensorboardX hparams experiment summary."""
    value = experiment.value[0]
    data = HParamsPluginData.FromString(value.metadata.plugin_data.content)
    exp: Experiment = data.experiment
    for info in exp.hparam_infos:
        if info.name in domains:
            info.domain_discrete.extend(domains[info.name])
    value.metadata.plugin_data.content = data.SerializeToString()
    return experiment
