"""The TORCH_HOME mirror writer and `verify_mirror`, on real files; the hub repo report on real zips."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest

from proxy.errors import IntegrityError
from proxy.hubrepo import report_archive
from proxy.models import Finding, Severity, VerdictStatus
from proxy.torch_mirror import MANIFEST_NAME, CurrentVerdict, Mirror, MirrorError, verify_mirror
from proxy.upstreams.github import parse_hub_spec
from proxy.upstreams.torch import parse_weight_path
from tests.fakes.torch_upstream import hashed_name, hubconf, make_zipball, state_dict_bytes

SHA = "1234567" + "a" * 33


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _mirror_with_one_of_each(root: Path) -> tuple[Mirror, bytes, bytes]:
    weights = state_dict_bytes(1)
    name = parse_weight_path(hashed_name("tiny", weights))
    archive = make_zipball("acme", "tinyhub", SHA, {"hubconf.py": hubconf("https://x/models/a.pth"), "m/x.py": ""})
    mirror = Mirror(root, server="http://hg")
    mirror.add_checkpoint(name, io.BytesIO(weights), sha256=_sha(weights), artifact_id="aaaaaaaaaaaa")
    mirror.add_hub_repo(
        parse_hub_spec("acme/tinyhub:v1"), io.BytesIO(archive), sha256=_sha(archive), commit=SHA, artifact_id="b" * 12
    )
    return mirror, weights, archive


def test_layout_is_what_torch_reads(tmp_path: Path) -> None:
    _, weights, _ = _mirror_with_one_of_each(tmp_path)
    hub = tmp_path / "hub"
    [ckpt] = list((hub / "checkpoints").iterdir())
    assert ckpt.read_bytes() == weights and ckpt.name.startswith("tiny-")
    assert (hub / "acme_tinyhub_v1" / "hubconf.py").is_file()
    assert (hub / "acme_tinyhub_v1" / "m" / "x.py").is_file()
    assert (hub / "trusted_list").read_text() == "acme_tinyhub\n"
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert manifest["hub"]["acme_tinyhub_v1"]["commit"] == SHA
    assert manifest["checkpoints"][ckpt.name]["sha256"] == _sha(weights)
    assert sorted(p.name for p in hub.iterdir()) == ["acme_tinyhub_v1", "checkpoints", "trusted_list"]  # no tmp
    assert verify_mirror(tmp_path, None) == []


def test_wrong_bytes_are_never_written(tmp_path: Path) -> None:
    weights = state_dict_bytes(2)
    name = parse_weight_path(hashed_name("tiny", weights))
    mirror = Mirror(tmp_path)
    with pytest.raises(IntegrityError, match="hubgate approved"):
        mirror.add_checkpoint(name, io.BytesIO(weights + b"x"), sha256=_sha(weights), artifact_id="a" * 12)
    with pytest.raises(IntegrityError, match="does not start with"):
        mirror.add_checkpoint(name, io.BytesIO(b"x"), sha256=_sha(b"x"), artifact_id="a" * 12)
    assert list((tmp_path / "hub" / "checkpoints").iterdir()) == []


def test_basename_clash_is_refused(tmp_path: Path) -> None:
    body = b"abc"
    mirror = Mirror(tmp_path)
    mirror.add_checkpoint(parse_weight_path("a/x.pth"), io.BytesIO(body), sha256=_sha(body), artifact_id="a" * 12)
    with pytest.raises(MirrorError, match="share the cache name"):
        mirror.add_checkpoint(parse_weight_path("b/x.pth"), io.BytesIO(body), sha256=_sha(body), artifact_id="c" * 12)


def test_unsafe_archives_are_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo("top/"), b"")
        zf.writestr("top/hubconf.py", "")
        zf.writestr("elsewhere/evil.py", "")
    data = buf.getvalue()
    with pytest.raises(MirrorError, match="outside the top folder"):
        Mirror(tmp_path).add_hub_repo(
            parse_hub_spec("a/b:v"), io.BytesIO(data), sha256=_sha(data), commit=SHA, artifact_id="a" * 12
        )
    assert not (tmp_path / "hub" / "a_b_v").exists()
    assert [p.name for p in (tmp_path / "hub").iterdir()] == []


def test_verify_catches_tampering(tmp_path: Path) -> None:
    _mirror_with_one_of_each(tmp_path)
    hub = tmp_path / "hub"
    [ckpt] = list((hub / "checkpoints").iterdir())
    ckpt.write_bytes(state_dict_bytes(9))  # a valid checkpoint, but not the approved one
    (hub / "acme_tinyhub_v1" / "hubconf.py").write_text("import os\n")
    (hub / "acme_tinyhub_v1" / "extra.py").write_text("")
    (hub / "checkpoints" / "dropped-00000000.pth").write_bytes(b"x")
    (hub / "evil_repo_main").mkdir()
    with (hub / "trusted_list").open("a") as fh:
        fh.write("evil_repo\n")
    kinds = sorted((p.kind, p.path) for p in verify_mirror(tmp_path, None))
    assert kinds == [
        ("modified", "hub/acme_tinyhub_v1/hubconf.py"),
        ("modified", f"hub/checkpoints/{ckpt.name}"),
        ("unmanaged", "hub/acme_tinyhub_v1/extra.py"),
        ("unmanaged", "hub/checkpoints/dropped-00000000.pth"),
        ("unmanaged", "hub/evil_repo_main"),
        ("unmanaged", "hub/trusted_list"),
    ]


def test_verify_asks_for_current_verdicts(tmp_path: Path) -> None:
    _, weights, _ = _mirror_with_one_of_each(tmp_path)
    current = {
        "a" * 12: CurrentVerdict(status=VerdictStatus.APPROVED, sha256=_sha(weights)),
        "b" * 12: CurrentVerdict(status=VerdictStatus.REJECTED, sha256=""),
    }
    problems = verify_mirror(tmp_path, lambda entry: current.get(entry.artifact_id))
    assert [(p.kind, p.path) for p in problems] == [("not-approved", "hub/acme_tinyhub_v1")]
    current["a" * 12] = CurrentVerdict(status=VerdictStatus.APPROVED, sha256="f" * 64)
    del current["b" * 12]
    kinds = sorted(p.kind for p in verify_mirror(tmp_path, lambda entry: current.get(entry.artifact_id)))
    assert kinds == ["not-approved", "verdict-changed"]


def test_hub_report_structure(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    archive.write_bytes(
        make_zipball("acme", "r", SHA, {"hubconf.py": hubconf("https://x/m.pth"), "lib/net.py": "import socket\n"})
    )
    seen: list[str] = []

    def analyse(text: str, where: str) -> list[Finding]:
        seen.append(where)
        return (
            [Finding(engine="t", severity=Severity.HIGH, rule="r", message="m", location=where)]
            if "socket" in text
            else []
        )

    report = report_archive(archive, analyse=analyse)
    assert report.has_hubconf and report.dependencies == ["torch"] and report.entrypoints == ["tiny"]
    assert sorted(seen) == ["hubconf.py", "lib/net.py"]
    assert [f.location for f in report.findings] == ["lib/net.py"]
    (tmp_path / "b.zip").write_bytes(b"not a zip")
    assert report_archive(tmp_path / "b.zip", analyse=analyse).findings[0].rule == "hubrepo.unreadable"


def test_hub_report_with_the_shared_analysis(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    archive.write_bytes(make_zipball("acme", "r", SHA, {"hubconf.py": "import subprocess\nsubprocess.run(['id'])\n"}))
    report = report_archive(archive)
    assert report.findings and all(f.location.split(":")[0] == "hubconf.py" for f in report.findings)
    assert any("subprocess" in f.message for f in report.findings)
    assert any(f.rule == "hubrepo.no-hubconf" for f in report_archive(_no_hubconf(tmp_path)).findings)


def _no_hubconf(tmp_path: Path) -> Path:
    path = tmp_path / "n.zip"
    path.write_bytes(make_zipball("a", "b", SHA, {"x.py": ""}))
    return path
