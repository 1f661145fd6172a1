"""Keras models: HDF5 `.h5` (Keras 2, `model_config` attribute) and Keras v3 `.keras` zips (`config.json`).

A Keras model config is a tree of `{class_name, config, module?, registered_name?}` objects. Loading it
deserializes every node, so it carries code in three ways:
- `Lambda` layers hold marshalled Python bytecode (Keras 2: `function` = [base64 code, defaults, closure],
  `function_type: lambda`; Keras 3: `{class_name: "__lambda__", config: {code: ...}}`) that runs on load or
  on first call: critical `keras.lambda`, wherever it sits (sub-models nest `Functional`/`Sequential`).
- `module` names a Python module imported on load (Keras 3): a stdlib module that runs commands or imports
  code (`os`, `subprocess`, `builtins`, `importlib`...) is critical `keras.dangerous-module` (CVE-2025-1550
  style); any other module outside the Keras packages is medium `keras.custom-object`, and so is a
  `registered_name` registered by a package other than Keras.
- HDF5 files can point outside themselves: external links, external raw storage and virtual datasets read
  host files into the model (high `keras.h5-external`).
Unreadable containers or configs are medium `keras.unreadable` (cannot vouch for them); limits hit are
medium `keras.limit`. Needs h5py, not TensorFlow or Keras. Nothing is deserialized except JSON. Weights
inside a `.keras` zip are HDF5 members: the dispatcher's archive recursion hands them to `scan_h5` via `scan`.
libhdf5 can crash on corrupt files; the scan worker process contains that (a crash is an error finding).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import IO, Any

from proxy.models import Finding, Severity
from proxy.scan.limits import ScanLimits

ENGINE = "hubgate"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
MAX_FINDINGS = 50
MAX_CONFIG_NODES = 2_000_000
MAX_H5_OBJECTS = 200_000
KERAS_PACKAGES = frozenset({"keras", "tf_keras", "keras_hub", "keras_nlp", "keras_cv", "keras_rs"})
_DANGEROUS_MODULE_NAMES = (
    "os posix nt sys subprocess builtins __builtin__ importlib runpy shutil socket ctypes pty pickle "
    "marshal code codeop webbrowser multiprocessing operator functools"
)
DANGEROUS_MODULES = frozenset(_DANGEROUS_MODULE_NAMES.split())
_H5_ATTRS = ("model_config", "training_config")


def scan(path: Path, limits: ScanLimits) -> list[Finding]:
    """Findings for a Keras `.h5` or `.keras` file at `path` (chosen by content, not by name)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        return [_f(Severity.MEDIUM, "unreadable", f"cannot read file: {exc.strerror or exc}")]
    if head.startswith(b"PK"):
        return _cap(_scan_keras_zip(path, limits))
    return _cap(scan_h5(path, limits, where=path.name))


def scan_h5(source: Path | IO[bytes], limits: ScanLimits, where: str) -> list[Finding]:
    """Findings for one HDF5 file (path or seekable binary file object)."""
    import h5py  # deferred: only HDF5 scans pay for loading libhdf5

    try:
        with h5py.File(source, "r") as h5:
            findings = []
            for name in _H5_ATTRS:
                if name in h5.attrs:
                    findings.extend(_h5_config(h5, name, limits, f"{where}:{name}"))
            findings.extend(_h5_external(h5, where))
            return findings
    except Exception as exc:  # libhdf5 raises OSError/KeyError/ValueError/RuntimeError on hostile files
        return [_f(Severity.MEDIUM, "unreadable", f"HDF5 file cannot be read: {_short(str(exc))}", where)]


def check_keras_config(config: Any, where: str) -> list[Finding]:
    """Findings for a parsed Keras model/training config (pure)."""
    findings: list[Finding] = []
    stack: list[tuple[Any, str]] = [(config, "")]
    visited = 0
    while stack:
        visited += 1
        if visited > MAX_CONFIG_NODES:
            findings.append(_f(Severity.MEDIUM, "limit", "config too large to check completely", where))
            break
        node, path = stack.pop()
        if isinstance(node, dict):
            findings.extend(_check_node(node, f"{where}:{path or '/'}"))
            for key, value in node.items():
                if isinstance(value, (dict, list)):
                    stack.append((value, f"{path}/{key}"))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                if isinstance(value, (dict, list)):
                    stack.append((value, f"{path}[{index}]"))
    return findings


def _check_node(node: dict[str, Any], location: str) -> list[Finding]:
    findings = []
    class_name = node.get("class_name")
    inner = node.get("config")
    layer = inner.get("name") if isinstance(inner, dict) else None
    label = f"{class_name} layer {layer!r}" if layer else str(class_name)
    if class_name == "Lambda":
        findings.append(
            _f(
                Severity.CRITICAL,
                "lambda",
                f"{label} carries Python code that runs when the model is loaded or called",
                location,
            )
        )
    elif class_name == "__lambda__" or node.get("function_type") == "lambda":
        findings.append(_f(Severity.CRITICAL, "lambda", "serialized Python lambda (marshalled bytecode)", location))
    module = node.get("module")
    if isinstance(module, str) and module:
        root = module.split(".")[0]
        if root in DANGEROUS_MODULES:
            findings.append(
                _f(
                    Severity.CRITICAL,
                    "dangerous-module",
                    f"{label} is loaded from module {module!r}: importing it gives code execution",
                    location,
                )
            )
        elif root not in KERAS_PACKAGES:
            findings.append(
                _f(
                    Severity.MEDIUM,
                    "custom-object",
                    f"{label} comes from module {module!r}, outside Keras: custom code",
                    location,
                )
            )
    registered = node.get("registered_name")
    if isinstance(registered, str) and ">" in registered:
        package = registered.split(">", 1)[0]
        if package not in KERAS_PACKAGES and package.lower() != "keras":
            findings.append(
                _f(
                    Severity.MEDIUM,
                    "custom-object",
                    f"{label} is a custom object registered as {registered!r}",
                    location,
                )
            )
    return findings


