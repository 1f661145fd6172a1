"""`hubgate policy check [FILE]`: exit codes, messages, JSON, and the default file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.policy.command import check_command
from proxy.policy.loader import default_policy

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_valid_file_exits_0_with_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_command(REPO_ROOT / "config" / "policy.toml", as_json=False) == 0
    out = capsys.readouterr().out
    assert f"valid policy (hash {default_policy().hash}, mode enforce)" in out
    assert "block torchscript" in out
    assert "26 allowed, 6 denied (block)" in out


def test_invalid_file_exits_2_with_line_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('mode = "enforce"\n\n[license]\ndeny = ["cc-by-nc"]\n')
    assert check_command(policy, as_json=False) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{policy}:4: license.deny[0]: 'cc-by-nc' is not a known license id or glob" in captured.err
    assert "invalid policy" in captured.err


def test_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.toml"
    good.write_text('mode = "audit"\n[[scope]]\nmatch = ["my-org/*"]\nlicense.missing = "allow"\n')
    assert check_command(good, as_json=True) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["valid"] is True and row["mode"] == "audit" and len(row["hash"]) == 12
    assert row["policy"]["scope"] == [{"match": ["my-org/*"], "license": {"missing": "allow"}}]
    bad = tmp_path / "bad.toml"
    bad.write_text("[scan]\nerror = 'allow'\nhigh = 'nope'\n")
    assert check_command(bad, as_json=True) == 2
    row = json.loads(capsys.readouterr().out)
    assert row["valid"] is False
    assert [e.split(": ", 2)[1] for e in row["errors"]] == ["scan.error", "scan.high"]


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check_command(tmp_path / "nope.toml", as_json=False) == 2
    assert "no such policy file" in capsys.readouterr().err


def test_default_path_follows_hubgate_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "mine.toml"
    policy.write_text('mode = "audit"\n')
    monkeypatch.setenv("HUBGATE_POLICY", str(policy))
    monkeypatch.setenv("HUBGATE_CONFIG", str(tmp_path / "absent-hubgate.toml"))
    assert check_command(None, as_json=False) == 0
    assert f"{policy}: valid policy" in capsys.readouterr().out


def test_cli_entry_point(tmp_path: Path) -> None:
    """Through `python -m proxy policy check`, as a user types it."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[format]\ntorchscript = "alow"\n')
    run = subprocess.run(
        [sys.executable, "-m", "proxy", "policy", "check", str(bad)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert run.returncode == 2, run.stderr
    assert f"{bad}:2: format.torchscript: 'alow' is not valid" in run.stderr
