"""Python source: always custom code; ast analysis raises the rating for OS, network and exec use."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.models import Severity
from proxy.scan import source
from proxy.scan.limits import ScanLimits
from tests.corpus_formats import cases_for
from tests.corpus_formats.common import Case, assert_case, scan_case


@pytest.mark.parametrize("case", cases_for("source", hostile=True), ids=lambda c: c.name)
def test_hostile_corpus(case: Case, tmp_path: Path) -> None:
    assert_case(case, scan_case(case, tmp_path))


@pytest.mark.parametrize("case", cases_for("source", hostile=False), ids=lambda c: c.name)
def test_benign_corpus_is_only_custom_code(case: Case, tmp_path: Path) -> None:
    findings = scan_case(case, tmp_path)
    assert [(f.rule, f.severity) for f in findings] == [("code.python", Severity.MEDIUM)]
    assert findings[0].message == "custom code: executed by trust_remote_code/torch.hub"


def _rules(text: str) -> set[tuple[str, Severity]]:
    return {(f.rule, f.severity) for f in source.analyse_source(text, "m.py")}


@pytest.mark.parametrize(
    ("text", "rule", "severity"),
    [
        ("from os import system as s\ns('id')\n", "code.dangerous-call", Severity.HIGH),
        ("import os as o\no.execv('/bin/sh', [])\n", "code.dangerous-call", Severity.HIGH),
        ("import importlib\nimportlib.import_module('subprocess').call('id')\n", "code.dangerous-call", Severity.HIGH),
        ("import importlib\nimportlib.import_module(name)\n", "code.dynamic-exec", Severity.HIGH),
        ("eval(compile('1', 'x', 'eval'))\n", "code.dynamic-exec", Severity.HIGH),
        ("import zlib\nexec(zlib.decompress(b'x'))\n", "code.obfuscated-exec", Severity.CRITICAL),
        ("exec(bytes.fromhex('7072696e74283129'))\n", "code.obfuscated-exec", Severity.CRITICAL),
        ("import ctypes\nctypes.CDLL('libc.so.6').system(b'id')\n", "code.dangerous-import", Severity.HIGH),
        ("x = ().__class__.__bases__[0].__subclasses__()\n", "code.introspection", Severity.HIGH),
        ("import marshal\nmarshal.loads(b'')\n", "code.dangerous-call", Severity.HIGH),
    ],
)
def test_techniques(text: str, rule: str, severity: Severity) -> None:
    assert (rule, severity) in _rules(text)


def test_ordinary_code_stays_medium() -> None:
    text = "import os, json, math\nimport torch\nfrom urllib.parse import urlparse\nos.path.join('a', 'b')\n"
    assert _rules(text) == {("code.python", Severity.MEDIUM)}


def test_locations_have_line_numbers() -> None:
    findings = source.analyse_source("import os\n\nos.system('id')\n", "hubconf.py")
    assert [f.location for f in findings if f.rule == "code.dangerous-call"] == ["hubconf.py:3"]


def test_coding_cookie_is_honoured(tmp_path: Path) -> None:
    path = tmp_path / "latin.py"
    path.write_bytes(b"# -*- coding: latin-1 -*-\nname = '\xe9'\nimport os\nos.popen('id')\n")
    assert ("code.dangerous-call", Severity.HIGH) in {(f.rule, f.severity) for f in source.scan(path, ScanLimits())}


def test_oversized_source_is_not_parsed(tmp_path: Path) -> None:
    path = tmp_path / "big.py"
    path.write_text("x = 1\n" * 1000)
    findings = source.scan(path, ScanLimits(max_source_bytes=100))
    assert [f.rule for f in findings] == ["code.python", "code.too-large"]
