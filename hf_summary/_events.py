"""`add_scalar`'s hot path: the Event record encoded directly, byte for byte what protobuf serialises.

`Event{wall_time=1 (double), step=2 (int64), summary=5 {value=1 {tag=1 (string), simple_value=2 (float)}}}`,
fields in number order; proto3 leaves out a zero `step`; `simple_value` is in a oneof, so it is always
written. Everything after the step depends on the tag alone but for the 4 bytes of the value, so
`ScalarEncoder` builds those bytes once per tag. Special cases (a zero wall time, NaN, infinities, values
beyond float32's range) are left to tensorboardX.
"""

from __future__ import annotations

import struct

from tensorboardX.summary import _clean_tag

_WALL_TIME = struct.Struct("<Bd")  # field 1, wire type 1 (0x09), then the double
_FLOAT = struct.Struct("<f")
_STEP_KEY = b"\x10"  # field 2, wire type 0
_U64 = (1 << 64) - 1
_ONE_BYTE = [bytes((n,)) for n in range(128)]
MAX_CACHED_TAGS = 10_000


def varint(n: int) -> bytes:
    """The protobuf varint of `n` (>= 0)."""
    if n < 0x80:
        return _ONE_BYTE[n]
    if n < 0x4000:  # the steps of most runs: two or three bytes, without the loop
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    if n < 0x200000:
        return bytes(((n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, n >> 14))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def tag_field(tag: str, *, clean: bool = True) -> bytes:
    """The encoded `Summary.Value.tag` field of `tag`, cleaned as tensorboardX's `scalar()` cleans it unless
    `clean` is false (torch keeps tags as given)."""
    encoded = (_clean_tag(tag) if clean else tag).encode("utf-8")
    return b"\x0a" + varint(len(encoded)) + encoded if encoded else b""  # proto3 leaves out an empty string


def summary_prefix(field: bytes) -> bytes:
    """The bytes of an Event after its step and before the float of its `simple_value`: the `summary` field's
    key and length, the `value` field's key and length, the tag `field` (`tag_field`), the float's key."""
    value_length = len(field) + 1 + _FLOAT.size
    summary_length = 1 + len(varint(value_length)) + value_length
    return b"\x2a" + varint(summary_length) + b"\x0a" + varint(value_length) + field + b"\x15"


class ScalarEncoder:
    """Encodes scalar events, keeping the `summary_prefix` of up to `MAX_CACHED_TAGS` tags."""

    def __init__(self, *, clean_tags: bool = True) -> None:
        self._clean = clean_tags
        self._prefixes: dict[str, bytes] = {}

    def encode(self, tag: str, value: float, step: int | None, wall_time: float) -> bytes | None:
        """The serialised `Event` of one `simple_value` scalar; `None` when the slow path should handle it
        (zero wall time, NaN or infinity, a value beyond float32's range)."""
        if not wall_time or value - value:  # zero wall time; NaN and infinities (tensorboardX warns of them)
            return None
        try:
            packed = _FLOAT.pack(value)
        except OverflowError:  # beyond float32 (or an int beyond a double)
            return None
        prefix = self._prefixes.get(tag)
        if prefix is None:
            prefix = summary_prefix(tag_field(tag, clean=self._clean))
            if len(self._prefixes) < MAX_CACHED_TAGS:
                self._prefixes[tag] = prefix
        if step:
            step &= _U64
            return (
                _WALL_TIME.pack(0x09, wall_time)
                + _STEP_KEY
                + varint(step)
                + prefix
                + packed
            )
        return _WALL_TIME.pack(0x09, wall_time) + prefix + packed
