"""Chat template checks: ordinary templates pass, every escape technique is named, nothing is rendered."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from proxy.models import Severity
from proxy.scan.templates import MAX_TEMPLATE_CHARS, check_template
from tests.corpus_formats import BENIGN_TEMPLATES, hostile_templates


@pytest.mark.parametrize("name", sorted(BENIGN_TEMPLATES))
def test_ordinary_templates_have_no_findings(name: str) -> None:
    assert check_template(BENIGN_TEMPLATES[name], name) == []


@pytest.mark.parametrize("name", sorted(hostile_templates("/tmp/x")))
def test_each_technique_is_reported(name: str, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    template, rule, severity = hostile_templates(str(marker))[name]
    findings = check_template(template, "t")
    assert any(f.rule == rule and f.severity is severity for f in findings), findings
    assert all(f.engine == "hubgate" for f in findings)
    assert not marker.exists()


def test_locations_carry_where_and_line() -> None:
    (finding,) = [f for f in check_template("{{ a }}\n\n{{ a.__globals__ }}", "tok:chat") if f.severity.rank >= 4]
    assert finding.location == "tok:chat line 3"
    assert "'__globals__'" in finding.message


def test_assigned_names_are_not_globals() -> None:
    # a loop variable named like a gadget global is just a variable
    assert check_template("{% for cycler in items %}{{ cycler }}{% endfor %}", "t") == []
    assert check_template("{% set ns = namespace(i=0) %}{% set ns.i = ns.i + 1 %}{{ ns.i }}", "t") == []


def test_partial_dunder_fragment_is_medium() -> None:
    findings = check_template("{% set a = '__cl' %}{{ a }}", "t")
    assert [(f.rule, f.severity) for f in findings] == [("template.suspicious-string", Severity.MEDIUM)]


def test_oversized_and_pathological_templates_are_bounded() -> None:
    (big,) = check_template("x" * (MAX_TEMPLATE_CHARS + 1), "t")
    assert big.rule == "template.too-large"
    started = time.perf_counter()
    deep = check_template("{{" + "(" * 3000 + "1" + ")" * 3000 + "}}", "t")
    huge_format = check_template("{{ ''|attr('%999999999d' % 1) }}", "t")
    repeat = check_template("{{ ''|attr('_' * 99999999) }}", "t")
    assert time.perf_counter() - started < 2.0
    assert [f.rule for f in deep] == ["template.syntax"]
    assert [f.rule for f in huge_format] == ["template.dynamic-attr"]
    assert [f.rule for f in repeat] == ["template.dynamic-attr"]


def test_findings_are_deduplicated_and_capped() -> None:
    source = "".join(f"{{{{ x{i}.__class__ }}}}\n" for i in range(200))
    findings = check_template(source, "t")
    assert len(findings) == 51
    assert findings[-1].rule == "template.many-findings"
    assert len(check_template("{{ a.__class__ }}{{ a.__class__ }}", "t")) == 1


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''|attr('x__class__x'[1:-1]) }}",
        "{{ ''|attr('__ssalc__'[::-1]) }}",
        "{% set n = '__mro__' %}{{ ''|attr(n|lower) }}",
        "{% set p %}__globals__{% endset %}{{ x[p] }}",
        "{{ x['{}class{}'|replace('{}', '__')] }}",
    ],
)
def test_folding_through_slices_filters_and_blocks(template: str) -> None:
    assert "template.dunder-access" in {f.rule for f in check_template(template, "t")}


def test_unknown_slice_bound_is_not_guessed() -> None:
    rules = {f.rule for f in check_template("{{ ''|attr('x__class__x'[1:n]) }}", "t")}
    assert "template.dynamic-attr" in rules
    assert "template.dunder-access" not in rules


def test_template_files(tmp_path: Path) -> None:
    from proxy.scan.limits import DEFAULT_LIMITS
    from proxy.scan.templates import scan

    good, bad = tmp_path / "chat_template.jinja", tmp_path / "tool_use.jinja"
    good.write_text(BENIGN_TEMPLATES["tools"])
    bad.write_text("{{ x }}\n{{ cycler.__init__.__globals__ }}")
    assert scan(good, DEFAULT_LIMITS) == []
    assert ("template.global-escape", "tool_use.jinja line 2") in {
        (f.rule, f.location) for f in scan(bad, DEFAULT_LIMITS)
    }
