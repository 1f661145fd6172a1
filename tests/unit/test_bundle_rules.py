"""Pure rules of the bundle commands: selectors, and how an imported file's verdict is decided."""

from __future__ import annotations

import pytest

from proxy.bundle.export import ExportError, parse_repo_spec, torch_path
from proxy.bundle.importer import build_verdict
from proxy.bundle.manifest import Approval
from proxy.models import (
    Action,
    ArtifactRef,
    Decision,
    Reason,
    RepoType,
    ScanReport,
    ScanVerdict,
    Verdict,
    VerdictStatus,
)

REF = ArtifactRef(repo_id="org/m", commit="a" * 40, path="w.safetensors")
REPORT = ScanReport(sha256="f" * 64, size=3, verdict=ScanVerdict.CLEAN, engines={"hubgate": "1"})


def test_parse_repo_spec() -> None:
    assert parse_repo_spec("org/m") == parse_repo_spec("models/org/m@main")
    spec = parse_repo_spec("datasets/org/d@refs/pr/1")
    assert (spec.repo_type, spec.repo_id, spec.revision) == (RepoType.DATASET, "org/d", "refs/pr/1")
    for bad in ("", "org/m/x", "../x", "org/-bad"):
        with pytest.raises(ExportError, match="not a repo id"):
            parse_repo_spec(bad)


def test_torch_path() -> None:
    expected = "models/resnet18-f37072fd.pth"
    for name in (
        "resnet18-f37072fd.pth",
        "/models/resnet18-f37072fd.pth",
        "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    ):
        assert torch_path(name) == expected
    with pytest.raises(ExportError):
        torch_path("models/../etc/passwd")


def _approval(decided_by: str = "policy", admin_by: str = "") -> Approval:
    return Approval(
        artifact_id=REF.artifact_id,
        path=REF.path,
        sha256="f" * 64,
        size=3,
        status=VerdictStatus.APPROVED,
        decided_by=decided_by,
        policy_hash="out",
        admin_by=admin_by,
        decided_at=0.0,
    )


def _decision(action: Action) -> Decision:
    reasons = [] if action is Action.ALLOW else [Reason(rule="r.x", action=action, message="because")]
    return Decision(action=action, reasons=reasons, policy_hash="in")


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("trust", [False, True])
@pytest.mark.parametrize("outside_admin", [False, True])
def test_inside_policy_decides_and_trust_only_lifts_a_quarantine(
    action: Action, trust: bool, outside_admin: bool
) -> None:
    outside = _approval("admin:alice", "alice") if outside_admin else _approval()
    v = build_verdict(REF, outside, REPORT, _decision(action), None, trust, "kid")
    lifted = trust and outside_admin and action is Action.QUARANTINE
    expected = {
        Action.ALLOW: VerdictStatus.APPROVED,
        Action.QUARANTINE: VerdictStatus.QUARANTINED,
        Action.BLOCK: VerdictStatus.BLOCKED,
    }[action]
    assert v.policy_status is expected and v.policy_hash == "in"
    assert v.status is (VerdictStatus.APPROVED if lifted else expected)
    assert v.decided_by == ("admin:alice@bundle:kid" if lifted else "policy")
    assert v.admin_status is (VerdictStatus.APPROVED if lifted else None)
    assert v.reasons == ([] if action is Action.ALLOW else ["because"])  # policy messages carry their rule
    assert (v.sha256, v.size, v.engines) == ("f" * 64, 3, {"hubgate": "1"})


@pytest.mark.parametrize("inside", [VerdictStatus.REJECTED, VerdictStatus.APPROVED])
def test_an_inside_admin_decision_stands(inside: VerdictStatus) -> None:
    previous = Verdict(
        artifact_id=REF.artifact_id,
        status=inside,
        sha256="f" * 64,
        size=3,
        repo_id="org/m",
        commit="a" * 40,
        path=REF.path,
        decided_by="admin:carol",
        admin_status=inside,
        admin_by="carol",
        created_at=1.0,
    )
    v = build_verdict(
        REF, _approval("admin:alice", "alice"), REPORT, _decision(Action.QUARANTINE), previous, True, "kid"
    )
    assert (v.status, v.decided_by, v.admin_by, v.created_at) == (inside, "admin:carol", "carol", 1.0)
