"""Pure parts of the pipeline: download verification and the refusal a client sees."""

from __future__ import annotations

import hashlib

import pytest

from proxy.errors import Blocked, IntegrityError, Quarantined
from proxy.models import FileMeta, Verdict, VerdictStatus
from proxy.pipeline import refusal, servable, verify_download

CONTENT = b"hello world\n"
SHA256 = hashlib.sha256(CONTENT).hexdigest()
GIT = hashlib.sha1(b"blob %d\0" % len(CONTENT) + CONTENT).hexdigest()


def test_verify_accepts_exact_bytes() -> None:
    verify_download(FileMeta(path="a", size=len(CONTENT), sha256=SHA256, lfs=True), len(CONTENT), SHA256, None, "a")
    verify_download(FileMeta(path="a", size=len(CONTENT), git_oid=GIT), len(CONTENT), SHA256, GIT, "a")
    verify_download(FileMeta(path="a", size=-1, sha256_prefix=SHA256[:8]), len(CONTENT), SHA256, None, "a")


@pytest.mark.parametrize(
    ("meta", "size", "git", "match"),
    [
        (FileMeta(path="a", size=len(CONTENT) + 1, sha256=SHA256, lfs=True), len(CONTENT), None, "promised"),
        (FileMeta(path="a", size=len(CONTENT), sha256="0" * 64, lfs=True), len(CONTENT), None, "sha256 mismatch"),
        (FileMeta(path="a", size=len(CONTENT), git_oid="0" * 40), len(CONTENT), GIT, "git blob id mismatch"),
        (FileMeta(path="a", size=len(CONTENT), git_oid=GIT), len(CONTENT), None, "git blob id mismatch"),
        (FileMeta(path="a", size=-1, sha256_prefix="deadbeef"), len(CONTENT), None, "hash prefix deadbeef"),
    ],
)
def test_verify_refuses(meta: FileMeta, size: int, git: str | None, match: str) -> None:
    with pytest.raises(IntegrityError, match=match):
        verify_download(meta, size, SHA256, git, "a")


def _verdict(status: VerdictStatus, **extra: object) -> Verdict:
    values: dict[str, object] = {
        "artifact_id": "3f2a9c1e0b7d",
        "status": status,
        "reasons": ["license cc-by-nc-4.0 is not allowed (rule license.deny)"],
        "sha256": SHA256,
        "size": 1,
        "repo_id": "acme/m",
        "commit": "a" * 40,
        "path": "model.bin",
    }
    values.update(extra)
    return Verdict(**values)  # type: ignore[arg-type]


def test_refusal_messages_stand_alone() -> None:
    blocked = refusal(_verdict(VerdictStatus.BLOCKED))
    assert isinstance(blocked, Blocked)
    assert blocked.message == (
        "hubgate: blocked by policy: license cc-by-nc-4.0 is not allowed (rule license.deny) (artifact 3f2a9c1e0b7d);"
        " if this is a false positive, ask an admin: hubgate approve 3f2a9c1e0b7d --reason '...'"
    )
    held = refusal(_verdict(VerdictStatus.QUARANTINED))
    assert isinstance(held, Quarantined) and "hubgate approve 3f2a9c1e0b7d" in held.message
    rejected = refusal(_verdict(VerdictStatus.REJECTED, admin_by="alice", admin_reason="typosquat"))
    assert "rejected by alice: typosquat" in rejected.message
    for status in VerdictStatus:
        assert refusal(_verdict(status)).status == 403
        assert refusal(_verdict(status)).error_code == "GatedRepo"


def test_servable() -> None:
    assert servable(_verdict(VerdictStatus.APPROVED))
    for status in (VerdictStatus.QUARANTINED, VerdictStatus.BLOCKED, VerdictStatus.REJECTED):
        assert not servable(_verdict(status))
        assert servable(_verdict(status, mode="audit")) is (status is not VerdictStatus.REJECTED)
    assert not servable(_verdict(VerdictStatus.BLOCKED, mode="audit", admin_status=VerdictStatus.REJECTED))
