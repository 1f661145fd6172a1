"""Route a file to the scanners for every format its bytes parse as, recursing into containers.

Format scanners (safetensors, GGUF, Keras/HDF5, SavedModel, ONNX, JSON configs, Python source, chat
templates) are imported lazily by module name and share one signature: `scan(path, limits) -> list[Finding]`.

Content decides first (`sniff`). The name is a second opinion, never a pass: a file named like a format
(`.safetensors`, `.gguf`, `.pb`, `.keras`, `.h5`, `.onnx`) whose bytes are not that format is still handed to
that format's scanner, because a loader picks its parser by the name and the scanner's "malformed" finding
is the precise answer; the mismatch itself is a medium `format.name-mismatch`. Standalone chat templates
(`*.jinja`) are text to the sniffer and go to the template scanner by name.
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
# name suffix -> (formats the content should sniff as, scanner module the loader's parser corresponds to)
NAMED_FORMATS: dict[str, tuple[frozenset[FileFormat], str]] = {
    ".safetensors": (frozenset({FileFormat.SAFETENSORS}), "safetensors"),
    ".gguf": (frozenset({FileFormat.GGUF}), "gguf"),
    ".pb": (frozenset({FileFormat.SAVED_MODEL}), "savedmodel"),
    ".keras": (frozenset({FileFormat.KERAS, FileFormat.HDF5}), "keras"),
    ".h5": (frozenset({FileFormat.HDF5}), "keras"),
    ".hdf5": (frozenset({FileFormat.HDF5}), "keras"),
    ".onnx": (frozenset({FileFormat.ONNX}), "onnx"),
    ".jinja": (frozenset({FileFormat.TEXT}), "templates"),
    ".jinja2": (frozenset({FileFormat.TEXT}), "templates"),
    ".j2": (frozenset({FileFormat.TEXT}), "templates"),
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


def named_format(hint: str) -> tuple[frozenset[FileFormat], str] | None:
    """What the file's name claims it is: (formats its content should sniff as, scanner module), or None."""
    lower = hint.lower()
    dot = lower.rfind(".")
    return NAMED_FORMATS.get(lower[dot:]) if dot >= 0 else None


def place(inner: str, location: str, path: Path, *, member: bool, base: str) -> str:
    """A format scanner's location, placed in the whole scan.

    Scanners name the file by `path.name`, which for an archive member is a temp file and for a proxy blob
    its hash: that name is replaced. Inside-the-file locations of a member get the member path in front
    (`outer.zip!dir/config.json:auto_map`), so a finding says which member it came from.
    """
    if not inner:
        return location
    own = path.name
    rest = None
    if inner == own:
        rest = ""
    elif inner.startswith(own) and inner[len(own)] in ": ":
        rest = inner[len(own) :]
    if member:
        if rest is None:
            return f"{location}:{inner}"
        return f"{location}{rest}"
    if rest is not None and own != base:
        return f"{base}{rest}"
    return inner


def _run_format_module(
    module: str, label: str, path: Path, state: ScanState, location: str, *, member: bool, base: str
) -> None:
    scanner = _format_scanner(module)
    if scanner is None:
        state.add(Severity.INFO, "scan.pending", f"no {label} content scanner installed yet", location)
        return
    try:
        found = scanner(path, state.limits)
    except MemoryError:
        raise
    except Exception as exc:  # their contract says never raise; fail closed if they do
        state.give_up("scan.crash", f"{module} scanner crashed: {type(exc).__name__}: {exc}"[:500], location)
        return
    for f in found:
        where = place(f.location, location, path, member=member, base=base)
        state.findings.append(f if where == f.location else f.model_copy(update={"location": where}))


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
    member = depth > 0
    modules_run: set[str] = set()
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
        module = FORMAT_MODULES.get(fmt)
        if module is not None and module not in modules_run:
            modules_run.add(module)
            _run_format_module(module, fmt.value, path, state, location, member=member, base=base)
        if fmt in _CONTAINERS:
            scan_archive(path, fmt, state, location=location, hint=hint, depth=depth, recurse=recurse)
    named = named_format(base)
    if named is not None and sn.format is not FileFormat.EMPTY:  # zero bytes carry nothing for any loader
        expected, module = named
        if not expected & set(sn.formats):
            claimed = "/".join(sorted(f.value for f in expected))
            state.add(
                Severity.MEDIUM,
                "format.name-mismatch",
                f"named as {claimed} but the content is {sn.format.value}; scanned as both",
                location,
            )
        if module not in modules_run:
            _run_format_module(module, module, path, state, location, member=member, base=base)
    return sn
