"""GGUF metadata scanning: a bounded, streaming parse of the header, tensor table and chat templates.

Layout (v2/v3; v1 used 32-bit counts and lengths; big-endian files exist and are detected by version):

    "GGUF" | u32 version | u64 tensor_count | u64 kv_count | kv_count x (string key, u32 type, value)
           | tensor_count x (string name, u32 n_dims, n_dims x u64 dim, u32 ggml type, u64 offset)
           | padding to `general.alignment` (default 32) | tensor data
    string = u64 length + bytes; array = u32 element type + u64 count + elements (arrays may nest)

Parser bugs in GGUF loaders (huge string lengths and counts, n_dims past GGML_MAX_DIMS, tensor offsets past
the file: the 2024 llama.cpp/ggml heap overflows) are reached through exactly these fields, and
`tokenizer.chat_template` is rendered with Jinja (llama-cpp-python SSTI, CVE-2024-34359). Every length and
count is checked against the bytes left in the file before anything is read or skipped, arrays are skipped,
not materialised, and only chat templates and `general.alignment` are kept.

Severities: high `gguf.malformed` / `gguf.truncated` / `gguf.duplicate-key` / `gguf.overlap` (structure a
loader may mis-handle; no genuine writer produces it); critical `gguf.out-of-range` (tensor data past the
end of the file: out-of-bounds read); medium `gguf.limit` (metadata too large to vouch for) and
`gguf.template-type`; low `gguf.unknown-tensor-type`. Template findings come from `templates.check_template`.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import BinaryIO

from proxy.models import Finding, Severity
from proxy.scan.limits import ScanLimits
from proxy.scan.templates import MAX_TEMPLATE_CHARS, check_template

ENGINE = "hubgate"
MAGIC = b"GGUF"
MAX_KEY_BYTES = 65_535  # the spec's bound on key length
MAX_TENSOR_NAME_BYTES = 65_535
MAX_ARRAY_DEPTH = 4
MAX_ELEMENTS = 50_000_000  # array elements walked per file (a 256k-token vocab is ~0.5 M with merges)
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_FINDINGS = 50
DEFAULT_ALIGNMENT = 32
_CHUNK = 1 << 20

# GGUF metadata value types -> fixed width (None: string / array).
_STRING, _ARRAY = 8, 9
_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
# ggml tensor types whose layout we are sure of: type -> (name, elements per block, bytes per block).
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    30: ("BF16", 1, 2),
}
MAX_GGML_TYPE = 63  # above this a type id is certainly invalid (ggml has ~40)
_I64_MAX = 2**63 - 1


class _Stop(Exception):
    """Parsing cannot continue; carries the finding that says why."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


class _Reader:
    """Forward reader over a file with its own window buffer; never reads past the file's size."""

    def __init__(self, fh: BinaryIO, size: int, endian: str, wide: bool) -> None:
        self.fh, self.size, self.endian, self.wide = fh, size, endian, wide
        self.pos = 0  # absolute offset of the next byte
        self._buf = b""
        self._buf_start = 0

    def remaining(self) -> int:
        return self.size - self.pos

    def read(self, n: int, what: str) -> bytes:
        if n > self.remaining():
            raise _Stop(_f(Severity.HIGH, "truncated", f"{what} needs {n} bytes; {self.remaining()} remain"))
        start = self.pos - self._buf_start
        if start < 0 or start + n > len(self._buf):
            self.fh.seek(self.pos)
            self._buf, self._buf_start, start = self.fh.read(max(n, _CHUNK)), self.pos, 0
            if len(self._buf) < n:
                raise _Stop(_f(Severity.HIGH, "truncated", f"file ended inside {what}"))
        self.pos += n
        return self._buf[start : start + n]

    def skip(self, n: int, what: str) -> None:
        if n > self.remaining():
            raise _Stop(_f(Severity.HIGH, "truncated", f"{what} claims {n} bytes; {self.remaining()} remain"))
        self.pos += n

    def skip_strings(self, count: int, what: str) -> None:
        """Skip `count` length-prefixed strings; a tight loop inside the window (vocabularies hold ~10^5)."""
        width = 8 if self.wide else 4
        unpack = struct.Struct(self.endian + ("Q" if self.wide else "I")).unpack_from
        while count:
            buf, off = self._buf, self.pos - self._buf_start
            end = len(buf)
            while count and off >= 0 and off + width <= end:
                following = off + width + unpack(buf, off)[0]
                if following > end:
                    break
                off, count = following, count - 1
            if off >= 0:
                self.pos = self._buf_start + off
            if count:  # a string straddles the window (or is huge): the checked slow path
                self.skip(self.count(f"string length in {what}"), f"string in {what}")
                count -= 1

    def u32(self, what: str) -> int:
        return int(struct.unpack(self.endian + "I", self.read(4, what))[0])

    def u64(self, what: str) -> int:
        return int(struct.unpack(self.endian + "Q", self.read(8, what))[0])

    def count(self, what: str) -> int:
        """A length or count: u64 since v2, u32 in v1."""
        return self.u64(what) if self.wide else self.u32(what)


