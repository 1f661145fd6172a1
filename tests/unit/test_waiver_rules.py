"""Waiver scopes, expiry parsing and matching (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from proxy.models import RepoType, Verdict, VerdictStatus
from proxy.waivers import (
    WaiverError,
    WaiverScope,
    can_waive,
    find_waiver,
    new_waiver,
    parse_expiry,
    parse_target,
)

NOW = 1_800_000_000.0
COMMIT = "a" * 40
SHA = "b" * 64


def verdict(**overrides: object) -> Verdict:
    values: dict[str, object] = {
        "artifact_id": "0123456789ab",
        "status": VerdictStatus.QUARANTINED,
        "policy_status": VerdictStatus.QUARANTINED,
        "sha256": SHA,
        "size": 10,
        "repo_id": "acme/model",
        "commit": COMMIT,
        "path": "model.bin",
    }
    values.update(overrides)
    return Verdict.model_validate(values)


def waiver(**fields: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = {"reason": "checked", "created_by": "alice", "now": NOW}
    args.update(fields)
    return new_waiver(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("7d", 7 * 86400), ("12h", 12 * 3600), ("30m", 1800), ("2w", 14 * 86400), ("90s", 90), ("1 d", 86400)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_expiry(text, NOW) == NOW + seconds


def test_absolute_expiry_is_utc_unless_it_says_otherwise() -> None:
    assert parse_expiry("2030-01-02", NOW) == datetime(2030, 1, 2, tzinfo=UTC).timestamp()
    assert parse_expiry("2030-01-02T03:04:05+02:00", NOW) == datetime(2030, 1, 2, 1, 4, 5, tzinfo=UTC).timestamp()
    assert parse_expiry("", NOW) is None and parse_expiry(None, NOW) is None


@pytest.mark.parametrize("text", ["yesterday", "7x", "0d", "2001-01-01", "-3d"])
def test_bad_or_past_expiry_is_refused(text: str) -> None:
    with pytest.raises(WaiverError):
        parse_expiry(text, NOW)


def test_each_scope_covers_exactly_its_target() -> None:
    v = verdict()
    other_commit = verdict(commit="c" * 40, artifact_id="ffffffffffff")
    other_repo = verdict(repo_id="acme/other", artifact_id="eeeeeeeeeeee", sha256="d" * 64)
    dataset = verdict(repo_type=RepoType.DATASET, artifact_id="dddddddddddd", sha256="e" * 64)
    same_bytes_elsewhere = verdict(repo_id="evil/copy", artifact_id="cccccccccccc")
    everyone = [v, other_commit, other_repo, dataset, same_bytes_elsewhere]
    cases = [
        (waiver(scope="artifact", artifact_id=v.artifact_id), [v]),
        (waiver(scope="sha256", sha256=SHA.upper()), [v, other_commit, same_bytes_elsewhere]),
        (waiver(scope="commit", repo_id="acme/model", commit=COMMIT[:12]), [v]),
        (waiver(scope="repo", repo_id="acme/model"), [v, other_commit]),
        (waiver(scope="repo", repo_id="acme/model", repo_type="dataset"), [dataset]),
    ]
    for w, covered in cases:
        assert [x.artifact_id for x in everyone if w.covers(x)] == [x.artifact_id for x in covered], w.target


def test_expiry_and_revocation_end_a_waiver() -> None:
    w = waiver(scope="repo", repo_id="acme/model", expires="1h")
    v = verdict()
    assert find_waiver([w], v, NOW + 3599) == w
    assert find_waiver([w], v, NOW + 3600) is None
    assert w.state(NOW + 3600) == "expired"
    revoked = w.model_copy(update={"revoked_at": NOW + 1, "revoked_by": "bob"})
    assert find_waiver([revoked], v, NOW + 2) is None and revoked.state(NOW + 2) == "revoked"


def test_a_waiver_never_overrides_a_reject_or_touches_an_approval() -> None:
    w = waiver(scope="repo", repo_id="acme/model")
    rejected = verdict(status=VerdictStatus.REJECTED, admin_status=VerdictStatus.REJECTED)
    approved = verdict(status=VerdictStatus.APPROVED, policy_status=VerdictStatus.APPROVED)
    blocked = verdict(status=VerdictStatus.BLOCKED, policy_status=VerdictStatus.BLOCKED)
    assert not can_waive(rejected) and find_waiver([w], rejected, NOW) is None
    assert find_waiver([w], approved, NOW) is None
    assert find_waiver([w], blocked, NOW) == w


def test_broad_waivers_do_not_cover_unsafe_bytes_but_named_ones_do() -> None:
    unsafe = verdict(status=VerdictStatus.BLOCKED, scan_verdict="unsafe")
    clean = verdict(status=VerdictStatus.BLOCKED, scan_verdict="clean")
    for broad in (
        waiver(scope="repo", repo_id="acme/model"),
        waiver(scope="commit", repo_id="acme/model", commit=COMMIT),
    ):
        assert not broad.covers(unsafe) and broad.covers(clean)
    assert waiver(scope="artifact", artifact_id=unsafe.artifact_id).covers(unsafe)
    assert waiver(scope="sha256", sha256=SHA).covers(unsafe)


def test_narrowest_scope_wins() -> None:
    broad = waiver(scope="repo", repo_id="acme/model")
    narrow = waiver(scope="artifact", artifact_id="0123456789ab", now=NOW + 5)
    assert find_waiver([broad, narrow], verdict(), NOW + 10) == narrow


def test_an_early_block_without_content_is_not_matched_by_an_empty_sha256() -> None:
    w = waiver(scope="sha256", sha256=SHA)
    assert not w.covers(verdict(sha256=""))


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("0123456789ab", {"scope": "artifact", "artifact_id": "0123456789ab"}),
        (SHA, {"scope": "sha256", "sha256": SHA}),
        ("acme/model", {"scope": "repo", "repo_id": "acme/model", "repo_type": "model"}),
        ("datasets/acme/data", {"scope": "repo", "repo_id": "acme/data", "repo_type": "dataset"}),
        ("acme/model@abc1234", {"scope": "commit", "repo_id": "acme/model", "commit": "abc1234", "repo_type": "model"}),
        ("acme/model@abc1234:w.bin", {"scope": "artifact", "ref": "acme/model@abc1234:w.bin"}),
    ],
)
def test_targets_as_admins_type_them(target: str, expected: dict[str, str]) -> None:
    assert parse_target(target) == expected


@pytest.mark.parametrize(
    "fields",
    [
        {"scope": "artifact", "artifact_id": "xyz"},
        {"scope": "sha256", "sha256": "abc"},
        {"scope": "repo", "repo_id": "not a repo"},
        {"scope": "commit", "repo_id": "acme/model", "commit": "zz"},
        {"scope": "repo", "repo_id": "acme/model", "commit": "abcdef12"},
        {"scope": "galaxy", "repo_id": "acme/model"},
        {"scope": "repo", "repo_id": "acme/model", "reason": "  "},
        {"scope": "repo", "repo_id": "acme/model", "repo_type": "kernel"},
    ],
)
def test_invalid_waivers_are_refused_with_a_message(fields: dict[str, str]) -> None:
    with pytest.raises(WaiverError, match="hubgate: "):
        waiver(**fields)


def test_ids_are_unique_and_scopes_typed() -> None:
    ids = {waiver(scope="repo", repo_id="acme/model").id for _ in range(50)}
    assert len(ids) == 50
    assert waiver(scope="repo", repo_id="acme/model").scope is WaiverScope.REPO
