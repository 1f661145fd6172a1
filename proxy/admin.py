"""Admin decisions (approve, reject, revoke, waivers) and artifact look-up; shared by the REST API, console and CLI.

The human decision is stored beside the automated one (`admin_status` next to `policy_status`), never over it,
so revoking an admin decision returns the artifact to what policy says.
"""

from __future__ import annotations

import re
import time

from proxy.errors import BadRequest, HubgateError
from proxy.models import Verdict, VerdictStatus
from proxy.store import BlobStore
from proxy.verdicts import VerdictStore
from proxy.waivers import Waiver, WaiverError, WaiverScope, new_waiver, parse_target

ARTIFACT_ID_RE = re.compile(r"^[0-9a-f]{12}$")
HUMAN_REF_RE = re.compile(r"^(?:(?P<type>datasets|spaces)/)?(?P<repo>[^@:]+)@(?P<rev>[0-9a-f]{4,40}):(?P<path>.+)$")


class NotFound(HubgateError):
    status = 404


async def find_artifact(store: VerdictStore, id_or_ref: str) -> Verdict:
    """An artifact id (12 hex) or a human reference `org/name@<commit prefix>:path`."""
    if ARTIFACT_ID_RE.match(id_or_ref):
        verdict = await store.get_verdict(id_or_ref)
        if verdict is None:
            raise NotFound(f"hubgate: no artifact {id_or_ref}")
        return verdict
    match = HUMAN_REF_RE.match(id_or_ref)
    if match is None:
        raise BadRequest(
            f"hubgate: {id_or_ref!r} is neither an artifact id (12 hex) nor a reference 'org/name@commit:path'"
        )
    repo_type = {"datasets": "dataset", "spaces": "space"}.get(match["type"] or "", "model")
    found = await store.find_verdicts(match["repo"], match["path"], repo_type=repo_type, commit=match["rev"])
    if not found:
        raise NotFound(f"hubgate: no artifact matches {id_or_ref}")
    if len({v.commit for v in found}) > 1:
        raise BadRequest(f"hubgate: {id_or_ref} is ambiguous; give more of the commit or the artifact id")
    return found[0]


def _require_reason(reason: str) -> str:
    reason = reason.strip()
    if not reason:
        raise BadRequest("hubgate: a reason is required for every admin decision")
    if len(reason) > 2000:
        raise BadRequest("hubgate: the reason is longer than 2000 characters")
    return reason


async def _record_admin_decision(
    store: VerdictStore, verdict: Verdict, status: VerdictStatus, *, event: str, by: str, reason: str
) -> Verdict:
    updated = verdict.model_copy(
        update={
            "status": status,
            "admin_status": status,
            "admin_reason": reason,
            "admin_by": by,
            "decided_by": f"admin:{by}",
            "updated_at": time.time(),
        }
    )
    await store.put_verdict(updated, event=event, actor=f"admin:{by}", detail={"reason": reason})
    return updated


async def approve(store: VerdictStore, blobs: BlobStore, id_or_ref: str, *, by: str, reason: str) -> Verdict:
    verdict = await find_artifact(store, id_or_ref)
    reason = _require_reason(reason)
    if verdict.sha256 and blobs.quarantine_path(verdict.sha256) and not blobs.blob_path(verdict.sha256):
        await blobs.promote(verdict.sha256)
    return await _record_admin_decision(store, verdict, VerdictStatus.APPROVED, event="approve", by=by, reason=reason)


async def reject(store: VerdictStore, id_or_ref: str, *, by: str, reason: str) -> Verdict:
    verdict = await find_artifact(store, id_or_ref)
    reason = _require_reason(reason)
    return await _record_admin_decision(store, verdict, VerdictStatus.REJECTED, event="reject", by=by, reason=reason)


async def revoke(store: VerdictStore, id_or_ref: str, *, by: str, reason: str) -> Verdict:
    """Withdraw an admin decision: the artifact falls back to what policy decided (re-decided on next use)."""
    verdict = await find_artifact(store, id_or_ref)
    reason = _require_reason(reason)
    if verdict.admin_status is None:
        raise BadRequest(f"hubgate: artifact {verdict.artifact_id} has no admin decision to revoke")
    fallback = verdict.policy_status or VerdictStatus.QUARANTINED
    updated = verdict.model_copy(
        update={
            "status": fallback,
            "admin_status": None,
            "admin_reason": "",
            "admin_by": "",
            "decided_by": "policy",
            "policy_hash": "",  # forces a re-decision under the current policy on next use
            "updated_at": time.time(),
        }
    )
    await store.put_verdict(updated, event="revoke", actor=f"admin:{by}", detail={"reason": reason})
    return updated


# ---- waivers ---------------------------------------------------------------------------------------


async def create_waiver(
    store: VerdictStore,
    target: str,
    *,
    by: str,
    reason: str,
    expires: str | None = None,
    repo_type: str | None = None,
    scope: str | None = None,
) -> Waiver:
    """Waive a target (see `proxy.waivers.parse_target`). An artifact waiver needs a known artifact; an
    artifact an admin rejected cannot be waived (revoke the rejection first)."""
    try:
        fields = parse_target(target, repo_type)
    except WaiverError as exc:
        raise BadRequest(str(exc)) from exc
    if scope and scope != fields["scope"]:
        raise BadRequest(f"hubgate: {target!r} names a {fields['scope']} waiver, not a {scope} one")
    label = ""
    if fields["scope"] == WaiverScope.ARTIFACT.value:
        verdict = await find_artifact(store, fields.pop("ref", "") or fields["artifact_id"])
        if verdict.admin_status is VerdictStatus.REJECTED:
            raise BadRequest(
                f"hubgate: artifact {verdict.artifact_id} was rejected by {verdict.admin_by}; "
                "a waiver does not override a rejection (revoke it first: hubgate revoke ID --reason ...)"
            )
        fields["artifact_id"], label = verdict.artifact_id, verdict.ref.human
    try:
        waiver = new_waiver(**fields, reason=reason, created_by=by, now=time.time(), expires=expires, label=label)
    except WaiverError as exc:
        raise BadRequest(str(exc)) from exc
    await store.put_waiver(waiver, event="waive", actor=f"admin:{by}")
    return waiver


async def revoke_waiver(store: VerdictStore, waiver_id: str, *, by: str, reason: str) -> Waiver:
    """Withdraw a waiver; artifacts it let through are refused again from the next request on."""
    reason = _require_reason(reason)
    waiver = await store.get_waiver(waiver_id)
    if waiver is None:
        raise NotFound(f"hubgate: no waiver {waiver_id}")
    if waiver.revoked_at is not None:
        raise BadRequest(f"hubgate: waiver {waiver_id} was already revoked by {waiver.revoked_by}")
    updated = waiver.model_copy(update={"revoked_at": time.time(), "revoked_by": by, "revoke_reason": reason})
    await store.put_waiver(updated, event="unwaive", actor=f"admin:{by}")
    return updated


def waiver_json(waiver: Waiver, now: float | None = None) -> dict[str, object]:
    return waiver.model_dump(mode="json") | {
        "state": waiver.state(time.time() if now is None else now),
        "target": waiver.target,
    }
