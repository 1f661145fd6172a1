"""SavedModel / GraphDef op scanning without TensorFlow, and the bounded protobuf wire reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.models import Severity
from proxy.scan import protowire, savedmodel
from tests.corpus_formats import cases_for
from tests.corpus_formats import writers as w
from tests.corpus_formats.common import Case, assert_case, scan_case


@pytest.mark.parametrize("case", cases_for("savedmodel", hostile=True), ids=lambda c: c.name)
def test_hostile_corpus(case: Case, tmp_path: Path) -> None:
    assert_case(case, scan_case(case, tmp_path))


@pytest.mark.parametrize("case", cases_for("savedmodel", hostile=False), ids=lambda c: c.name)
def test_benign_corpus_is_silent(case: Case, tmp_path: Path) -> None:
    assert scan_case(case, tmp_path) == []


def test_ops_come_from_graph_functions_and_stripped_list() -> None:
    graph = w.tf_graph([w.tf_node("a", "Placeholder")], [w.tf_function("f", [w.tf_node("b", "MatMul")])])
    data = w.tf_saved_model(graph, ["Relu"])
    assert savedmodel.op_names(data) == {"Placeholder", "MatMul", "Relu"}


def test_dangerous_op_message_counts_and_locates() -> None:
    fn = w.tf_function("__inference_f", [w.tf_node(f"py{i}", "EagerPyFunc") for i in range(5)])
    (finding,) = savedmodel.check_graph_bytes(w.tf_saved_model(w.tf_graph([], [fn])))
    assert finding.severity is Severity.CRITICAL
    assert finding.location == "meta_graph[0].function[__inference_f]/py0"
    assert "EagerPyFunc" in finding.message and "in 5 place(s)" in finding.message and "..." in finding.message


def test_checkpoint_ops_are_benign() -> None:
    graph = w.tf_graph([w.tf_node(op, op) for op in ("SaveV2", "RestoreV2", "MergeV2Checkpoints", "ShardedFilename")])
    assert savedmodel.check_graph_bytes(w.tf_saved_model(graph)) == []


def test_non_utf8_op_name_is_malformed() -> None:
    graph = w.pb_bytes(1, w.pb_str(1, "n") + w.pb_bytes(2, b"\xff\xfe"))
    (finding,) = savedmodel.check_graph_bytes(graph)
    assert (finding.rule, finding.severity) == ("savedmodel.malformed", Severity.HIGH)


def test_empty_graph_is_low() -> None:
    (finding,) = savedmodel.check_graph_bytes(w.pb_int(1, 1))
    assert (finding.rule, finding.severity) == ("savedmodel.empty", Severity.LOW)


# -- protowire -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**32, 2**63, 2**64 - 1])
def test_varint_round_trip(value: int) -> None:
    encoded = w.pb_varint(value)
    assert protowire.read_varint(encoded, 0, len(encoded)) == (value, len(encoded))


def test_fields_and_groups() -> None:
    group = w.pb_varint(5 << 3 | 3) + w.pb_int(1, 7) + w.pb_varint(5 << 3 | 4)
    fixed = w.pb_varint(3 << 3 | 5) + b"\x01\x00\x00\x00"
    data = w.pb_int(1, 150) + group + w.pb_str(2, "hi") + fixed
    fields = [(n, t, bytes(v) if isinstance(v, memoryview) else v) for n, t, v in protowire.iter_fields(data)]
    assert fields == [(1, 0, 150), (2, 2, b"hi"), (3, 5, 1)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x0a\xff\xff\xff\xff\x0f", "claims"),
        (b"\x08" + b"\xff" * 11, "longer than 10 bytes"),
        (b"\x08", "truncated varint"),
        (b"\x00\x01", "invalid field number 0"),
        (b"\x0f", "invalid wire type 7"),
        (b"\x0c", "invalid wire type 4"),
        (b"\x0b" * 40, "nested too deeply"),
        (b"\x0b\x14", "mismatched end-group"),
        (b"\x0d\x01", "truncated fixed32"),
    ],
)
def test_malformed_wire_data(data: bytes, message: str) -> None:
    with pytest.raises(protowire.WireError, match=message):
        list(protowire.iter_fields(data))


def test_budget_bounds_the_walk() -> None:
    data = w.pb_int(1, 1) * 100
    with pytest.raises(protowire.WireError, match="budget"):
        list(protowire.iter_fields(data, protowire.Budget(max_fields=10)))


def test_mapped_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.pb"
    path.write_bytes(b"")
    with protowire.mapped(path) as view:
        assert len(view) == 0
