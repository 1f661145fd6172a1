"""A minimal, bounded protobuf wire-format reader (no schema, no `protobuf` dependency).

TensorFlow SavedModel/GraphDef and ONNX ModelProto are protobuf messages. The scanners only need a few
string fields (op names, domains, external-data locations), so instead of generated classes they walk the
wire format: each field is `varint key (number << 3 | wire type)` followed by a varint, a fixed 4/8-byte
value, or a varint length and that many bytes (strings, bytes and nested messages alike).

Everything is bounded: every length is checked against the enclosing message before use (a hostile length
cannot allocate or read past the end), varints are at most 10 bytes, groups nest at most `MAX_GROUP_DEPTH`
deep, and a `Budget` caps the number of fields one scan may visit. Any violation raises `WireError`.
Length-delimited values are zero-copy `memoryview` slices of the input (a multi-GB file is mapped, not read).
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5
MAX_GROUP_DEPTH = 32
DEFAULT_MAX_FIELDS = 50_000_000  # ~a few seconds of walking; a real 2 GB graph has far fewer fields

Buffer = bytes | memoryview


class WireError(ValueError):
    """The bytes are not well-formed protobuf (or exceed a bound)."""


class Budget:
    """How many more fields a walk may visit; shared across nested messages of one scan."""

    def __init__(self, max_fields: int = DEFAULT_MAX_FIELDS) -> None:
        self.remaining = max_fields

    def spend(self) -> None:
        self.remaining -= 1
        if self.remaining < 0:
            raise WireError("too many protobuf fields (scan budget exhausted)")


def read_varint(buf: Buffer, pos: int, end: int) -> tuple[int, int]:
    """Decode the varint at `pos`; return (value, next position)."""
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise WireError("truncated varint")
        if shift >= 70:
            raise WireError("varint longer than 10 bytes")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7


def iter_fields(buf: Buffer, budget: Budget | None = None) -> Iterator[tuple[int, int, int | memoryview]]:
    """Yield (field number, wire type, value) for each field of one message.

    Values: int for VARINT/I64/I32 (fixed values as unsigned little-endian), memoryview for LEN.
    Groups (deprecated) are skipped whole and not yielded.
    """
    view = buf if isinstance(buf, memoryview) else memoryview(buf)
    end = len(view)
    pos = 0
    while pos < end:
        if budget is not None:
            budget.spend()
        number, wire_type, pos = _read_key(view, pos, end)
        if wire_type == VARINT:
            value, pos = read_varint(view, pos, end)
            yield number, wire_type, value
        elif wire_type in (I64, I32):
            width = 8 if wire_type == I64 else 4
            if end - pos < width:
                raise WireError(f"truncated fixed{width * 8} in field {number}")
            yield number, wire_type, int.from_bytes(view[pos : pos + width], "little")
            pos += width
        elif wire_type == LEN:
            length, pos = read_varint(view, pos, end)
            if length > end - pos:
                raise WireError(f"field {number} claims {length} bytes, only {end - pos} remain")
            yield number, wire_type, view[pos : pos + length]
            pos += length
        elif wire_type == SGROUP:
            pos = _skip_group(view, pos, end, number, budget)
        else:
            raise WireError(f"invalid wire type {wire_type} in field {number}")


def messages(buf: Buffer, number: int, budget: Budget | None = None) -> Iterator[memoryview]:
    """The length-delimited values of field `number` (repeated submessages, strings, bytes)."""
    for field, wire_type, value in iter_fields(buf, budget):
        if field == number and wire_type == LEN:
            assert isinstance(value, memoryview)
            yield value


def text(value: memoryview) -> str:
    """A protobuf `string` field: must be UTF-8 (protobuf parsers reject anything else)."""
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError(f"string field is not UTF-8 (byte {exc.start})") from None


@contextmanager
def mapped(path: Path) -> Iterator[memoryview]:
    """The file's bytes as a read-only memoryview (mapped, so cost tracks what is walked, not the size)."""
    with open(path, "rb") as fh:
        if fh.seek(0, 2) == 0:
            yield memoryview(b"")
            return
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        view = memoryview(mm)
        try:
            yield view
        finally:
            view.release()
            # a caller kept a slice alive: the map then closes when that slice is collected
            with suppress(BufferError):
                mm.close()


def _read_key(view: memoryview, pos: int, end: int) -> tuple[int, int, int]:
    key, pos = read_varint(view, pos, end)
    number, wire_type = key >> 3, key & 7
    if number == 0 or number > 0x1FFFFFFF:
        raise WireError(f"invalid field number {number}")
    return number, wire_type, pos


def _skip_group(view: memoryview, pos: int, end: int, number: int, budget: Budget | None) -> int:
    """Skip a (deprecated) group up to its matching end tag, bounded in depth."""
    stack = [number]
    while stack:
        if len(stack) > MAX_GROUP_DEPTH:
            raise WireError("groups nested too deeply")
        if budget is not None:
            budget.spend()
        field, wire_type, pos = _read_key(view, pos, end)
        if wire_type == VARINT:
            _, pos = read_varint(view, pos, end)
        elif wire_type in (I64, I32):
            pos += 8 if wire_type == I64 else 4
            if pos > end:
                raise WireError("truncated fixed value in group")
        elif wire_type == LEN:
            length, pos = read_varint(view, pos, end)
            if length > end - pos:
                raise WireError("length past the end of the group")
            pos += length
        elif wire_type == SGROUP:
            stack.append(field)
        elif wire_type == EGROUP:
            if stack.pop() != field:
                raise WireError("mismatched end-group tag")
        else:
            raise WireError(f"invalid wire type {wire_type} in group")
    return pos
