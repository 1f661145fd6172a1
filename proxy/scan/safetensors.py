"""safetensors header validation: reads the 8-byte length and the JSON header, never the tensor data.

A safetensors file is `u64 LE header length N`, `N bytes of UTF-8 JSON`, then the data section. The format
carries no code, so the danger is a header that lies: loaders (and hand-written C/C++/GPU readers that trust
the header) read out of bounds, alias tensors, or miss bytes hidden in gaps (a polyglot payload). The official
Rust loader rejects everything flagged here; anything it would reject cannot come from a real export.

Severities:
- critical `safetensors.out-of-range`: a tensor's byte range lies outside the data section (an
  out-of-bounds read in any loader that trusts the header).
- high: every other structural violation (`truncated`, `header-size`, `header-encoding`, `header-json`,
  `duplicate-key`, `dtype`, `shape`, `offsets`, `size-mismatch`, `overlap`, `gap`, `trailing-bytes`,
  `metadata`): the file is malformed, which is what crashes or confuses loaders, and no genuine writer
  produces it.
- low `safetensors.extra-field`: a tensor entry with fields beyond dtype/shape/data_offsets (ignored by the
  loader; a place to hide data).
Cost: two reads (8 bytes + the header), whatever the file size.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

from proxy.models import Finding, Severity
from proxy.scan.limits import ScanLimits

ENGINE = "hubgate"
MAX_FINDINGS = 50

# Bits per element for every dtype the reference implementation (safetensors 0.8) knows.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}
_TENSOR_FIELDS = frozenset({"dtype", "shape", "data_offsets"})
_U64_MAX = 2**64 - 1


class _Malformed(Exception):
    """Stops the header walk: the rest cannot be interpreted."""


def scan(path: Path, limits: ScanLimits) -> list[Finding]:
    """Validate the header of the safetensors file at `path` (pure apart from two bounded reads)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            prefix = fh.read(8)
            if len(prefix) < 8:
                return [_f(Severity.HIGH, "truncated", f"file is {size} bytes, shorter than the 8-byte header")]
            (header_len,) = struct.unpack("<Q", prefix)
            problem = _header_len_problem(header_len, size, limits.max_header_bytes)
            if problem:
                return [_f(Severity.HIGH, "header-size", problem)]
            header = fh.read(header_len)
    except OSError as exc:
        return [_f(Severity.HIGH, "unreadable", f"cannot read file: {exc.strerror or exc}")]
    if len(header) != header_len:
        return [_f(Severity.HIGH, "truncated", "file ended inside the header")]
    return check_header(header, data_len=size - 8 - header_len)


def check_header(header: bytes, data_len: int) -> list[Finding]:
    """Findings for a raw JSON header whose data section is `data_len` bytes long (pure)."""
    try:
        text = header.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [_f(Severity.HIGH, "header-encoding", f"header is not valid UTF-8 (byte {exc.start})")]
    if not text.startswith("{"):
        return [_f(Severity.HIGH, "header-json", "header does not start with '{' (the loader rejects it)")]
    duplicates: list[str] = []
    try:
        parsed = json.loads(
            text,
            object_pairs_hook=lambda pairs: _no_duplicates(pairs, duplicates),
            parse_constant=_reject_constant,
        )
    except (ValueError, RecursionError) as exc:
        return [_f(Severity.HIGH, "header-json", f"header is not valid JSON: {_short(exc)}")]
    findings: list[Finding] = []
    for key in duplicates[:5]:
        findings.append(
            _f(Severity.HIGH, "duplicate-key", f"key {key!r} appears twice; parsers disagree on which wins")
        )
    if not isinstance(parsed, dict):
        return [*findings, _f(Severity.HIGH, "header-json", "header is not a JSON object")]
    findings.extend(_check_entries(parsed, data_len))
    if len(findings) > MAX_FINDINGS:
        findings = findings[:MAX_FINDINGS]
        findings.append(_f(Severity.HIGH, "many-findings", "more findings were left out"))
    return findings


def _header_len_problem(header_len: int, size: int, cap: int) -> str | None:
    if header_len == 0:
        return "header length is 0"
    if header_len > cap:
        return f"header length {header_len} exceeds the limit of {cap} bytes"
    if header_len > size - 8:
        return f"header length {header_len} runs past the end of the {size}-byte file"
    return None


def _check_entries(parsed: dict[str, Any], data_len: int) -> list[Finding]:
    findings: list[Finding] = []
    if "__metadata__" in parsed:
        findings.extend(_check_metadata(parsed["__metadata__"]))
    ranges: list[tuple[int, int, str]] = []
    for name, entry in parsed.items():
        if name == "__metadata__":
            continue
        try:
            begin, end = _check_tensor(name, entry, data_len, findings)
        except _Malformed:
            continue
        ranges.append((begin, end, name))
    findings.extend(_check_layout(ranges, data_len))
    return findings


