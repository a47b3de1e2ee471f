"""``add_scalar``'s hot path: the Event record encoded directly, byte for byte what protobuf serialises.

``Event{wall_time=1 (double), step=2 (int64), summary=5 {value=1 {tag=1 (string), simple_value=2 (float)}}}``,
fields in number order; proto3 leaves out a zero ``step``; ``simple_value`` is in a oneof, so it is always
written. Special cases (a zero wall time, NaN, infinities, values beyond float32's range) are left to tensorboardX.
"""

from __future__ import annotations

import struct

from tensorboardX.summary import _clean_tag

_WALL_TIME = struct.Struct("<Bd")  # field 1, wire type 1 (0x09), then the double
_SIMPLE_VALUE = struct.Struct("<Bf")  # field 2, wire type 5 (0x15), then the float
_U64 = (1 << 64) - 1
_ONE_BYTE = [bytes((n,)) for n in range(128)]


def _varint(n: int) -> bytes:
    if n < 128:
        return _ONE_BYTE[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def tag_field(tag: str) -> bytes:
    """The encoded ``Summary.Value.tag`` field of ``tag``, cleaned as tensorboardX's ``scalar()`` cleans it."""
    encoded = _clean_tag(tag).encode("utf-8")
    return b"\x0a" + _varint(len(encoded)) + encoded if encoded else b""  # proto3 leaves out an empty string


def scalar_event(tag: bytes, value: float, step: int | None, wall_time: float) -> bytes | None:
    """The serialised ``Event`` of one ``simple_value`` scalar (``tag`` from :func:`tag_field`); ``None`` when
    the slow path should handle it (zero wall time, NaN or infinity, a value beyond float32's range)."""
    if not wall_time or value - value != 0:  # zero wall time; NaN and infinities (tensorboardX warns of them)
        return None
    try:
        inner = tag + _SIMPLE_VALUE.pack(0x15, value)
    except OverflowError:  # beyond float32
        return None
    summary = b"\x0a" + _varint(len(inner)) + inner
    head = _WALL_TIME.pack(0x09, wall_time)
    if step:
        head += b"\x10" + _varint(step & _U64)
    return head + b"\x2a" + _varint(len(summary)) + summary
