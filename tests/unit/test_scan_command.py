"""`hubgate scan PATH... [--json]`: exit codes 0/1/2, directories recursed, the JSON contract per file."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from proxy.scan.command import scan_command
from tests import corpus

KEYS = {"path", "sha256", "size", "format", "formats", "families", "verdict", "findings", "engines", "duration"}


def test_exit_codes_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clean = tmp_path / "repo" / "good.pkl"
    clean.parent.mkdir()
    clean.write_bytes(pickle.dumps({"a": 1}))
    assert scan_command([clean.parent], as_json=True) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert set(row) == KEYS and row["verdict"] == "clean" and row["path"] == str(clean)
    assert set(row["engines"]) >= {"hubgate", "fickling", "modelscan"}

    bad = clean.parent / "sub" / "bad.bin"
    bad.parent.mkdir()
    bad.write_bytes(corpus.os_system(tmp_path / "PWNED"))
    assert scan_command([clean.parent], as_json=True) == 1
    rows = json.loads(capsys.readouterr().out)
    assert [r["verdict"] for r in rows] == ["clean", "unsafe"]
    finding = next(f for f in rows[1]["findings"] if f["engine"] == "hubgate")
    assert set(finding) == {"engine", "severity", "rule", "message", "location"}
    assert finding["severity"] == "critical"
    assert not (tmp_path / "PWNED").exists()


def test_error_when_nothing_unsafe_but_something_unscannable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ok = tmp_path / "ok.txt"
    ok.write_text("hello\n")
    assert scan_command([ok, tmp_path / "missing.bin"], as_json=True) == 2
    rows = json.loads(capsys.readouterr().out)
    assert rows[1]["verdict"] == "error" and rows[1]["findings"][0]["rule"] == "scan.unreadable"


def test_human_output_names_verdict_and_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(corpus.os_system(tmp_path / "PWNED"))
    assert scan_command([bad], as_json=False) == 1
    out = capsys.readouterr().out
    assert "UNSAFE" in out and "pickle.dangerous-global" in out
