"""Waivers: an admin's documented exception that lets a quarantined or policy-blocked artifact be served.

Pure logic only (no Redis, no clock of its own: `now` is passed in). Storage lives in `proxy.verdicts`,
the admin actions in `proxy.admin`, the hook in `proxy.pipeline`.

A waiver has one scope:

    artifact  one artifact id (one file of one repo at one commit)
    sha256    one content digest, wherever it appears
    commit    one repo at one commit (every file of it)
    repo      a whole repo (`org/name` of one repo type), every commit, present and future

A waiver never overrides an admin's reject, and never skips vetting: bytes are always fetched, verified and
scanned, the waiver only overrides the policy's refusal. A broad waiver (a commit, a whole repo) is given
before anyone has seen the bytes, so it does not cover content the scanners found unsafe: that takes a
waiver naming the artifact or its sha256. It stops applying the moment it is revoked or expires
(both are checked on every request).
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from proxy.models import REPO_ID_RE, RepoType, ScanVerdict, Verdict, VerdictStatus

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
COMMIT_RE = re.compile(r"^[0-9a-f]{7,40}$")
ARTIFACT_RE = re.compile(r"^[0-9a-f]{12}$")
DURATION_RE = re.compile(r"^(?P<n>\d+)\s*(?P<unit>[smhdw])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_REASON = 2000


class WaiverError(ValueError):
    """A waiver request that cannot be honoured; the message says why and what to write instead."""


class WaiverScope(StrEnum):
    ARTIFACT = "artifact"
    SHA256 = "sha256"
    COMMIT = "commit"
    REPO = "repo"


class Waiver(BaseModel):
    id: str
    scope: WaiverScope
    artifact_id: str = ""
    sha256: str = ""
    repo_type: RepoType = RepoType.MODEL
    repo_id: str = ""
    commit: str = ""  # a prefix of at least 7 hex digits is accepted (refs show 12)
    reason: str
    created_by: str
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    revoked_by: str = ""
    revoke_reason: str = ""
    label: str = ""  # human description of the target (e.g. the artifact's ref), for listings
    extra: dict[str, str] = Field(default_factory=dict)

    def active(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def state(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"

    @property
    def target(self) -> str:
        """What the waiver covers, as one line."""
        prefix = "" if self.repo_type is RepoType.MODEL else f"{self.repo_type.value}s/"
        if self.scope is WaiverScope.ARTIFACT:
            return f"artifact {self.artifact_id}" + (f" ({self.label})" if self.label else "")
        if self.scope is WaiverScope.SHA256:
            return f"content sha256 {self.sha256}"
        if self.scope is WaiverScope.COMMIT:
            return f"{prefix}{self.repo_id}@{self.commit}"
        return f"{prefix}{self.repo_id} (every commit)"

    def covers(self, verdict: Verdict) -> bool:
        """Does this waiver's scope include the artifact (ignores whether it is active)?"""
        if self.scope is WaiverScope.ARTIFACT:
            return verdict.artifact_id == self.artifact_id
        if self.scope is WaiverScope.SHA256:
            return bool(verdict.sha256) and verdict.sha256 == self.sha256
        if verdict.scan_verdict is ScanVerdict.UNSAFE:
            return False  # unseen bytes with findings: only a waiver naming them covers them
        same_repo = verdict.repo_type == self.repo_type and verdict.repo_id == self.repo_id
        if self.scope is WaiverScope.COMMIT:
            return same_repo and verdict.commit.startswith(self.commit)
        return same_repo