def scan(path: Path, limits: ScanLimits) -> list[Finding]:
    """Findings for the GGUF file at `path`: header, metadata, tensor table and chat templates."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            return _Parser(fh, size, limits).run()
    except OSError as exc:
        return [_f(Severity.HIGH, "unreadable", f"cannot read file: {exc.strerror or exc}")]


class _Parser:
    def __init__(self, fh: BinaryIO, size: int, limits: ScanLimits) -> None:
        self.fh, self.size, self.limits = fh, size, limits
        self.findings: list[Finding] = []
        self.templates: dict[str, str] = {}
        self.alignment = DEFAULT_ALIGNMENT
        self.elements = 0
        self.tensor_count = 0
        self.kv_count = 0

    def run(self) -> list[Finding]:
        try:
            reader = self._header()
            self._metadata(reader)
            self._tensors(reader)
        except _Stop as stop:
            self.findings.append(stop.finding)
        for key, source in self.templates.items():
            self.findings.extend(check_template(source, f"gguf:{key}"))
        if len(self.findings) > MAX_FINDINGS:
            return [*self.findings[:MAX_FINDINGS], _f(Severity.HIGH, "many-findings", "more findings left out")]
        return self.findings

    def _header(self) -> _Reader:
        head = self.fh.read(24)
        if head[:4] != MAGIC:
            raise _Stop(_f(Severity.HIGH, "malformed", "missing GGUF magic"))
        if len(head) < 8:
            raise _Stop(_f(Severity.HIGH, "truncated", "file ends inside the GGUF header"))
        version_le, version_be = struct.unpack("<I", head[4:8])[0], struct.unpack(">I", head[4:8])[0]
        if version_le in (1, 2, 3):
            endian, version = "<", version_le
        elif version_be in (1, 2, 3):
            endian, version = ">", version_be
        else:
            raise _Stop(_f(Severity.HIGH, "malformed", f"unsupported GGUF version {version_le}"))
        reader = _Reader(self.fh, self.size, endian, wide=version >= 2)
        reader.skip(8, "header")
        self.tensor_count = reader.count("tensor count")
        self.kv_count = reader.count("metadata count")
        # every KV takes >= 9 bytes and every tensor info >= 20: a count the file cannot hold is a lie
        if self.kv_count * 9 + self.tensor_count * 20 > reader.remaining():
            raise _Stop(
                _f(
                    Severity.HIGH,
                    "malformed",
                    f"counts ({self.kv_count} metadata, {self.tensor_count} tensors) exceed the file size",
                )
            )
        return reader

    def _check_budget(self, reader: _Reader) -> None:
        if reader.pos > self.limits.max_header_bytes:
            raise _Stop(
                _f(
                    Severity.MEDIUM,
                    "limit",
                    f"metadata exceeds the {self.limits.max_header_bytes}-byte header limit; not fully checked",
                )
            )

    def _string(self, reader: _Reader, what: str, cap: int) -> bytes:
        length = reader.count(f"{what} length")
        if length > cap:
            raise _Stop(_f(Severity.HIGH, "malformed", f"{what} is {length} bytes (limit {cap})"))
        return reader.read(length, what)

    def _metadata(self, reader: _Reader) -> None:
        seen: set[str] = set()
        for index in range(self.kv_count):
            raw = self._string(reader, f"metadata key #{index}", MAX_KEY_BYTES)
            try:
                key = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise _Stop(_f(Severity.HIGH, "malformed", f"metadata key #{index} is not UTF-8")) from None
            if key in seen:
                self.findings.append(_f(Severity.HIGH, "duplicate-key", f"metadata key {key!r} appears twice", key))
            seen.add(key)
            value_type = reader.u32(f"type of {key!r}")
            self._value(reader, key, value_type, depth=0)
            self._check_budget(reader)

    def _value(self, reader: _Reader, key: str, value_type: int, depth: int) -> None:
        is_template = depth == 0 and (key == "tokenizer.chat_template" or key.startswith("tokenizer.chat_template."))
        if is_template and value_type != _STRING:
            self.findings.append(
                _f(Severity.MEDIUM, "template-type", f"{key} is not a string (type {value_type})", key)
            )
        if value_type in _FIXED:
            data = reader.read(_FIXED[value_type], f"value of {key!r}")
            if depth == 0 and key == "general.alignment":
                self._set_alignment(value_type, data, reader.endian)
        elif value_type == _STRING:
            if is_template:
                self._template(reader, key)
            else:
                reader.skip(reader.count(f"string length in {key!r}"), f"string in {key!r}")
        elif value_type == _ARRAY:
            self._array(reader, key, depth)
        else:
            raise _Stop(_f(Severity.HIGH, "malformed", f"metadata {key!r} has unknown type {value_type}", key))

    def _array(self, reader: _Reader, key: str, depth: int) -> None:
        if depth >= MAX_ARRAY_DEPTH:
            raise _Stop(_f(Severity.HIGH, "malformed", f"arrays nested deeper than {MAX_ARRAY_DEPTH}", key))
        element_type = reader.u32(f"array type of {key!r}")
        count = reader.count(f"array length of {key!r}")
        # the smallest element is 1 byte (a string takes at least its length field): a larger count is a lie
        minimum = _FIXED.get(element_type, 8 if reader.wide else 4)
        if count * minimum > reader.remaining():
            raise _Stop(_f(Severity.HIGH, "truncated", f"array {key!r} claims {count} elements", key))
        self.elements += count
        if self.elements > MAX_ELEMENTS:
            raise _Stop(_f(Severity.MEDIUM, "limit", f"more than {MAX_ELEMENTS} array elements", key))
        if element_type in _FIXED:
            reader.skip(count * _FIXED[element_type], f"array {key!r}")
        elif element_type == _STRING:
            reader.skip_strings(count, repr(key))
        elif element_type == _ARRAY:
            for _ in range(count):
                self._array(reader, key, depth + 1)
        else:
            raise _Stop(_f(Severity.HIGH, "malformed", f"array {key!r} has unknown type {element_type}", key))

    def _template(self, reader: _Reader, key: str) -> None:
        length = reader.count(f"string length in {key!r}")
        cap = MAX_TEMPLATE_CHARS * 4  # UTF-8 bytes
        if length > cap:
            reader.skip(length, f"string in {key!r}")
            self.findings.append(_f(Severity.MEDIUM, "limit", f"{key} is {length} bytes; too large to check", key))
            return
        raw = reader.read(length, f"string in {key!r}")
        self.templates[key] = raw.decode("utf-8", errors="replace")

    def _set_alignment(self, value_type: int, data: bytes, endian: str) -> None:
        value = int.from_bytes(data, "little" if endian == "<" else "big")
        if value_type != 4 or value == 0 or value & (value - 1):
            raise _Stop(
                _f(Severity.HIGH, "malformed", "general.alignment must be a u32 power of two", "general.alignment")
            )
        self.alignment = value

    def _tensors(self, reader: _Reader) -> None:
        infos: list[tuple[int, int, str]] = []  # (offset, nbytes or -1, name)
        names: set[str] = set()
        for index in range(self.tensor_count):
            name = self._string(reader, f"tensor #{index} name", MAX_TENSOR_NAME_BYTES).decode("utf-8", "replace")
            if name in names:
                self.findings.append(_f(Severity.HIGH, "duplicate-key", f"tensor {name!r} appears twice", name))
            names.add(name)
            infos.append(self._tensor_info(reader, name))
            self._check_budget(reader)
        data_start = -(-reader.pos // self.alignment) * self.alignment
        self._check_layout(infos, data_start)

    def _tensor_info(self, reader: _Reader, name: str) -> tuple[int, int, str]:
        n_dims = reader.u32(f"dims of {name!r}")
        if n_dims > MAX_DIMS:
            raise _Stop(_f(Severity.HIGH, "malformed", f"tensor {name!r} has {n_dims} dims (max {MAX_DIMS})", name))
        dims = [reader.u64(f"dim of {name!r}") for _ in range(n_dims)]
        ggml_type = reader.u32(f"type of {name!r}")
        offset = reader.u64(f"offset of {name!r}")
        elements = 1
        for dim in dims:
            elements *= dim
        if any(d > _I64_MAX for d in dims) or elements > _I64_MAX:
            raise _Stop(_f(Severity.HIGH, "malformed", f"tensor {name!r} dims {dims} overflow int64", name))
        if offset % self.alignment:
            self.findings.append(
                _f(Severity.HIGH, "malformed", f"tensor {name!r} offset {offset} is not aligned", name)
            )
        if ggml_type > MAX_GGML_TYPE:
            raise _Stop(_f(Severity.HIGH, "malformed", f"tensor {name!r} has invalid type {ggml_type}", name))
        known = GGML_TYPES.get(ggml_type)
        if known is None:
            self.findings.append(
                _f(Severity.LOW, "unknown-tensor-type", f"tensor {name!r} has ggml type {ggml_type}", name)
            )
            return offset, -1, name
        type_name, block, type_size = known
        if dims and dims[0] % block:
            self.findings.append(
                _f(Severity.HIGH, "malformed", f"tensor {name!r} row of {dims[0]} is not whole {type_name} blocks")
            )
            return offset, -1, name
        return offset, elements // block * type_size, name

    def _check_layout(self, infos: list[tuple[int, int, str]], data_start: int) -> None:
        data_len = self.size - data_start
        end_so_far, previous = 0, ""
        for offset, nbytes, name in sorted(infos):
            end = offset + max(nbytes, 0)
            if end > data_len:
                self.findings.append(
                    _f(
                        Severity.CRITICAL,
                        "out-of-range",
                        f"tensor {name!r} spans [{offset}, {end}) past the {max(data_len, 0)}-byte data section",
                        name,
                    )
                )
            if offset < end_so_far:
                self.findings.append(_f(Severity.HIGH, "overlap", f"tensor {name!r} overlaps {previous!r}", name))
            if end >= end_so_far:
                end_so_far, previous = end, name


def _f(severity: Severity, rule: str, message: str, location: str = "") -> Finding:
    return Finding(engine=ENGINE, severity=severity, rule=f"gguf.{rule}", message=message, location=location)
