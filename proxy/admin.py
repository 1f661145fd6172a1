"""Admin decisions (approve, reject, revoke) and artifact look-up; shared by the REST API, console and CLI.

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

ARTIFACT_ID_RE = re.compile(r"^[0-9a-f]{12}$")
HUMAN_REF_RE = re.compile(
    r"^(?:(?P<type>datasets|spaces)/)?(?P<repo>[^@:]+)@(?P<rev>[0-9a-f]{4,40}):(?P<path>.+)$"
)


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


async def approve(store: VerdictStore, blobs: BlobStore, id_or_ref: str, *, by: str, reason: str) -> Verdict:
    verdict = await find_artifact(store, id_or_ref)
    reason = _require_reason(reason)
    if verdict.sha256 and blobs.quarantine_path(verdict.sha256) and not blobs.blob_path(verdict.sha256):
        await blobs.promote(verdict.sha256)
    updated = verdict.model_copy(
        update={
            "status": VerdictStatus.APPROVED,
            "admin_status": VerdictStatus.APPROVED,
            "admin_reason": reason,
            "admin_by": by,
            "decided_by": f"admin:{by}",
            "updated_at": time.time(),
        }
    )
    await store.put_verdict(updated, event="approve", actor=f"admin:{by}", detail={"reason": reason})
    return updated


async def reject(store: VerdictStore, id_or_ref: str, *, by: str, reason: str) -> Verdict:
    verdict = await find_artifact(store, id_or_ref)
    reason = _require_reason(reason)
    updated = verdict.model_copy(
        update={
            "status": VerdictStatus.REJECTED,
            "admin_status": VerdictStatus.REJECTED,
            "admin_reason": reason,
            "admin_by": by,
            "decided_by": f"admin:{by}",
            "updated_at": time.time(),
        }
    )
    await store.put_verdict(updated, event="reject", actor=f"admin:{by}", detail={"reason": reason})
    return updated


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
