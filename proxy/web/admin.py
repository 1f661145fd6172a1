"""Admin REST API under /admin/api/ (Bearer HUBGATE_ADMIN_TOKEN, constant-time compare, 401 otherwise)."""

from __future__ import annotations

import hmac
import json
from typing import Any

from aiohttp import web

from proxy import admin
from proxy.errors import BadRequest, Unauthorized
from proxy.models import Verdict, VerdictStatus
from proxy.policy import PolicyError
from proxy.web.keys import BLOBS, POLICY, SETTINGS, STORE

ADMIN_NAME_HEADER = "X-Hubgate-Admin"


def verdict_json(verdict: Verdict) -> dict[str, Any]:
    data = verdict.model_dump(mode="json")
    data["id"] = verdict.artifact_id
    data["ref"] = verdict.ref.human
    return data


def require_admin(request: web.Request) -> str:
    """The admin's name (from the X-Hubgate-Admin header, default 'admin') once the token checks out."""
    token = request.app[SETTINGS].admin_token
    if token is None:
        raise Unauthorized("hubgate: admin API disabled: set HUBGATE_ADMIN_TOKEN on the server")
    given = request.headers.get("Authorization", "")
    expected = f"Bearer {token.get_secret_value()}"
    cookie_ok = request.get("admin_session") is True
    if not cookie_ok and not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized(
            "hubgate: missing or wrong admin token (Authorization: Bearer <HUBGATE_ADMIN_TOKEN>)"
        )
    name = request.headers.get(ADMIN_NAME_HEADER, "admin").strip() or "admin"
    if (
        not name.replace("-", "").replace("_", "").replace(".", "").replace("@", "").isalnum()
        or len(name) > 64
    ):
        raise BadRequest("hubgate: admin name must be letters, digits, '-', '_', '.', '@' (64 at most)")
    return name


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(value).encode(), content_type="application/json")


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError as exc:
        raise BadRequest('hubgate: the request body must be JSON, e.g. {"reason": "..."}') from exc
    if not isinstance(body, dict):
        raise BadRequest("hubgate: the request body must be a JSON object")
    return body


async def list_artifacts(request: web.Request) -> web.Response:
    require_admin(request)
    status_arg = request.query.get("status")
    try:
        status = VerdictStatus(status_arg) if status_arg else None
    except ValueError as exc:
        choices = ", ".join(s.value for s in VerdictStatus)
        raise BadRequest(f"hubgate: unknown status {status_arg!r}; choose one of {choices}") from exc
    verdicts = await request.app[STORE].list_verdicts(status)
    return _json([verdict_json(v) for v in verdicts])


async def show_artifact(request: web.Request) -> web.Response:
    require_admin(request)
    store = request.app[STORE]
    verdict = await admin.find_artifact(store, request.match_info.get("id") or request.query.get("ref", ""))
    report = await store.get_scan(verdict.sha256) if verdict.sha256 else None
    history = await store.read_audit(artifact_id=verdict.artifact_id, count=200)
    return _json(
        verdict_json(verdict)
        | {"scan": report.model_dump(mode="json") if report else None, "history": history}
    )


async def approve(request: web.Request) -> web.Response:
    name = require_admin(request)
    body = await _body(request)
    verdict = await admin.approve(
        request.app[STORE],
        request.app[BLOBS],
        request.match_info["id"],
        by=name,
        reason=str(body.get("reason", "")),
    )
    return _json(verdict_json(verdict))


async def reject(request: web.Request) -> web.Response:
    name = require_admin(request)
    body = await _body(request)
    verdict = await admin.reject(
        request.app[STORE], request.match_info["id"], by=name, reason=str(body.get("reason", ""))
    )
    return _json(verdict_json(verdict))


async def revoke(request: web.Request) -> web.Response:
    name = require_admin(request)
    body = await _body(request)
    verdict = await admin.revoke(
        request.app[STORE], request.match_info["id"], by=name, reason=str(body.get("reason", ""))
    )
    return _json(verdict_json(verdict))


async def audit(request: web.Request) -> web.Response:
    require_admin(request)
    try:
        since = float(request.query["since"]) if "since" in request.query else None
        count = int(request.query.get("count", "1000"))
    except ValueError as exc:
        raise BadRequest("hubgate: 'since' is epoch seconds and 'count' a whole number") from exc
    entries = await request.app[STORE].read_audit(
        since=since,
        count=max(1, min(count, 10_000)),
        artifact_id=request.query.get("artifact"),
        event=request.query.get("event"),
    )
    return _json(entries)


async def reload_policy(request: web.Request) -> web.Response:
    name = require_admin(request)
    state = request.app[POLICY]
    try:
        old, new = state.reload()
    except PolicyError as exc:
        await request.app[STORE].append_audit("policy-reload-rejected", f"admin:{name}", error=str(exc))
        raise BadRequest(f"hubgate: policy not reloaded, the old one stays in force: {exc}") from exc
    await request.app[STORE].append_audit("policy-reload", f"admin:{name}", old=old.hash, new=new.hash)
    return _json({"old": old.hash, "new": new.hash, "source": state.source})


def setup_admin_routes(app: web.Application) -> None:
    app.router.add_get("/admin/api/artifacts", list_artifacts)
    app.router.add_get("/admin/api/lookup", show_artifact)
    app.router.add_get("/admin/api/artifacts/{id}", show_artifact)
    app.router.add_post("/admin/api/artifacts/{id}/approve", approve)
    app.router.add_post("/admin/api/artifacts/{id}/reject", reject)
    app.router.add_post("/admin/api/artifacts/{id}/revoke", revoke)
    app.router.add_get("/admin/api/audit", audit)
    app.router.add_post("/admin/api/policy/reload", reload_policy)
