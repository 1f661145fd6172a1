"""TensorFlow SavedModel (`saved_model.pb`) and frozen GraphDef scanning, without TensorFlow.

A graph runs its ops when the model is called (and some at load time, in restore functions). Ops that read
or write files, talk to the network or call back into Python are the code-execution and exfiltration
primitives of a hostile graph. We collect every op name from the protobuf wire format (see protowire):

    SavedModel      2: MetaGraphDef (repeated)
    MetaGraphDef    1: MetaInfoDef (4: OpList stripped_op_list -> 1: OpDef -> 1: name), 2: GraphDef
    GraphDef        1: NodeDef (repeated), 2: FunctionDefLibrary -> 1: FunctionDef -> 3: NodeDef (repeated)
    NodeDef         1: name, 2: op

A file whose first field is a length-delimited field 1 is a bare GraphDef (frozen `.pb`); otherwise it is
read as a SavedModel. Keras layer configs ride along in two places, both checked with `keras.check_keras_config`
(a Lambda layer there is critical): `MetaGraphDef.object_graph_def` (7) -> `SavedObject.user_object` (4) ->
`metadata` (3), and `keras_metadata.pb` (`SavedMetadata` 1 -> `SavedObject` 4 identifier `_tf_keras_*`, 5 JSON).

Severities: critical for ops that run Python (`PyFunc`, `PyFuncStateless`, `EagerPyFunc`); high for ops that
read/write arbitrary files or memory-map them, write debug dumps, or open network channels; medium for ops
that write summaries/logs to disk. `SaveV2`/`RestoreV2`/`MergeV2Checkpoints`/`ShardedFilename` are benign:
every SavedModel checkpoints its variables with them. Malformed protobuf is high (`savedmodel.malformed`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from proxy.models import Finding, Severity
from proxy.scan.limits import ScanLimits
from proxy.scan.protowire import LEN, Budget, WireError, iter_fields, mapped, messages, text

ENGINE = "hubgate"
MAX_NAMES_SHOWN = 3

_PYTHON = "runs Python code in the loading process"
_READS = "reads files from the host"
_WRITES = "writes files on the host"
_NETWORK = "opens network channels"
DANGEROUS_OPS: dict[str, tuple[Severity, str]] = {
    "PyFunc": (Severity.CRITICAL, _PYTHON),
    "PyFuncStateless": (Severity.CRITICAL, _PYTHON),
    "EagerPyFunc": (Severity.CRITICAL, _PYTHON),
    "ReadFile": (Severity.HIGH, _READS),
    "WriteFile": (Severity.HIGH, _WRITES),
    "MatchingFiles": (Severity.HIGH, "lists files on the host"),
    "MatchingFilesDataset": (Severity.HIGH, "lists files on the host"),
    "ImmutableConst": (Severity.HIGH, "memory-maps an arbitrary file"),
    "Save": (Severity.HIGH, "writes tensors to a file path chosen by the graph (v1 saver)"),
    "SaveSlices": (Severity.HIGH, "writes tensors to a file path chosen by the graph (v1 saver)"),
    "Restore": (Severity.MEDIUM, "reads tensors from a file path chosen by the graph (v1 saver)"),
    "RestoreSlice": (Severity.MEDIUM, "reads tensors from a file path chosen by the graph (v1 saver)"),
    "WholeFileReader": (Severity.HIGH, _READS),
    "WholeFileReaderV2": (Severity.HIGH, _READS),
    "TextLineReader": (Severity.HIGH, _READS),
    "TextLineReaderV2": (Severity.HIGH, _READS),
    "FixedLengthRecordReader": (Severity.HIGH, _READS),
    "FixedLengthRecordReaderV2": (Severity.HIGH, _READS),
    "TFRecordReader": (Severity.HIGH, _READS),
    "TFRecordReaderV2": (Severity.HIGH, _READS),
    "LMDBReader": (Severity.HIGH, _READS),
    "TextLineDataset": (Severity.HIGH, _READS),
    "TFRecordDataset": (Severity.HIGH, _READS),
    "TFRecordDatasetV2": (Severity.HIGH, _READS),
    "FixedLengthRecordDataset": (Severity.HIGH, _READS),
    "FixedLengthRecordDatasetV2": (Severity.HIGH, _READS),
    "LMDBDataset": (Severity.HIGH, _READS),
    "SqlDataset": (Severity.HIGH, "opens an SQLite database on the host"),
    "ExperimentalSqlDataset": (Severity.HIGH, "opens an SQLite database on the host"),
    "DebugIdentity": (Severity.HIGH, "dumps tensors to debug URLs (file:// or grpc://)"),
    "DebugIdentityV2": (Severity.HIGH, "dumps tensors to a debug directory"),
    "DebugIdentityV3": (Severity.HIGH, "dumps tensors to debug URLs (file:// or grpc://)"),
    "DebugNanCount": (Severity.HIGH, "dumps tensors to debug URLs (file:// or grpc://)"),
    "DebugNumericSummary": (Severity.HIGH, "dumps tensors to debug URLs (file:// or grpc://)"),
    "DebugNumericSummaryV2": (Severity.MEDIUM, "debug instrumentation op"),
    "Rpc": (Severity.HIGH, _NETWORK),
    "TryRpc": (Severity.HIGH, _NETWORK),
    "RpcCall": (Severity.HIGH, _NETWORK),
    "RpcClient": (Severity.HIGH, _NETWORK),
    "RpcServer": (Severity.HIGH, _NETWORK),
    "RpcServerStart": (Severity.HIGH, _NETWORK),
    "RpcServerRegister": (Severity.HIGH, _NETWORK),
    "GcsConfigureCredentials": (Severity.HIGH, "configures cloud storage credentials"),
    "GcsConfigureBlockCache": (Severity.MEDIUM, "configures cloud storage access"),
    "CreateSummaryFileWriter": (Severity.MEDIUM, _WRITES),
    "CreateSummaryDbWriter": (Severity.MEDIUM, _WRITES),
    "WriteAudioSummary": (Severity.MEDIUM, _WRITES),
    "WriteGraphSummary": (Severity.MEDIUM, _WRITES),
    "WriteHistogramSummary": (Severity.MEDIUM, _WRITES),
    "WriteImageSummary": (Severity.MEDIUM, _WRITES),
    "WriteRawProtoSummary": (Severity.MEDIUM, _WRITES),
    "WriteScalarSummary": (Severity.MEDIUM, _WRITES),
    "WriteSummary": (Severity.MEDIUM, _WRITES),
}


def scan(path: Path, limits: ScanLimits) -> list[Finding]:
    """Findings for the SavedModel / GraphDef protobuf at `path` (the file is mapped, not read whole)."""
    del limits  # protobuf is bounded by the wire reader's own field budget
    try:
        with mapped(path) as buf:
            return check_graph_bytes(buf)
    except OSError as exc:
        return [_f(Severity.HIGH, "unreadable", f"cannot read file: {exc.strerror or exc}")]


@dataclass
class _Seen:
    ops: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # op -> node locations
    keras: list[tuple[str, str]] = field(default_factory=list)  # (Keras metadata JSON, location)


def check_graph_bytes(buf: bytes | memoryview, budget: Budget | None = None) -> list[Finding]:
    """Findings for a serialized SavedModel, GraphDef or Keras `keras_metadata.pb` (pure)."""
    seen = _Seen()
    try:
        _collect(buf, seen, budget or Budget())
    except WireError as exc:
        return [
            *_op_findings(seen.ops),
            *_keras_findings(seen),
            _f(Severity.HIGH, "malformed", f"not a well-formed TensorFlow protobuf: {exc}"),
        ]
    if not seen.ops and not seen.keras:
        return [_f(Severity.LOW, "empty", "no graph ops found (nothing a TensorFlow loader could run)")]
    return [*_op_findings(seen.ops), *_keras_findings(seen)]


def op_names(buf: bytes | memoryview) -> set[str]:
    """Every op name in a SavedModel/GraphDef (for tests and reports); raises WireError when malformed."""
    seen = _Seen()
    _collect(buf, seen, Budget())
    return set(seen.ops)


def _collect(buf: bytes | memoryview, seen: _Seen, budget: Budget) -> None:
    # SavedModel field 1 is a varint (schema version); GraphDef field 1 is NodeDef, a message.
    if any(number == 1 and wire_type == LEN for number, wire_type, _ in iter_fields(buf, budget)):
        _walk_graph(buf, "graph", seen, budget)
    else:
        _walk_saved_model(buf, seen, budget)


def _walk_saved_model(buf: bytes | memoryview, seen: _Seen, budget: Budget) -> None:
    for index, meta_graph in enumerate(messages(buf, 2, budget)):
        where = f"meta_graph[{index}]"
        for number, wire_type, value in iter_fields(meta_graph, budget):
            if wire_type != LEN or not isinstance(value, memoryview):
                continue
            if number == 1:  # MetaInfoDef.stripped_op_list: the ops the graph declares it uses
                for op_list in messages(value, 4, budget):
                    for op_def in messages(op_list, 1, budget):
                        for name in messages(op_def, 1, budget):
                            seen.ops[text(name)].append(f"{where}.stripped_op_list")
            elif number == 2:
                _walk_graph(value, where, seen, budget)
            elif number == 7:  # SavedObjectGraph -> SavedObject.user_object -> SavedUserObject.metadata
                for node_index, saved_object in enumerate(messages(value, 1, budget)):
                    for user_object in messages(saved_object, 4, budget):
                        for metadata in messages(user_object, 3, budget):
                            location = f"{where}.object_graph[{node_index}]"
                            seen.keras.append((text(metadata), location))


def _walk_graph(graph: memoryview | bytes, where: str, seen: _Seen, budget: Budget) -> None:
    for number, wire_type, value in iter_fields(graph, budget):
        if wire_type != LEN or not isinstance(value, memoryview):
            continue
        if number == 1:
            _record_node(value, where, seen, budget)
        elif number == 2:  # FunctionDefLibrary
            for function in messages(value, 1, budget):
                fname = ""
                for signature in messages(function, 1, budget):
                    for name in messages(signature, 1, budget):
                        fname = text(name)
                for node in messages(function, 3, budget):
                    _record_node(node, f"{where}.function[{fname}]", seen, budget)


def _record_node(node: memoryview, where: str, seen: _Seen, budget: Budget) -> None:
    """A NodeDef (1 name, 2 op), or a keras_metadata.pb SavedObject (3 path, 4 identifier, 5 JSON)."""
    strings: dict[int, memoryview] = {}
    for number, wire_type, value in iter_fields(node, budget):
        if wire_type == LEN and isinstance(value, memoryview) and number in (1, 2, 3, 4, 5):
            strings[number] = value
    identifier = bytes(strings.get(4, b""))
    if identifier.startswith(b"_tf_keras") and 5 in strings:  # NodeDef field 4 is a device, never this
        path = text(strings[3]) if 3 in strings else ""
        seen.keras.append((text(strings[5]), f"keras_metadata:{path}"))
        return
    name = text(strings[1]) if 1 in strings else ""
    op = text(strings[2]) if 2 in strings else ""
    if op:
        seen.ops[op].append(f"{where}/{name}" if name else where)


def _keras_findings(seen: _Seen) -> list[Finding]:
    """Keras layer configs saved beside the graph: Lambda layers here run on `keras.models.load_model`."""
    from proxy.scan.keras import check_keras_config

    findings: list[Finding] = []
    for metadata, location in seen.keras[:100_000]:
        try:
            config = json.loads(metadata)
        except (ValueError, RecursionError):
            continue  # metadata is informational; a loader that cannot parse it skips it too
        findings.extend(check_keras_config(config, location))
        if len(findings) > 50:
            break
    return findings


def _op_findings(ops: dict[str, list[str]]) -> list[Finding]:
    findings = []
    for op in sorted(ops):
        if op not in DANGEROUS_OPS:
            continue
        severity, why = DANGEROUS_OPS[op]
        places = ops[op]
        shown = ", ".join(places[:MAX_NAMES_SHOWN]) + (" ..." if len(places) > MAX_NAMES_SHOWN else "")
        findings.append(
            _f(
                severity,
                "dangerous-op",
                f"graph uses op {op} ({why}) in {len(places)} place(s): {shown}",
                places[0],
            )
        )
    return findings


def _f(severity: Severity, rule: str, message: str, location: str = "") -> Finding:
    return Finding(engine=ENGINE, severity=severity, rule=f"savedmodel.{rule}", message=message, location=location)
