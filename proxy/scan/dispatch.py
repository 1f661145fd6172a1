"""Route a file to the scanners for every format its bytes parse as, recursing into containers.

Format scanners owned elsewhere (safetensors, GGUF, Keras/HDF5, SavedModel, ONNX, JSON configs, Python
source) are imported lazily by module name and share one signature: `scan(path, limits) -> list[Finding]`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from proxy.models import FileFormat, Finding, Severity
from proxy.scan.archive import scan_archive
from proxy.scan.limits import ScanLimits
from proxy.scan.pickled import (
    legacy_storages_framing,
    legacy_tensors_framing,
    scan_npy,
    scan_pickle_file,
    scan_torch_zip,
)
from proxy.scan.sniff import Sniff, sniff_file
from proxy.scan.state import ScanState

# FileFormat -> module in proxy.scan exposing scan(path, limits) -> list[Finding]
FORMAT_MODULES: dict[FileFormat, str] = {
    FileFormat.SAFETENSORS: "safetensors",
    FileFormat.GGUF: "gguf",
    FileFormat.HDF5: "keras",
    FileFormat.KERAS: "keras",
    FileFormat.SAVED_MODEL: "savedmodel",
    FileFormat.ONNX: "onnx",
    FileFormat.JSON: "config",
    FileFormat.PYTHON: "source",
}
_CONTAINERS = {
    FileFormat.ZIP,
    FileFormat.NUMPY_NPZ,
    FileFormat.KERAS,
    FileFormat.TAR,
    FileFormat.TORCH_LEGACY_TAR,
    FileFormat.SEVEN_ZIP,
    FileFormat.GZIP,
    FileFormat.ZLIB,
    FileFormat.XZ,
    FileFormat.BZ2,
}


def _format_scanner(module: str) -> Callable[[Path, ScanLimits], list[Finding]] | None:
    try:
        mod = importlib.import_module(f"proxy.scan.{module}")
    except ModuleNotFoundError as exc:
        if exc.name == f"proxy.scan.{module}":
            return None  # TODO(scan): lands with the format scanners
        raise
    return getattr(mod, "scan", None)


def _run_format_module(fmt: FileFormat, path: Path, state: ScanState, location: str) -> None:
    module = FORMAT_MODULES[fmt]
    scanner = _format_scanner(module)
    if scanner is None:
        state.add(Severity.INFO, "scan.pending", f"no {fmt.value} content scanner installed yet", location)
        return
    try:
        found = scanner(path, state.limits)
    except MemoryError:
        raise
    except Exception as exc:  # their contract says never raise; fail closed if they do
        state.give_up("scan.crash", f"{module} scanner crashed: {type(exc).__name__}: {exc}"[:500], location)
        return
    for f in found:
        state.findings.append(f if f.location else f.model_copy(update={"location": location}))


def scan_one(
    path: Path, state: ScanState, *, location: str, hint: str, depth: int = 0, in_legacy_tar: bool = False
) -> Sniff:
    """Sniff `path` and scan it as every format it parses as. Returns the sniff result."""
    sn = sniff_file(path, name_hint=hint)
    for fmt in sn.formats:
        state.saw(fmt)
    for f in sn.findings:
        state.findings.append(f.model_copy(update={"location": f.location or location}))

    legacy_tar = FileFormat.TORCH_LEGACY_TAR in sn.formats

    def recurse(member: Path, where: str, member_hint: str, member_depth: int) -> None:
        scan_one(member, state, location=where, hint=member_hint, depth=member_depth, in_legacy_tar=legacy_tar)

    base = hint.rsplit("/", 1)[-1]
    for fmt in sn.formats:
        if fmt is FileFormat.PICKLE and in_legacy_tar and base in ("storages", "tensors"):
            framing = legacy_storages_framing() if base == "storages" else legacy_tensors_framing()
            scan_pickle_file(path, state, location, between=framing)
        elif fmt in (FileFormat.PICKLE, FileFormat.JOBLIB):
            scan_pickle_file(path, state, location)
        elif fmt is FileFormat.TORCH_LEGACY:
            # magic, protocol, sys_info, object, storage keys: then raw storage bytes, never unpickled
            scan_pickle_file(path, state, location, max_pickles=5)
        elif fmt in (FileFormat.TORCH_ZIP, FileFormat.TORCHSCRIPT):
            scan_torch_zip(path, state, location)
            if fmt is FileFormat.TORCHSCRIPT:
                state.add(
                    Severity.LOW,
                    "torchscript.code",
                    "TorchScript program: its code runs in the TorchScript interpreter on torch.jit.load",
                    location,
                )
        elif fmt is FileFormat.NUMPY:
            scan_npy(path, state, location)
        if fmt in FORMAT_MODULES:
            _run_format_module(fmt, path, state, location)
        if fmt in _CONTAINERS:
            scan_archive(path, fmt, state, location=location, hint=hint, depth=depth, recurse=recurse)
    return sn
