"""JSON configs: custom-code hooks (local and cross-repo), chat templates, invalid and oversized JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxy.models import Severity
from proxy.scan import config
from proxy.scan.limits import ScanLimits
from tests.corpus_formats import cases_for
from tests.corpus_formats.common import Case, assert_case, scan_case


@pytest.mark.parametrize("case", cases_for("config", hostile=True), ids=lambda c: c.name)
def test_hostile_corpus(case: Case, tmp_path: Path) -> None:
    assert_case(case, scan_case(case, tmp_path))


@pytest.mark.parametrize("case", cases_for("config", hostile=False), ids=lambda c: c.name)
def test_benign_corpus_is_silent(case: Case, tmp_path: Path) -> None:
    assert scan_case(case, tmp_path) == []


@pytest.mark.parametrize(
    ("reference", "repo"),
    [
        ("modeling_x.XModel", None),
        ("org/repo--modeling_x.XModel", "org/repo"),
        ("gpt2--tokenization.Tok", "gpt2"),
    ],
)
def test_remote_repo(reference: str, repo: str | None) -> None:
    assert config.remote_repo(reference) == repo


def test_auto_map_messages_name_the_code() -> None:
    document = {"auto_map": {"AutoModel": "modeling_x.XModel", "AutoTokenizer": ["a/b--tok.T", None]}}
    findings = config.check_config(document, "config.json")
    by_rule = {f.rule: f for f in findings}
    assert by_rule["config.auto-map"].severity is Severity.MEDIUM
    assert "modeling_x.XModel" in by_rule["config.auto-map"].message
    assert by_rule["config.auto-map-remote"].severity is Severity.HIGH
    assert "(a/b)" in by_rule["config.auto-map-remote"].message
    assert by_rule["config.auto-map"].location == "config.json:auto_map"


def test_template_list_entries_are_located() -> None:
    document = {"chat_template": [{"name": "rag", "template": "{{ x.__class__ }}"}]}
    (finding,) = config.check_config(document, "tokenizer_config.json")
    assert finding.location == "tokenizer_config.json:chat_template[rag] line 1"


def test_bad_template_shapes_are_medium() -> None:
    findings = config.check_config({"chat_template": 42}, "tokenizer_config.json")
    assert [(f.rule, f.severity) for f in findings] == [("config.template-type", Severity.MEDIUM)]


def test_deeply_nested_json_is_invalid_not_a_crash() -> None:
    (finding,) = config.check_config_bytes(b"[" * 100_000 + b"]" * 100_000, "x.json")
    assert (finding.rule, finding.severity) == ("config.invalid-json", Severity.LOW)


def test_deep_but_parseable_json_is_walked_without_recursion() -> None:
    document: object = {"auto_map": {"AutoModel": "m.M"}}
    for _ in range(500):
        document = {"inner": [document]}
    assert [f.rule for f in config.check_config(document)] == ["config.auto-map"]


def test_oversized_json_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps({"vocab": {f"t{i}": i for i in range(5000)}}))
    assert config.scan(path, ScanLimits()) == []
    (finding,) = config.scan(path, ScanLimits(max_json_bytes=1000))
    assert (finding.rule, finding.severity) == ("config.too-large", Severity.MEDIUM)