def parse_expiry(text: str | None, now: float) -> float | None:
    """`7d`, `12h`, `30m`, `2w`, `90s` from now, or an ISO date / date-time (UTC unless it says otherwise).
    Empty or None: no expiry. An expiry in the past is an error (it would waive nothing)."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    match = DURATION_RE.match(text)
    if match:
        seconds = int(match["n"]) * UNIT_SECONDS[match["unit"]]
        if seconds <= 0:
            raise WaiverError(f"hubgate: expiry {text!r} is not in the future")
        return now + seconds
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise WaiverError(
            f"hubgate: expiry {text!r} is neither a duration (e.g. 7d, 12h, 30m, 2w) nor an ISO date "
            "(e.g. 2026-12-31 or 2026-12-31T18:00:00Z)"
        ) from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    expires = when.timestamp()
    if expires <= now:
        raise WaiverError(f"hubgate: expiry {text!r} is in the past")
    return expires


def new_waiver(
    *,
    scope: str,
    reason: str,
    created_by: str,
    now: float,
    artifact_id: str = "",
    sha256: str = "",
    repo_id: str = "",
    repo_type: str = "model",
    commit: str = "",
    expires: str | None = None,
    label: str = "",
) -> Waiver:
    """A validated waiver with a fresh id; raises WaiverError with a clear message otherwise."""
    try:
        kind = WaiverScope(scope)
    except ValueError:
        raise WaiverError(
            f"hubgate: unknown waiver scope {scope!r}; choose one of {', '.join(s.value for s in WaiverScope)}"
        ) from None
    try:
        rtype = RepoType(repo_type or "model")
    except ValueError:
        raise WaiverError(f"hubgate: unknown repo type {repo_type!r}; choose model, dataset or space") from None
    reason = reason.strip()
    if not reason:
        raise WaiverError("hubgate: a waiver needs a reason")
    if len(reason) > MAX_REASON:
        raise WaiverError(f"hubgate: the reason is longer than {MAX_REASON} characters")
    fields: dict[str, str] = {}
    if kind is WaiverScope.ARTIFACT:
        fields["artifact_id"] = _matching(artifact_id, ARTIFACT_RE, "an artifact id (12 hex digits)")
    elif kind is WaiverScope.SHA256:
        fields["sha256"] = _matching(sha256.lower(), SHA256_RE, "a sha256 (64 hex digits)")
    else:
        fields["repo_id"] = _matching(repo_id, REPO_ID_RE, "a repo id (org/name)")
        if kind is WaiverScope.COMMIT:
            fields["commit"] = _matching(commit.lower(), COMMIT_RE, "a commit (7 to 40 hex digits)")
        elif commit:
            raise WaiverError("hubgate: a whole-repo waiver takes no commit (use scope 'commit' for one commit)")
    return Waiver(
        id="w" + secrets.token_hex(5),
        scope=kind,
        repo_type=rtype,
        reason=reason,
        created_by=created_by,
        created_at=now,
        expires_at=parse_expiry(expires, now),
        label=label,
        **fields,
    )


def _matching(value: str, pattern: re.Pattern[str], what: str) -> str:
    """`value` when it matches `pattern`; a WaiverError naming `what` was expected otherwise."""
    if not pattern.match(value):
        raise WaiverError(f"hubgate: {value!r} is not {what}")
    return value


def can_waive(verdict: Verdict) -> bool:
    """Only a policy refusal can be waived; an admin's reject stands until the admin revokes it."""
    if verdict.admin_status is VerdictStatus.REJECTED or verdict.status is VerdictStatus.REJECTED:
        return False
    return verdict.status in (VerdictStatus.QUARANTINED, VerdictStatus.BLOCKED)


def find_waiver(waivers: list[Waiver], verdict: Verdict, now: float) -> Waiver | None:
    """The active waiver that lets this verdict be served (narrowest scope first, then the oldest), or None."""
    if not can_waive(verdict):
        return None
    order = [WaiverScope.ARTIFACT, WaiverScope.SHA256, WaiverScope.COMMIT, WaiverScope.REPO]
    matching = [w for w in waivers if w.active(now) and w.covers(verdict)]
    matching.sort(key=lambda w: (order.index(w.scope), w.created_at, w.id))
    return matching[0] if matching else None


def parse_target(target: str, repo_type: str | None = None) -> dict[str, str]:
    """What an admin types, to waiver fields: `0a1b2c3d4e5f` (artifact id), a 64-hex sha256,
    `org/name@commit` (one commit), `org/name` (whole repo); `datasets/` or `spaces/` prefixes set the repo type.
    An artifact reference `org/name@commit:path` returns {"ref": ...} for the caller to look up."""
    target = target.strip()
    if ARTIFACT_RE.match(target):
        return {"scope": WaiverScope.ARTIFACT.value, "artifact_id": target}
    if SHA256_RE.match(target.lower()):
        return {"scope": WaiverScope.SHA256.value, "sha256": target.lower()}
    if ":" in target:
        return {"scope": WaiverScope.ARTIFACT.value, "ref": target}
    kind = repo_type or "model"
    for prefix, name in (("datasets/", "dataset"), ("spaces/", "space"), ("models/", "model")):
        if target.startswith(prefix):
            target, kind = target[len(prefix) :], name
    repo_id, _, commit = target.partition("@")
    if commit:
        return {"scope": WaiverScope.COMMIT.value, "repo_id": repo_id, "commit": commit, "repo_type": kind}
    if not REPO_ID_RE.match(repo_id):
        raise WaiverError(
            f"hubgate: cannot tell what {target!r} names; give an artifact id (12 hex), a sha256 (64 hex), "
            "org/name@commit, org/name, or org/name@commit:path"
        )
    return {"scope": WaiverScope.REPO.value, "repo_id": repo_id, "repo_type": kind}
