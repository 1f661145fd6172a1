"""The non-pickle corpus (`tests.corpus_formats`) end to end through `scan_path`, as the proxy scans files.

Each format scanner is tested directly elsewhere; here the question is whether sniffing and dispatch route
every file to it. Every hostile case must surface its rule (critical/high: verdict `unsafe`; medium/low: the
finding is there for policy), every benign case must come back `clean` with nothing above its
`max_severity`, and no payload may run (the marker file must not exist). Also: the same cases as archive
members (locations carry the member path), standalone chat templates, and names that lie about content.
"""

from __future__ import annotations

import re
import struct
import zipfile
from pathlib import Path

import pytest

from proxy.models import FileFormat, ScanReport, ScanVerdict, Severity
from proxy.scan import scan_path
from proxy.scan.dispatch import named_format, place
from tests import corpus
from tests.corpus_formats import BENIGN_TEMPLATES, CASES, Case, hostile_templates

HOSTILE = [c for c in CASES if c.hostile]
BENIGN = [c for c in CASES if not c.hostile]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("formats-e2e")


def _marker(work: Path) -> Path:
    return work / "PWNED"


def _scan_case(case: Case, work: Path) -> ScanReport:
    path = case.write(work, str(_marker(work)))
    report = scan_path(path, display_name=f"{case.name}/{case.filename}")
    assert not _marker(work).exists(), f"{case.name}: a payload ran during the scan"
    return report


def _seen(report: ScanReport) -> list[tuple[str, str, str]]:
    return [(f.severity.value, f.rule, f.location) for f in report.findings]


def _assert_hostile(report: ScanReport, rule: str, severity: Severity, name: str) -> None:
    assert any(f.rule == rule and f.severity is severity for f in report.findings), (name, _seen(report))
    if severity.rank >= Severity.HIGH.rank:
        assert report.verdict is ScanVerdict.UNSAFE, (name, report.verdict, _seen(report))


def test_corpus_covers_every_scanner() -> None:
    """Guards the parametrisation below: an empty or one-sided corpus would make these tests vacuous."""
    scanners = {c.scanner for c in CASES}
    assert scanners >= {"safetensors", "gguf", "config", "source", "keras", "savedmodel", "onnx"}
    assert all(any(c.scanner == s for c in HOSTILE) for s in scanners)
    assert all(any(c.scanner == s for c in BENIGN) for s in scanners)


@pytest.mark.parametrize("case", HOSTILE, ids=lambda c: c.name)
def test_hostile_case_is_caught_through_scan_path(case: Case, work: Path) -> None:
    assert case.rule is not None and case.severity is not None
    _assert_hostile(_scan_case(case, work), case.rule, case.severity, case.name)


@pytest.mark.parametrize("case", BENIGN, ids=lambda c: c.name)
def test_benign_case_is_clean_through_scan_path(case: Case, work: Path) -> None:
    report = _scan_case(case, work)
    assert report.verdict is ScanVerdict.CLEAN, (case.name, _seen(report))
    assert all(f.severity.rank <= case.max_severity.rank for f in report.findings), (case.name, _seen(report))
    assert report.format is not FileFormat.UNKNOWN, case.name


def test_every_case_as_an_archive_member(work: Path) -> None:
    """The whole corpus in one zip: each finding is placed under its member path, none leaks to another."""
    bundle = work / "bundle.zip"
    with zipfile.ZipFile(bundle, "w") as zf:
        for case in CASES:
            zf.writestr(f"{case.name}/{case.filename}", case.build(str(_marker(work))))
    report = scan_path(bundle, display_name="repo/bundle.zip")
    assert not _marker(work).exists()
    assert report.verdict is ScanVerdict.UNSAFE
    for case in CASES:
        where = f"repo/bundle.zip!{case.name}/{case.filename}"
        mine = [f for f in report.findings if f.location == where or f.location.startswith((where + ":", where + " "))]
        if case.hostile:
            assert any(f.rule == case.rule and f.severity is case.severity for f in mine), (case.name, mine)
        else:
            assert all(f.severity.rank <= case.max_severity.rank for f in mine), (case.name, mine)
    assert all(f.location.startswith("repo/bundle.zip!") for f in report.findings), _seen(report)
    # no member's scanner leaks its temp file name (m<N>) into a location
    assert not [f.location for f in report.findings if re.search(r"[!:]m\d+\b", f.location)]


def test_member_locations_carry_the_member_path(work: Path) -> None:
    st_gap = next(c for c in CASES if c.name == "st-gap")
    nested = next(c for c in CASES if c.name == "keras-nested-lambda")
    bundle = work / "two.zip"
    with zipfile.ZipFile(bundle, "w") as zf:
        zf.writestr("w/model.safetensors", st_gap.build(""))
        zf.writestr("k/model.keras", nested.build(str(_marker(work))))
    report = scan_path(bundle, display_name="two.zip")
    locations = {f.rule: f.location for f in report.findings}
    assert locations["safetensors.gap"] == "two.zip!w/model.safetensors:b"
    assert locations["keras.lambda"].startswith("two.zip!k/model.keras:config.json:/config/layers[0]")