def _h5_config(h5: Any, name: str, limits: ScanLimits, where: str) -> list[Finding]:
    size = h5.attrs.get_id(name).get_storage_size()
    if size > limits.max_json_bytes:
        return [_f(Severity.MEDIUM, "limit", f"{name} attribute is {size} bytes; not checked", where)]
    raw = h5.attrs[name]
    if hasattr(raw, "tobytes") and not isinstance(raw, (bytes, str)):
        raw = raw.item() if getattr(raw, "size", 0) == 1 else raw.tobytes()
    return _json_config(raw, where)


def _json_config(raw: Any, where: str) -> list[Finding]:
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
        config = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return [_f(Severity.MEDIUM, "unreadable", f"model config is not valid JSON: {_short(str(exc))}", where)]
    return check_keras_config(config, where)


def _h5_external(h5: Any, where: str) -> list[Finding]:
    """External links, external raw storage and virtual datasets: data read from outside the file."""
    import h5py

    findings: list[Finding] = []
    stack: list[tuple[Any, str]] = [(h5, "")]
    visited = 0
    while stack:
        group, prefix = stack.pop()
        for name in group:
            visited += 1
            if visited > MAX_H5_OBJECTS:
                return [*findings, _f(Severity.MEDIUM, "limit", "too many HDF5 objects to check", where)]
            path = f"{prefix}/{name}"
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                findings.append(
                    _f(
                        Severity.HIGH,
                        "h5-external",
                        f"external link {path} -> {link.filename}:{link.path} reads another file",
                        f"{where}:{path}",
                    )
                )
                continue
            if isinstance(link, h5py.SoftLink):
                continue
            obj = group.get(name)
            if isinstance(obj, h5py.Group):
                stack.append((obj, path))
            elif isinstance(obj, h5py.Dataset):
                findings.extend(_dataset_sources(obj, f"{where}:{path}"))
    return findings


def _dataset_sources(dataset: Any, location: str) -> list[Finding]:
    if dataset.id.get_create_plist().get_external_count() > 0:
        return [_f(Severity.HIGH, "h5-external", "dataset stores its data in an external raw file", location)]
    if dataset.is_virtual:
        files = sorted({source.file_name for source in dataset.virtual_sources()} - {"."})
        if files:
            return [_f(Severity.HIGH, "h5-external", f"virtual dataset maps other files: {files[:3]}", location)]
    return []


def _scan_keras_zip(path: Path, limits: ScanLimits) -> list[Finding]:
    where = path.name
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            if len(infos) > limits.max_archive_members:
                return [_f(Severity.MEDIUM, "limit", f"{len(infos)} members; too many to check", where)]
            members = {info.filename: info for info in infos}
            config = members.get("config.json")
            if config is None:
                return [_f(Severity.MEDIUM, "unreadable", ".keras archive has no config.json", where)]
            # model.weights.h5 is not spooled here: the dispatcher treats .keras as a container too and
            # scans each member (HDF5 -> scan_h5) under the archive limits, so it is read once, not twice
            return _zip_json(archive, config, limits, f"{where}:config.json")
    except Exception as exc:  # zipfile raises BadZipFile, zlib.error, NotImplementedError, struct.error...
        return [_f(Severity.MEDIUM, "unreadable", f".keras archive cannot be read: {_short(str(exc))}", where)]


def _zip_json(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ScanLimits, where: str) -> list[Finding]:
    if info.file_size > limits.max_json_bytes:
        return [_f(Severity.MEDIUM, "limit", f"config.json is {info.file_size} bytes; not checked", where)]
    with archive.open(info) as member:
        data = member.read(limits.max_json_bytes + 1)
    if len(data) > limits.max_json_bytes:  # the central directory lied about the size
        return [_f(Severity.MEDIUM, "limit", "config.json exceeds the JSON limit; not checked", where)]
    return _json_config(data, where)


def _cap(findings: list[Finding]) -> list[Finding]:
    if len(findings) <= MAX_FINDINGS:
        return findings
    return [*findings[:MAX_FINDINGS], _f(Severity.HIGH, "many-findings", "more findings were left out")]


def _short(text: str) -> str:
    return text if len(text) <= 100 else text[:97] + "..."


def _f(severity: Severity, rule: str, message: str, location: str = "") -> Finding:
    return Finding(engine=ENGINE, severity=severity, rule=f"keras.{rule}", message=message, location=location)
