"""Tensors of every dtype torch.utils.tensorboard takes (bfloat16 included), in every ``add_*`` that takes tensors:
torch's flavour writes what torch's writer writes, ``HFSummaryWriter`` what tensorboardX writes (of the same
numbers; bfloat16, which tensorboardX refuses, as torch converts it). Runs where torch is (``tox -e frameworks``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import require_frameworks

require_frameworks("torch")

import tensorboardX  # noqa: E402
import torch  # noqa: E402
from tensorboardX.proto.event_pb2 import Event  # noqa: E402
from torch.utils.tensorboard import SummaryWriter as TorchWriter  # noqa: E402

from hf_summary import HFSummaryWriter  # noqa: E402
from hf_summary.segments import read_records  # noqa: E402
from hf_summary.torch import SummaryWriter as TorchFlavourWriter  # noqa: E402

pytestmark = pytest.mark.frameworks

DTYPES = [torch.bfloat16, torch.float16, torch.float32, torch.float64, torch.uint8, torch.int8, torch.int16,
          torch.int32, torch.int64, torch.bool]
VARIANTS = ["plain", "requires_grad", "non_contiguous"]


def _tensor(shape: tuple[int, ...], dtype: torch.dtype, variant: str, seed: int = 0, scale: float = 1.0,
            offset: float = 0.0) -> torch.Tensor:
    """Values in [0, 1) (times ``scale``, plus ``offset``) for float dtypes, 0..200 for integers, half True for
    bool; ``non_contiguous``
    is the transpose of a contiguous tensor, ``requires_grad`` a leaf that wants gradients (float dtypes)."""
    generator = torch.Generator().manual_seed(seed)
    transpose = variant == "non_contiguous" and len(shape) >= 2
    base = torch.rand(shape[::-1] if transpose else shape, generator=generator)
    if dtype == torch.bool:
        tensor = base > 0.5
    elif dtype.is_floating_point:
        tensor = (base * scale + offset).to(dtype)
    else:
        tensor = (base * 200).to(dtype)
    if transpose:
        tensor = tensor.permute(*reversed(range(tensor.dim())))
    if variant == "requires_grad" and dtype.is_floating_point:
        tensor = tensor.clone().requires_grad_(True)
    return tensor


def _boxes(dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor([[1, 1, 6, 6], [2, 3, 7, 5]], dtype=dtype if dtype.is_floating_point else torch.int64)


def _labels(dtype: torch.dtype) -> torch.Tensor:
    return (_tensor((20,), torch.float32, "plain", 3) > 0.5).to(dtype)


# name -> log(writer, t, c, dtype): t(shape, seed, scale, offset) makes a tensor of the dtype under test, c converts another
# (4 embedding points of 4x4 pixels fill their sprite: tensorboardX leaves the rest of it uninitialised)
LOGS = {
    "add_scalar": lambda w, t, c, dtype: w.add_scalar("scalar", t((), 1, 3.0), 1, walltime=1.0),
    "add_scalar_1": lambda w, t, c, dtype: w.add_scalar("one element", t((1, 1), 2), 2, walltime=2.0),
    "add_scalars": lambda w, t, c, dtype: w.add_scalars("group", {"a": t((), 3), "b": t((1,), 4)}, 3, walltime=3.0),
    "add_histogram": lambda w, t, c, dtype: w.add_histogram("histogram", t((4, 25)), 4, walltime=4.0),
    "add_image": lambda w, t, c, dtype: w.add_image("image", t((3, 8, 6)), 5, walltime=5.0),
    "add_images": lambda w, t, c, dtype: w.add_images("images", t((2, 3, 4, 4)), 6, walltime=6.0),
    "add_image_with_boxes": lambda w, t, c, dtype: w.add_image_with_boxes("boxes", t((3, 8, 8)), c(_boxes(dtype)), 7,
                                                                       walltime=7.0),
    "add_video": lambda w, t, c, dtype: w.add_video("video", t((1, 2, 3, 8, 8)), 8, fps=2, walltime=8.0),
    "add_audio": lambda w, t, c, dtype: w.add_audio("audio", t((400,), 0, 1.0, -0.5), 9, sample_rate=8000, walltime=9.0),
    "add_pr_curve": lambda w, t, c, dtype: w.add_pr_curve("pr", c(_labels(dtype)), t((20,), 5), 10, walltime=10.0),
    "add_mesh": lambda w, t, c, dtype: w.add_mesh("mesh", t((1, 3, 3)), colors=c(_tensor((1, 3, 3), torch.uint8, "plain")),
                                               faces=torch.tensor([[[0, 1, 2]]]), global_step=11),
    "add_embedding": lambda w, t, c, dtype: w.add_embedding(t((4, 3)), metadata=torch.arange(4),
                                                         label_img=t((4, 3, 4, 4)), global_step=12, tag="points"),
    "add_tensor": lambda w, t, c, dtype: w.add_tensor("tensor", t((2, 3)), 13, walltime=13.0),
    "add_hparams": lambda w, t, c, dtype: w.add_hparams(
        {"lr": 0.5}, {"metric": t((), 6)}, **{"run_name" if hasattr(w, "add_tensor") else "name": "hparams"}
    ),
}
# Where tensorboardX's code (under both flavours) writes other bytes than torch's, whatever the dtype: its own
# video and WAV encoders, its mesh metadata, its embedding's sprite and projector config (torch's flavour writes
# scalars the torch way, and leaves the rest to tensorboardX).
NOT_AS_TORCH = {"add_video", "add_audio", "add_mesh", "add_embedding"}


def _log(writer, dtype: torch.dtype, variant: str, *, only=None, conversions=(None,)) -> list[str]:
    """Each ``add_*`` of :data:`LOGS` (or those in ``only``), once, with tensors of ``dtype``, each converted by the
    first of ``conversions`` (``None``: as they are) with which ``writer`` takes it; returns the names it took."""
    taken = []
    for name, log in LOGS.items():
        if (only is not None and name not in only) or not hasattr(writer, name.rstrip("_1")):
            continue  # tensorboardX has no add_tensor
        for convert in conversions:
            convert = convert or (lambda tensor: tensor)

            def make(shape, seed=0, scale=1.0, offset=0.0, convert=convert):
                return convert(_tensor(shape, dtype, variant, seed, scale, offset))

            try:
                log(writer, make, convert, dtype)
            except Exception:
                if isinstance(writer, HFSummaryWriter):
                    raise
                continue
            taken.append(name)
            break
    return taken


def _records(logdir: Path) -> dict[str, list[tuple]]:
    """Per run dir, (step, wall time of events with a fixed one, each summary value's bytes), the file header and
    the mesh's wall time (now) left out; and the bytes of each other file (add_embedding's projector files)."""
    runs: dict[str, list[tuple]] = {}
    for path in sorted(logdir.rglob("*")):
        if ".hf_summary" in path.parts or not path.is_file():
            continue
        relative = path.parent.relative_to(logdir).as_posix()
        if "tfevents" not in path.name:
            runs.setdefault(relative, []).append((path.name, path.read_bytes()))
            continue
        for data in read_records(path):
            event = Event.FromString(data)
            if event.HasField("summary"):
                values = [value.SerializeToString() for value in event.summary.value]
                wall_time = event.wall_time if event.wall_time < 100 else None
                runs.setdefault(relative, []).append((event.step, wall_time, values))
    return runs


def _reference(logdir: Path, writer_class, dtype: torch.dtype, variant: str, **log) -> tuple[dict, list[str]]:
    writer = writer_class(str(logdir))
    taken = _log(writer, dtype, variant, **log)
    writer.close()
    return _records(logdir), taken


def _ours(logdir: Path, writer_class, dtype: torch.dtype, variant: str, repo_id: str, only: list[str]) -> dict:
    with writer_class(repo_id, logdir=logdir, offline=True) as writer:
        assert _log(writer, dtype, variant, only=only) == only
    return _records(logdir)


def _assert_same_records(ours: dict, expected: dict) -> None:
    for run in sorted(set(expected) | set(ours)):
        assert ours.get(run) == expected.get(run), run


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_torch_flavour_writes_what_torchs_writer_writes(tmp_path, repo_id, dtype, variant):
    only = [name for name in LOGS if name not in NOT_AS_TORCH]
    expected, taken = _reference(tmp_path / "reference", TorchWriter, dtype, variant, only=only)
    assert set(only) - set(taken) <= {"add_image", "add_images", "add_image_with_boxes"}  # int images: see below
    if dtype.is_floating_point or dtype in (torch.uint8, torch.bool):
        assert taken == only
    _assert_same_records(_ours(tmp_path / "ours", TorchFlavourWriter, dtype, variant, repo_id, taken), expected)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_tensorboardx_flavour_writes_what_tensorboardx_writes_of_the_same_numbers(tmp_path, repo_id, dtype, variant):
    """Of a tensor tensorboardX refuses, tensorboardX's records of the same numbers in a dtype it takes:
    bfloat16 as torch converts it (float16), float16 sound as float32 (which holds it exactly)."""
    conversions = [None]
    if dtype == torch.bfloat16:
        conversions = [lambda tensor: tensor.to(torch.float16), lambda tensor: tensor.float()]
    elif dtype == torch.float16:
        conversions.append(lambda tensor: tensor.float())
    expected, taken = _reference(tmp_path / "reference", tensorboardX.SummaryWriter, dtype, variant,
                                 conversions=conversions)
    if dtype.is_floating_point:
        assert taken == [name for name in LOGS if name != "add_tensor"]
    _assert_same_records(_ours(tmp_path / "ours", HFSummaryWriter, dtype, variant, repo_id, taken), expected)


# Tensor scalars take the lean path (each dtype under a tag of its own, to check it did), writing what the writers'
# own paths write: numbers at the edges of float16/float32, NaN and infinities (the slow path), big and negative steps
SCALAR_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.uint8, torch.bool]
SCALAR_VALUES = [0.5, -1e-3, 1e-40, 7e-8, 70000.0, 3.5e38, float("nan"), float("-inf")]
SCALAR_SHAPES = [(), (1,), (1, 1)]


def _log_tensor_scalars(writer, convert=lambda tensor: tensor) -> list[str]:
    tags = []
    for n, (dtype, value, shape) in enumerate(
        (dtype, value, shape) for dtype in SCALAR_DTYPES for value in SCALAR_VALUES for shape in SCALAR_SHAPES
    ):
        tensor = torch.full(shape, value, dtype=torch.float64).to(dtype).requires_grad_(dtype.is_floating_point and n % 2 == 1)
        tag = f"{str(dtype).removeprefix('torch.')}/{len(shape)}"
        writer.add_scalar(tag, convert(tensor), n * 4099 - 5, walltime=1733100000.25 + n)
        writer.add_scalars("pair", {"x": convert(tensor), "y": 1.0}, n * 4099 - 5, walltime=1733100000.5 + n)
        if abs(float((tensor.to(torch.float16) if dtype == torch.bfloat16 else tensor).detach())) < 3.4e38:
            tags.append(tag)
    return tags


def test_lean_tensor_scalars_write_torchs_records_byte_for_byte(tmp_path, repo_id):
    reference = TorchWriter(str(tmp_path / "reference"))
    _log_tensor_scalars(reference)
    reference.close()
    with TorchFlavourWriter(repo_id, logdir=tmp_path / "ours", offline=True) as writer:
        lean = _log_tensor_scalars(writer)
        assert set(lean) <= set(writer._scalar_encoder._prefixes)  # the lean path took every finite value
    _assert_same_records(_records(tmp_path / "ours"), _records(tmp_path / "reference"))


def test_lean_tensor_scalars_write_tensorboardxs_records_byte_for_byte(tmp_path, repo_id):
    """bfloat16, which tensorboardX refuses, as torch converts it (float16)."""
    reference = tensorboardX.SummaryWriter(str(tmp_path / "reference"))
    _log_tensor_scalars(reference, lambda t: t.to(torch.float16) if t.dtype == torch.bfloat16 else t)
    reference.close()
    with HFSummaryWriter(repo_id, logdir=tmp_path / "ours", offline=True) as writer:
        lean = _log_tensor_scalars(writer)
        assert set(lean) <= set(writer._scalar_encoder._prefixes)
    _assert_same_records(_records(tmp_path / "ours"), _records(tmp_path / "reference"))


class _DeviceStandIn(torch.Tensor):
    """A CPU tensor counting what would copy it to the host were it on a GPU (``numpy()`` is left out: it only
    views a tensor already on the host, and refuses a device one)."""

    copies: list[str] = []
    COPYING = {"__float__", "__int__", "__bool__", "__index__", "item", "cpu", "tolist", "__array__"}

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", None) in cls.COPYING:
            cls.copies.append(func.__name__)
        return super().__torch_function__(func, types, args, kwargs or {})


@pytest.mark.parametrize("writer_class", [HFSummaryWriter, TorchFlavourWriter, TorchWriter], ids=lambda c: c.__module__)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_a_device_tensor_is_copied_to_the_host_once_per_value(tmp_path, repo_id, writer_class, dtype):
    """As torch's writer does (the last case): one copy per ``add_scalar``, one per value of ``add_scalars``, the
    slow path's values (NaN) included."""
    if writer_class is TorchWriter:
        writer = TorchWriter(str(tmp_path / "run"))
    else:
        writer = writer_class(repo_id, logdir=tmp_path / "run", offline=True)
    with writer:
        for value in (0.5, float("nan")):
            scalar = torch.tensor(value, dtype=dtype).as_subclass(_DeviceStandIn)
            _DeviceStandIn.copies.clear()
            writer.add_scalar("loss", scalar, 1)
            assert len(_DeviceStandIn.copies) == 1, _DeviceStandIn.copies
            _DeviceStandIn.copies.clear()
            writer.add_scalars("pair", {"a": scalar, "b": scalar.clone()}, 1)
            assert len(_DeviceStandIn.copies) == 2, _DeviceStandIn.copies


def test_bfloat16_scalars_round_to_float16_as_torch_rounds_them():
    """Every bfloat16 value (all 65,536 bit patterns): the lean path's rounding on the host is torch's."""
    from hf_summary._tensors import scalar_number

    every = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(torch.bfloat16)
    expected = every.to(torch.float16).float().tolist()
    got = [scalar_number(value) for value in every]
    mismatched = [(a, b) for a, b in zip(got, expected, strict=True) if not (a == b or (a != a and b != b))]
    assert mismatched == []