def _check_metadata(metadata: Any) -> list[Finding]:
    if metadata is None:
        return []
    if not isinstance(metadata, dict):
        return [_f(Severity.HIGH, "metadata", "__metadata__ is not an object of strings")]
    bad = [k for k, v in metadata.items() if not isinstance(v, str)]
    if bad:
        return [_f(Severity.HIGH, "metadata", f"__metadata__ values must be strings; not for {bad[:5]}")]
    return []


def _check_tensor(name: str, entry: Any, data_len: int, findings: list[Finding]) -> tuple[int, int]:
    """Validate one tensor entry; append findings; return its byte range or raise _Malformed."""
    where = f"tensor {name!r}"
    if not isinstance(entry, dict):
        findings.append(_f(Severity.HIGH, "header-json", f"{where} is not an object", name))
        raise _Malformed
    missing = sorted(_TENSOR_FIELDS - entry.keys())
    if missing:
        findings.append(_f(Severity.HIGH, "header-json", f"{where} lacks {', '.join(missing)}", name))
        raise _Malformed
    extra = sorted(entry.keys() - _TENSOR_FIELDS)
    if extra:
        findings.append(_f(Severity.LOW, "extra-field", f"{where} carries unknown fields {extra[:5]}", name))
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        findings.append(_f(Severity.HIGH, "dtype", f"{where} has unknown dtype {_short(dtype)}", name))
        raise _Malformed
    if not isinstance(shape, list) or not all(_is_uint(d) for d in shape):
        findings.append(
            _f(
                Severity.HIGH,
                "shape",
                f"{where} shape {_short(shape)} is not a list of non-negative ints",
                name,
            )
        )
        raise _Malformed
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_uint(o) for o in offsets)):
        findings.append(
            _f(Severity.HIGH, "offsets", f"{where} data_offsets {_short(offsets)} is not [begin, end]", name)
        )
        raise _Malformed
    begin, end = offsets
    if begin > end:
        findings.append(_f(Severity.HIGH, "offsets", f"{where} begins at {begin} after its end {end}", name))
        raise _Malformed
    if end > data_len:
        findings.append(
            _f(
                Severity.CRITICAL,
                "out-of-range",
                f"{where} spans bytes [{begin}, {end}) but the data section has {data_len} bytes",
                name,
            )
        )
    bits = _element_count(shape) * DTYPE_BITS[dtype]
    if bits > _U64_MAX or bits % 8:
        findings.append(_f(Severity.HIGH, "size-mismatch", f"{where} shape {shape} does not fill whole bytes", name))
    elif bits // 8 != end - begin:
        findings.append(
            _f(
                Severity.HIGH,
                "size-mismatch",
                f"{where} is {dtype}{shape} = {bits // 8} bytes but its offsets span {end - begin}",
                name,
            )
        )
    return begin, end


def _check_layout(ranges: list[tuple[int, int, str]], data_len: int) -> list[Finding]:
    """Tensors must tile the data section exactly: no overlap, no gap, nothing after the last one."""
    findings: list[Finding] = []
    covered = 0
    previous = ""
    for begin, end, name in sorted(ranges):
        if begin < covered:
            findings.append(
                _f(Severity.HIGH, "overlap", f"tensor {name!r} overlaps {previous!r} at byte {begin}", name)
            )
        elif begin > covered:
            findings.append(
                _f(
                    Severity.HIGH,
                    "gap",
                    f"{begin - covered} unaccounted bytes before tensor {name!r} (offset {covered})",
                    name,
                )
            )
        if end >= covered:
            covered, previous = end, name
    if covered < data_len:
        findings.append(
            _f(
                Severity.HIGH,
                "trailing-bytes",
                f"{data_len - covered} bytes after the last tensor belong to no tensor",
            )
        )
    return findings


def _element_count(shape: list[int]) -> int:
    """Product of the dims, stopping early once past u64 (a hostile shape must not cost a bignum)."""
    if 0 in shape:
        return 0
    count = 1
    for dim in shape:
        count *= dim
        if count > _U64_MAX:
            return _U64_MAX + 1
    return count


def _no_duplicates(pairs: list[tuple[str, Any]], duplicates: list[str]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            duplicates.append(key)
        seen[key] = value
    return seen


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _is_uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _U64_MAX


def _short(value: Any) -> str:
    text = str(value) if isinstance(value, Exception) else json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _f(severity: Severity, rule: str, message: str, location: str = "") -> Finding:
    return Finding(engine=ENGINE, severity=severity, rule=f"safetensors.{rule}", message=message, location=location)
