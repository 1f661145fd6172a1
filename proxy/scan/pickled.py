"""Files that carry pickles: raw pickle / joblib / dill / cloudpickle, torch legacy, torch zip, NumPy `.npy`.

Each function finds the pickle streams inside its container (reading only those: a torch zip's tensor
storages are never read), walks them with our allowlist engine and hands the same bytes to the external
engines. A limit hit marks the scan incomplete (verdict `error`).
"""

from __future__ import annotations

import ast
import io
import struct
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

from proxy.models import Severity
from proxy.scan import engines
from proxy.scan.archive import flag_unsafe_member_name, open_zip
from proxy.scan.opcodes import CountingReader
from proxy.scan.pickle import Between, Global, LayoutError, PickleScan, Seq, scan_pickle_stream
from proxy.scan.state import ScanState


def _record(ours: PickleScan, data: bytes | None, state: ScanState, location: str) -> None:
    state.findings.extend(ours.findings)
    if not ours.complete:
        state.incomplete.append(f"pickle walk incomplete at {location}")
    if state.run_engines and data is not None:
        engines.check_pickle(data, location=location, ours=ours, state=state)


def _engine_bytes_wanted(state: ScanState, ours: PickleScan, location: str) -> bool:
    """External engines only run on pickles small enough for them to hold in memory."""
    if not state.run_engines:
        return False
    if ours.bytes_walked > state.limits.max_engine_bytes:
        state.add(
            Severity.LOW,
            "engine.skipped",
            f"pickle of {ours.bytes_walked} bytes is above the {state.limits.max_engine_bytes}-byte limit for "
            "fickling/modelscan; the hubgate allowlist engine scanned it alone",
            location,
        )
        return False
    return True


def scan_pickle_file(
    path: Path,
    state: ScanState,
    location: str,
    *,
    max_pickles: int | None = None,
    offset: int = 0,
    between: Between | None = None,
) -> None:
    """Raw pickle streams (one or several in a row), optionally starting at `offset`."""
    limits = state.limits
    with path.open("rb") as f:
        f.seek(offset)
        ours = scan_pickle_stream(f, location=location, limits=limits, max_pickles=max_pickles, between=between)
        data = _pickle_bytes(f, offset, ours) if _engine_bytes_wanted(state, ours, location) else None
    _record(ours, data, state, location)


def _pickle_bytes(f: BinaryIO, offset: int, ours: PickleScan) -> bytes:
    """The opcode bytes our walk covered, minus inline array payloads (joblib), for the other engines."""
    parts: list[bytes] = []
    here = 0
    for start, end in [*ours.gaps, (ours.bytes_walked, ours.bytes_walked)]:
        f.seek(offset + here)
        parts.append(f.read(max(start - here, 0)))
        here = end
    return b"".join(parts)


def _is_storage(name: str) -> bool:
    parts = name.split("/")
    return len(parts) >= 2 and parts[-2] == "data" and parts[-1].isdigit()


def scan_torch_zip(path: Path, state: ScanState, location: str) -> None:
    """Every pickle member of a torch zip (data.pkl, constants.pkl, debug pickles, and any member whose
    bytes start like a pickle), never the tensor storages under `data/`."""
    limits = state.limits
    zf = open_zip(path, state, location, "torch.corrupt", "torch zip")
    if zf is None:
        return
    scanned = 0
    with zf:
        for info in zf.infolist():
            where = f"{location}!{info.filename}"
            flag_unsafe_member_name(state, info.filename, where)
            if info.is_dir() or _is_storage(info.filename):
                continue
            try:
                with zf.open(info) as src:
                    is_pickle = info.filename.endswith(("pkl", ".pickle")) or src.read(1) == b"\x80"
                    if not is_pickle:
                        continue
                scanned += 1
                if scanned > limits.max_pickle_members:
                    state.give_up("pickle.limit", f"more than {limits.max_pickle_members} pickle members", location)
                    return
                with zf.open(info) as src:
                    data = src.read(limits.max_pickle_bytes + 1)
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, ValueError, zlib.error) as exc:
                state.give_up("torch.corrupt", f"member {info.filename!r} cannot be read: {exc}", where)
                continue
            if len(data) > limits.max_pickle_bytes:
                state.give_up("pickle.limit", f"pickle member larger than {limits.max_pickle_bytes} bytes", where)
                continue
            ours = scan_pickle_stream(io.BytesIO(data), location=where, limits=limits)
            _record(ours, data if _engine_bytes_wanted(state, ours, where) else None, state, where)
    if scanned == 0:
        state.give_up("torch.no-pickle", "torch zip without a readable pickle member", location)