# -- standalone chat templates ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BENIGN_TEMPLATES))
def test_benign_template_file_is_clean(name: str, work: Path) -> None:
    path = work / f"{name}.jinja"
    path.write_text(BENIGN_TEMPLATES[name])
    report = scan_path(path, display_name=f"additional_chat_templates/{name}.jinja")
    assert report.format is FileFormat.TEXT  # `{%`/`{{` opens a template, not JSON
    assert report.verdict is ScanVerdict.CLEAN and report.findings == [], _seen(report)


@pytest.mark.parametrize("name", sorted(hostile_templates("m")))
def test_hostile_template_file_is_routed_to_the_template_scanner(name: str, work: Path) -> None:
    source, rule, severity = hostile_templates(str(_marker(work)))[name]
    path = work / "chat_template.jinja"
    path.write_text(source)
    report = scan_path(path, display_name="chat_template.jinja")
    _assert_hostile(report, rule, severity, name)
    assert all(f.location.startswith("chat_template.jinja") for f in report.findings), _seen(report)
    assert not _marker(work).exists()


def test_a_readme_quoting_a_template_is_not_a_template(work: Path) -> None:
    """Templates are routed by name: prose that quotes one (a security write-up) is not checked as one."""
    path = work / "README.md"
    path.write_text(hostile_templates("m")["os-name"][0])
    assert scan_path(path).verdict is ScanVerdict.CLEAN


# -- names that lie about the content --------------------------------------------------------------------


def _scan_bytes(work: Path, name: str, data: bytes) -> ScanReport:
    path = work / "named" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return scan_path(path, display_name=name, run_engines=False)


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("model.safetensors", "safetensors.header-size"),
        ("model.gguf", "gguf.malformed"),
        ("saved_model.pb", "savedmodel.malformed"),
        ("model.onnx", "onnx.malformed"),
    ],
)
def test_a_zip_under_a_model_name_gets_that_formats_finding(name: str, rule: str, work: Path) -> None:
    report = _scan_bytes(work, name, corpus.zip_of({"readme.txt": b"hello"}))
    rules = {f.rule for f in report.findings}
    assert {"format.name-mismatch", rule} <= rules, _seen(report)
    assert report.format is FileFormat.ZIP  # content still decides the format
    assert report.verdict is ScanVerdict.UNSAFE


def test_a_pickle_named_safetensors_is_scanned_as_both(work: Path) -> None:
    report = _scan_bytes(work, "model.safetensors", corpus.os_system(_marker(work)))
    rules = {f.rule for f in report.findings}
    assert report.format is FileFormat.PICKLE
    assert {"format.name-mismatch", "safetensors.header-size"} <= rules, _seen(report)
    assert any(f.severity is Severity.CRITICAL for f in report.findings)
    assert not _marker(work).exists()


def test_matching_names_add_no_mismatch_and_empty_files_stay_clean(work: Path) -> None:
    st = next(c for c in CASES if c.name == "st-benign")
    assert _scan_bytes(work, "model.safetensors", st.build("")).findings == []
    for name in ("model.safetensors", "model.gguf", "frozen.pb", "model.keras", "chat_template.jinja"):
        report = _scan_bytes(work, name, b"")  # zero bytes carry nothing for any loader
        assert report.verdict is ScanVerdict.CLEAN and report.findings == [], (name, _seen(report))


def test_safetensors_shape_that_also_walks_as_a_pickle_is_a_polyglot(work: Path) -> None:
    """`()0X` + u32 length: a pickle whose BINUNICODE swallows a `{"...` header, so it reads as both."""
    header = b'{"__metadata__": {"a": "b"}}'
    payload = corpus.os_system(_marker(work))
    data = b"()0X" + struct.pack("<I", len(header)) + header + b"0" + payload[2:]  # drop PROTO: mid-stream
    report = _scan_bytes(work, "weights.bin", data)
    assert report.format is FileFormat.SAFETENSORS
    assert FileFormat.PICKLE in report.formats
    rules = {f.rule for f in report.findings}
    assert {"format.polyglot", "safetensors.header-size"} <= rules, _seen(report)
    assert any(f.severity is Severity.CRITICAL for f in report.findings), _seen(report)
    assert not _marker(work).exists()


def test_named_format_and_place_are_pure() -> None:
    assert named_format("sub/Model.SafeTensors") is not None
    assert named_format("model.bin") is None and named_format("README") is None
    top, member = Path("/tmp/x/abc123"), Path("/tmp/scan/m7")
    assert place("", "repo/c.json", top, member=False, base="c.json") == "repo/c.json"
    assert place("abc123:auto_map", "repo/c.json", top, member=False, base="c.json") == "c.json:auto_map"
    assert place("graph/emb", "m.onnx", Path("/d/m.onnx"), member=False, base="m.onnx") == "graph/emb"
    assert place("m7:auto_map", "a.zip!c.json", member, member=True, base="c.json") == "a.zip!c.json:auto_map"
    assert place("m7 line 3", "a.zip!t.jinja", member, member=True, base="t.jinja") == "a.zip!t.jinja line 3"
    assert place("graph/emb", "a.zip!m.onnx", member, member=True, base="m.onnx") == "a.zip!m.onnx:graph/emb"
