"""ONNX model scanning without the `onnx` package: external-data paths and custom-op domains.

ONNX has no code, but two fields reach outside the model. A tensor's `external_data` `location` is a file
path the runtime opens relative to the model directory: an absolute path or one with `..` reads arbitrary
host files into the model (exfiltration through outputs; onnx CVE-2022-25882, CVE-2024-27318). A node in a
domain other than the standard ones needs a custom-op library, i.e. native code the user must load.

Walked with protowire (field numbers from onnx.proto3):

    ModelProto        7: graph, 8: opset_import, 20: training_info (1, 2: GraphProto), 25: functions
    GraphProto        1: node, 5: initializer, 15: sparse_initializer (SparseTensorProto 1, 2: TensorProto)
    NodeProto         3: name, 4: op_type, 5: attribute, 7: domain
    AttributeProto    5: t, 6: g, 10: tensors, 11: graphs, 22: sparse_tensor, 23: sparse_tensors
    TensorProto       8: name, 13: external_data (StringStringEntryProto 1: key, 2: value), 14: data_location
    FunctionProto     1: name, 7: node, 10: domain

Severities: critical `onnx.external-data-escape`; medium `onnx.custom-domain` (ops defined neither by the
standard domains nor by a function inside the model); medium `onnx.external-data-missing` (external data
without a location); high `onnx.malformed` (wire-level corruption or nesting past `MAX_GRAPH_DEPTH`).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path

from proxy.models import Finding, Severity
from proxy.scan.limits import ScanLimits
from proxy.scan.protowire import LEN, VARINT, Budget, WireError, iter_fields, mapped, messages, text

ENGINE = "hubgate"
MAX_GRAPH_DEPTH = 32  # If/Loop/Scan subgraphs nest; real models stay in single digits
MAX_FINDINGS = 50
STANDARD_DOMAINS = frozenset(
    {"", "ai.onnx", "ai.onnx.ml", "com.microsoft", "ai.onnx.training", "ai.onnx.preview.training"}
)
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")  # file:, http:, and Windows drive letters (C:)


@dataclass
class _Seen:
    nodes: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (domain, op) -> node names
    functions: set[tuple[str, str]] = field(default_factory=set)  # (domain, name) defined in the model
    findings: list[Finding] = field(default_factory=list)


def scan(path: Path, limits: ScanLimits) -> list[Finding]:
    """Findings for the ONNX model at `path` (mapped; only the structure is walked, never tensor data)."""
    del limits  # the wire reader's field budget bounds the walk
    try:
        with mapped(path) as buf:
            return check_model_bytes(buf)
    except OSError as exc:
        return [_f(Severity.HIGH, "unreadable", f"cannot read file: {exc.strerror or exc}")]


def check_model_bytes(buf: bytes | memoryview, budget: Budget | None = None) -> list[Finding]:
    """Findings for a serialized ModelProto (pure)."""
    seen = _Seen()
    budget = budget or Budget()
    try:
        _walk_model(buf, seen, budget)
    except WireError as exc:
        seen.findings.append(_f(Severity.HIGH, "malformed", f"not a well-formed ONNX protobuf: {exc}"))
    findings = seen.findings
    for (domain, op), names in sorted(seen.nodes.items()):
        if domain in STANDARD_DOMAINS or (domain, op) in seen.functions:
            continue
        findings.append(
            _f(
                Severity.MEDIUM,
                "custom-domain",
                f"op {op!r} from custom domain {domain!r} ({len(names)} node(s)) needs a custom-op "
                "library: native code outside the model",
                names[0],
            )
        )
    if len(findings) > MAX_FINDINGS:
        findings = [*findings[:MAX_FINDINGS], _f(Severity.HIGH, "many-findings", "more findings left out")]
    return findings


def _walk_model(buf: bytes | memoryview, seen: _Seen, budget: Budget) -> None:
    for number, wire_type, value in iter_fields(buf, budget):
        if wire_type != LEN or not isinstance(value, memoryview):
            continue
        if number == 7:
            _walk_graph(value, "graph", seen, budget, 0)
        elif number == 20:  # TrainingInfoProto: initialization and algorithm graphs
            for sub in (1, 2):
                for graph in messages(value, sub, budget):
                    _walk_graph(graph, "training_info", seen, budget, 0)
        elif number == 25:
            _walk_function(value, seen, budget)


def _walk_function(function: memoryview, seen: _Seen, budget: Budget) -> None:
    name, domain, nodes = "", "", []
    for number, wire_type, value in iter_fields(function, budget):
        if wire_type != LEN or not isinstance(value, memoryview):
            continue
        if number == 1:
            name = text(value)
        elif number == 10:
            domain = text(value)
        elif number == 7:
            nodes.append(value)
    seen.functions.add((domain, name))
    for node in nodes:
        _walk_node(node, f"function {domain}.{name}", seen, budget, 1)


def _walk_graph(graph: memoryview, where: str, seen: _Seen, budget: Budget, depth: int) -> None:
    if depth > MAX_GRAPH_DEPTH:
        raise WireError(f"subgraphs nested deeper than {MAX_GRAPH_DEPTH}")
    for number, wire_type, value in iter_fields(graph, budget):
        if wire_type != LEN or not isinstance(value, memoryview):
            continue
        if number == 1:
            _walk_node(value, where, seen, budget, depth)
        elif number == 5:
            _check_tensor(value, where, seen, budget)
        elif number == 15:
            _check_sparse(value, where, seen, budget)


def _walk_node(node: memoryview, where: str, seen: _Seen, budget: Budget, depth: int) -> None:
    name, op, domain = "", "", ""
    attributes = []
    for number, wire_type, value in iter_fields(node, budget):
        if wire_type != LEN or not isinstance(value, memoryview):
            continue
        if number == 3:
            name = text(value)
        elif number == 4:
            op = text(value)
        elif number == 7:
            domain = text(value)
        elif number == 5:
            attributes.append(value)
    place = f"{where}/{name or op}"
    seen.nodes.setdefault((domain, op), []).append(place)
    for attribute in attributes:
        for number, wire_type, value in iter_fields(attribute, budget):
            if wire_type != LEN or not isinstance(value, memoryview):
                continue
            if number in (5, 10):
                _check_tensor(value, place, seen, budget)
            elif number in (6, 11):
                _walk_graph(value, place, seen, budget, depth + 1)
            elif number in (22, 23):
                _check_sparse(value, place, seen, budget)


def _check_sparse(sparse: memoryview, where: str, seen: _Seen, budget: Budget) -> None:
    for number, wire_type, value in iter_fields(sparse, budget):
        if number in (1, 2) and wire_type == LEN and isinstance(value, memoryview):
            _check_tensor(value, where, seen, budget)


def _check_tensor(tensor: memoryview, where: str, seen: _Seen, budget: Budget) -> None:
    name, external, location = "", False, None
    for number, wire_type, value in iter_fields(tensor, budget):
        if number == 8 and wire_type == LEN and isinstance(value, memoryview):
            name = text(value)
        elif number == 14 and wire_type == VARINT:
            external = value == _EXTERNAL
        elif number == 13 and wire_type == LEN and isinstance(value, memoryview):
            key, entry_value = "", ""
            for sub, sub_type, item in iter_fields(value, budget):
                if sub_type == LEN and isinstance(item, memoryview) and sub in (1, 2):
                    key, entry_value = (text(item), entry_value) if sub == 1 else (key, text(item))
            if key == "location":
                location = entry_value
    place = f"{where}/{name}" if name else where
    if location:
        problem = location_problem(location)
        if problem:
            seen.findings.append(
                _f(
                    Severity.CRITICAL,
                    "external-data-escape",
                    f"tensor {name!r} loads external data from {location!r}: {problem}",
                    place,
                )
            )
    elif external or location == "":
        seen.findings.append(
            _f(
                Severity.MEDIUM,
                "external-data-missing",
                f"tensor {name!r} is marked external but names no location",
                place,
            )
        )


def location_problem(location: str) -> str | None:
    """Why an external-data location would leave the model directory, or None if it stays inside."""
    if not location:
        return "empty path"
    if "\x00" in location:
        return "path contains a NUL byte"
    normal = location.replace("\\", "/")
    if normal.startswith("/") or _URL_RE.match(normal):
        return "absolute path or URL outside the model directory"
    if ".." in normal.split("/") or posixpath.normpath(normal).startswith(".."):
        return "path climbs out of the model directory with '..'"
    return None


def _f(severity: Severity, rule: str, message: str, location: str = "") -> Finding:
    return Finding(engine=ENGINE, severity=severity, rule=f"onnx.{rule}", message=message, location=location)