def scan_npy(path: Path, state: ScanState, location: str) -> None:
    """`.npy`: parse the header; object dtypes are followed by a pickle, which is walked."""
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 10 or not head.startswith(b"\x93NUMPY"):
            state.add(Severity.MEDIUM, "numpy.malformed", "truncated .npy header", location)
            return
        major = head[6]
        if major == 1:
            hlen, start = struct.unpack("<H", head[8:10])[0], 10
        elif major in (2, 3):
            if len(head) < 12:
                state.add(Severity.MEDIUM, "numpy.malformed", "truncated .npy header", location)
                return
            hlen, start = struct.unpack("<I", head[8:12])[0], 12
        else:
            state.add(Severity.MEDIUM, "numpy.malformed", f"unknown .npy version {major}", location)
            return
        if hlen > 1 << 20:
            state.add(Severity.MEDIUM, "numpy.malformed", f".npy header of {hlen} bytes", location)
            return
        f.seek(start)
        raw = f.read(hlen)
    try:
        header = ast.literal_eval(raw.decode("latin-1"))
        descr = header["descr"]
    except (ValueError, SyntaxError, KeyError, TypeError, MemoryError, RecursionError) as exc:
        state.add(Severity.MEDIUM, "numpy.malformed", f".npy header does not parse: {type(exc).__name__}", location)
        return
    if "O" in repr(descr):
        state.add(Severity.INFO, "numpy.object-array", "object array: its payload is a pickle", location)
        scan_pickle_file(path, state, f"{location}+pickle", offset=start + hlen)


# torch's legacy tar format (PyTorch < 0.4): members `storages` and `tensors` interleave pickles with raw
# framing; torch.load unpickles every header, so every header is walked.
_ELEMENT_SIZE = {
    "DoubleStorage": 8,
    "FloatStorage": 4,
    "HalfStorage": 2,
    "BFloat16Storage": 2,
    "LongStorage": 8,
    "IntStorage": 4,
    "ShortStorage": 2,
    "CharStorage": 1,
    "ByteStorage": 1,
    "BoolStorage": 1,
    "ComplexDoubleStorage": 16,
    "ComplexFloatStorage": 8,
    "QInt8Storage": 1,
    "QUInt8Storage": 1,
    "QInt32Storage": 4,
}


def _count(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise LayoutError(f"{what}: expected a count, got {type(value).__name__}")
    return value


def _header(value: object, what: str) -> list[object]:
    if not isinstance(value, Seq) or len(value.items) != 3:
        raise LayoutError(f"{what}: expected a 3-tuple header")
    return value.items


def _read_int(r: CountingReader, fmt: str, what: str) -> int:
    size = struct.calcsize(fmt)
    data = r.read(size)
    if len(data) != size:
        raise LayoutError(f"{what}: end of data")
    value = struct.unpack(fmt, data)[0]
    assert isinstance(value, int)
    return value


def legacy_storages_framing() -> Between:
    """`storages`: count, then per storage a (key, location, type) pickle + int64 numel + raw bytes, then
    one storage-views pickle."""
    total = -1

    def between(index: int, value: object, r: CountingReader) -> bool:
        nonlocal total
        if index == 0:
            total = _count(value, "storages")
            return True
        if index > total:
            return False  # that was the storage-views pickle
        storage_type = _header(value, "storage header")[2]
        name = storage_type.name if isinstance(storage_type, Global) else ""
        if name not in _ELEMENT_SIZE:
            raise LayoutError(f"storage header names an unknown storage type {name or storage_type!r}")
        numel = _read_int(r, "<q", "storage size")
        if numel < 0:
            raise LayoutError("negative storage size")
        nbytes = numel * _ELEMENT_SIZE[name]
        if r.skip(nbytes) != nbytes:
            raise LayoutError("storage data ends early")
        return True

    return between


def legacy_tensors_framing() -> Between:
    """`tensors`: count, then per tensor a (key, storage id, type) pickle + ndim, sizes, strides, offset."""
    total = -1

    def between(index: int, value: object, r: CountingReader) -> bool:
        nonlocal total
        if index == 0:
            total = _count(value, "tensors")
            return total > 0
        _header(value, "tensor header")
        ndim = _read_int(r, "<i", "tensor ndim")
        if not 0 <= ndim <= 64:
            raise LayoutError(f"tensor with {ndim} dimensions")
        if r.skip(4 + 16 * ndim + 8) != 4 + 16 * ndim + 8:
            raise LayoutError("tensor framing ends early")
        return index < total

    return between
