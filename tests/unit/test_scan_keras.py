"""Keras .h5 / .keras: Lambda layers at any depth, module references, HDF5 links out of the file."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from proxy.models import Severity
from proxy.scan import keras
from proxy.scan.limits import DEFAULT_LIMITS, ScanLimits
from tests.corpus_formats import cases_for
from tests.corpus_formats.common import Case, assert_case, scan_case


@pytest.mark.parametrize("case", cases_for("keras", hostile=True), ids=lambda c: c.name)
def test_hostile_corpus(case: Case, tmp_path: Path) -> None:
    assert_case(case, scan_case(case, tmp_path))


@pytest.mark.parametrize("case", cases_for("keras", hostile=False), ids=lambda c: c.name)
def test_benign_corpus_is_silent(case: Case, tmp_path: Path) -> None:
    assert scan_case(case, tmp_path) == []


def test_nested_lambda_location_shows_the_path() -> None:
    config = {
        "class_name": "Functional",
        "config": {
            "layers": [
                {
                    "class_name": "Sequential",
                    "config": {"layers": [{"class_name": "Lambda", "config": {"name": "sneaky"}}]},
                }
            ]
        },
    }
    (finding,) = keras.check_keras_config(config, "model.keras:config.json")
    assert finding.severity is Severity.CRITICAL
    assert finding.location == "model.keras:config.json:/config/layers[0]/config/layers[0]"
    assert "'sneaky'" in finding.message


@pytest.mark.parametrize(
    ("node", "rule", "severity"),
    [
        (
            {"module": "subprocess", "class_name": "function", "config": "check_output"},
            "keras.dangerous-module",
            Severity.CRITICAL,
        ),
        (
            {"module": "builtins", "class_name": "function", "config": "exec"},
            "keras.dangerous-module",
            Severity.CRITICAL,
        ),
        ({"module": "my_pkg.layers", "class_name": "Custom"}, "keras.custom-object", Severity.MEDIUM),
        (
            {"module": "keras.layers", "class_name": "Dense", "registered_name": "my_pkg>Dense"},
            "keras.custom-object",
            Severity.MEDIUM,
        ),
        ({"class_name": "Activation", "config": {"function_type": "lambda"}}, "keras.lambda", Severity.CRITICAL),
    ],
)
def test_module_references(node: dict[str, object], rule: str, severity: Severity) -> None:
    assert (rule, severity) in {(f.rule, f.severity) for f in keras.check_keras_config(node, "c")}


def test_keras_packages_and_first_party_registrations_are_fine() -> None:
    nodes = [
        {"module": "keras.src.models.functional", "class_name": "Functional", "registered_name": "Functional"},
        {
            "module": "keras_hub.src.models.gemma",
            "class_name": "GemmaBackbone",
            "registered_name": "keras_hub>GemmaBackbone",
        },
        {"module": "keras.layers", "class_name": "TFOpLambda", "config": {"function": "math.add"}},
    ]
    assert keras.check_keras_config(nodes, "c") == []


def test_garbage_is_unreadable_not_a_crash(tmp_path: Path) -> None:
    h5 = tmp_path / "broken.h5"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\xff" * 512)
    zipped = tmp_path / "broken.keras"
    zipped.write_bytes(b"PK\x03\x04" + b"\0" * 64)
    for path in (h5, zipped):
        (finding,) = keras.scan(path, DEFAULT_LIMITS)
        assert (finding.rule, finding.severity) == ("keras.unreadable", Severity.MEDIUM)


def test_invalid_config_json_is_unreadable(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("config.json", "{not json")
    path = tmp_path / "m.keras"
    path.write_bytes(buffer.getvalue())
    (finding,) = keras.scan(path, DEFAULT_LIMITS)
    assert finding.rule == "keras.unreadable"
    assert "not valid JSON" in finding.message


def test_limits_are_findings(tmp_path: Path) -> None:
    case = next(c for c in cases_for("keras", hostile=False) if c.name == "keras-benign-zip")
    path = case.write(tmp_path, str(tmp_path / "PWNED"))
    tight = ScanLimits(max_json_bytes=10)
    rules = {(f.rule, f.severity) for f in keras.scan(path, tight)}
    assert rules == {("keras.limit", Severity.MEDIUM)}
