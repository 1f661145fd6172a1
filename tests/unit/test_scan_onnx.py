"""ONNX: external-data paths that leave the model directory, custom-op domains, malformed protobuf."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.models import Severity
from proxy.scan import onnx
from tests.corpus_formats import cases_for
from tests.corpus_formats import writers as w
from tests.corpus_formats.common import Case, assert_case, scan_case


@pytest.mark.parametrize("case", cases_for("onnx", hostile=True), ids=lambda c: c.name)
def test_hostile_corpus(case: Case, tmp_path: Path) -> None:
    assert_case(case, scan_case(case, tmp_path))


@pytest.mark.parametrize("case", cases_for("onnx", hostile=False), ids=lambda c: c.name)
def test_benign_corpus_is_silent(case: Case, tmp_path: Path) -> None:
    assert scan_case(case, tmp_path) == []


@pytest.mark.parametrize(
    ("location", "escapes"),
    [
        ("model.onnx_data", False),
        ("weights/part-0.bin", False),
        ("./weights.bin", False),
        ("/etc/passwd", True),
        ("\\\\server\\share\\x", True),
        ("C:\\Windows\\win.ini", True),
        ("c:/x", True),
        ("file:///etc/passwd", True),
        ("..", True),
        ("a/../../b", True),
        ("a/..\\..\\b", True),
        ("weights.bin\x00.txt", True),
        ("", True),
    ],
)
def test_location_problem(location: str, escapes: bool) -> None:
    assert (onnx.location_problem(location) is not None) is escapes


def test_escape_message_and_location() -> None:
    graph = w.onnx_graph([], [w.onnx_tensor("emb", location="../secret")])
    (finding,) = onnx.check_model_bytes(w.onnx_model(graph))
    assert finding.severity is Severity.CRITICAL
    assert finding.location == "graph/emb"
    assert "'../secret'" in finding.message and "climbs out" in finding.message


def test_external_without_location_is_medium() -> None:
    tensor = w.pb_str(8, "t") + w.pb_int(14, 1)
    (finding,) = onnx.check_model_bytes(w.onnx_model(w.onnx_graph([], [tensor])))
    assert (finding.rule, finding.severity) == ("onnx.external-data-missing", Severity.MEDIUM)


def test_custom_domain_counts_nodes() -> None:
    nodes = [w.onnx_node("Evil", ["x"], ["y"], f"n{i}", domain="com.evil") for i in range(3)]
    (finding,) = onnx.check_model_bytes(w.onnx_model(w.onnx_graph(nodes)))
    assert "3 node(s)" in finding.message and "'com.evil'" in finding.message


def test_subgraph_nesting_is_bounded() -> None:
    graph = w.onnx_graph([w.onnx_node("Relu", ["x"], ["y"], "r")])
    for depth in range(onnx.MAX_GRAPH_DEPTH + 2):
        graph = w.onnx_graph(
            [w.onnx_node("If", ["c"], ["y"], f"if{depth}", attrs=[w.onnx_attr_graph("then_branch", graph)])]
        )
    findings = onnx.check_model_bytes(w.onnx_model(graph))
    assert [f.rule for f in findings] == ["onnx.malformed"]
    assert "nested deeper" in findings[0].message
