"""Containers: members scanned recursively by content, limits charged per scan, hostile layouts found."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from proxy.models import ScanVerdict, Severity
from proxy.scan import ScanLimits, scan_path
from proxy.scan.archive import unsafe_member_name
from tests import corpus


def scan(tmp_path: Path, name: str, data: bytes, limits: ScanLimits | None = None):  # type: ignore[no-untyped-def]
    p = tmp_path / name
    p.write_bytes(data)
    return scan_path(p, limits=limits, run_engines=False)


def rules(report) -> set[str]:  # type: ignore[no-untyped-def]
    return {f.rule for f in report.findings}


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../x", "path traversal (..)"),
        ("a/../../x", "path traversal (..)"),
        ("/etc/passwd", "absolute path"),
        ("C:\\evil", "absolute path"),
        ("..\\..\\x", "path traversal (..)"),
        ("ok/file.bin", None),
        ("..file", None),
    ],
)
def test_unsafe_member_name(name: str, why: str | None) -> None:
    assert unsafe_member_name(name) == why


def test_members_are_sniffed_by_content_and_located(tmp_path: Path) -> None:
    evil = corpus.os_system(tmp_path / "m")
    report = scan(tmp_path, "bundle.zip", corpus.zip_of({"docs/readme.md": b"# hi\n", "weights/w.txt": evil}))
    assert report.verdict is ScanVerdict.UNSAFE
    hit = next(f for f in report.findings if f.rule == "pickle.dangerous-global")
    assert hit.location.startswith(f"{tmp_path / 'bundle.zip'}!weights/w.txt")


def test_nested_archives_within_depth(tmp_path: Path) -> None:
    evil = corpus.os_system(tmp_path / "m")
    inner = corpus.tar_of({"model.pkl": evil})
    report = scan(tmp_path, "outer.zip", corpus.zip_of({"inner.tar.gz": inner}))
    assert report.verdict is ScanVerdict.UNSAFE
    assert {"zip", "gzip", "tar", "pickle"} <= {f.value for f in report.formats}


def test_depth_limit_is_an_error_not_a_pass(tmp_path: Path) -> None:
    data = corpus.nested_zips(3, b"harmless")
    assert scan(tmp_path, "d.zip", data, ScanLimits(max_archive_depth=5)).verdict is ScanVerdict.CLEAN
    report = scan(tmp_path, "d.zip", data, ScanLimits(max_archive_depth=2))
    assert report.verdict is ScanVerdict.ERROR and "archive.depth" in rules(report)


def test_member_count_limit_is_an_error(tmp_path: Path) -> None:
    data = corpus.zip_of({f"f{i}.txt": b"x" for i in range(20)})
    report = scan(tmp_path, "many.zip", data, ScanLimits(max_archive_members=10))
    assert report.verdict is ScanVerdict.ERROR and "archive.limit" in rules(report)


def test_zip_bomb_by_declared_ratio(tmp_path: Path) -> None:
    report = scan(tmp_path, "bomb.zip", corpus.zip_bomb(20))
    assert report.verdict is ScanVerdict.UNSAFE and "archive.bomb" in rules(report)


def test_gzip_bomb_is_stopped_while_inflating(tmp_path: Path) -> None:
    report = scan(tmp_path, "w.gz", corpus.gzip_bomb(30))
    bomb = [f for f in report.findings if f.rule == "archive.bomb"]
    assert report.verdict is ScanVerdict.UNSAFE and bomb and "ratio" in bomb[0].message


def test_total_inflate_budget(tmp_path: Path) -> None:
    data = corpus.zip_of({"a.txt": b"a" * 3_000_000}, zipfile.ZIP_STORED)
    report = scan(tmp_path, "big.zip", data, ScanLimits(max_uncompressed_bytes=1_000_000))
    assert "archive.bomb" in rules(report)


def test_tar_links_and_devices(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, kind, link in (
            ("l", tarfile.SYMTYPE, "/etc/passwd"),
            ("h", tarfile.LNKTYPE, "x"),
            ("dev", tarfile.CHRTYPE, ""),
        ):
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = link
            tf.addfile(info)
    report = scan(tmp_path, "t.tar", buf.getvalue())
    assert report.verdict is ScanVerdict.UNSAFE
    assert {"archive.symlink", "archive.device"} <= rules(report)


def test_zip_symlink_member(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
    assert "archive.symlink" in rules(scan(tmp_path, "s.zip", buf.getvalue()))


def test_encrypted_member_cannot_be_vetted(tmp_path: Path) -> None:
    data = bytearray(corpus.zip_of({"secret.pkl": b"data"}, zipfile.ZIP_STORED))
    # set the "encrypted" flag bit in the local and central headers
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):
        at = data.find(sig)
        off = at + (6 if sig == b"PK\x03\x04" else 8)
        data[off] |= 0x01
    report = scan(tmp_path, "enc.zip", bytes(data))
    assert report.verdict is ScanVerdict.ERROR and "archive.encrypted" in rules(report)


def test_corrupt_stream_scans_what_inflated(tmp_path: Path) -> None:
    evil = corpus.os_system(tmp_path / "m") + b"x" * 5000
    data = gzip.compress(evil)[:-30]
    report = scan(tmp_path, "cut.pkl.gz", data)
    assert "archive.corrupt" in rules(report)
    assert report.verdict is ScanVerdict.UNSAFE


def test_seven_zip_is_unsupported_error(tmp_path: Path) -> None:
    report = scan(tmp_path, "a.7z", b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(64))
    assert report.verdict is ScanVerdict.ERROR
    assert [f.rule for f in report.findings if f.severity is Severity.MEDIUM] == ["archive.unsupported"]


def test_torch_zip_reads_only_pickle_members(tmp_path: Path) -> None:
    """Storages are never read: a torch zip with a corrupt 30 MB storage member scans clean and fast."""
    import torch

    data = corpus.torch_zip({"w": torch.zeros(8_000_000)})
    report = scan(tmp_path, "big.pt", data)
    assert report.verdict is ScanVerdict.CLEAN
    assert report.duration_s < 1.0


def test_findings_are_bounded(tmp_path: Path) -> None:
    data = corpus.zip_of({f"../x{i}": b"t" for i in range(700)})
    report = scan(tmp_path, "many.zip", data)
    assert len(report.findings) == 500
    assert report.findings[-1].rule == "scan.truncated"
    assert report.verdict is ScanVerdict.UNSAFE
