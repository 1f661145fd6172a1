"""Admin REST API under /admin/api/ (Bearer HUBGATE_ADMIN_TOKEN, constant-time compare, 401 otherwise)."""

from __future__ import annotations

import hmac
import json
import time
from typing import Any

from aiohttp import web

from proxy import admin
from proxy.errors import BadRequest, Unauthorized
from proxy.hfmeta import info_key, repo_meta_from_info
from proxy.models import REPO_ID_RE, RepoType, Verdict, VerdictStatus
from proxy.policy import base_models_of, licenses_of
from proxy.web import workflow
from proxy.web.keys import BLOBS, SETTINGS, STORE

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
        raise Unauthorized("hubgate: missing or wrong admin token (Authorization: Bearer <HUBGATE_ADMIN_TOKEN>)")
    name = request.headers.get(ADMIN_NAME_HEADER, "admin").strip() or "admin"
    if not name.replace("-", "").replace("_", "").replace(".", "").replace("@", "").isalnum() or len(name) > 64:
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
    info = await store.get_doc("info", info_key(verdict.repo_type, verdict.repo_id, verdict.commit))
    card: dict[str, Any] = {}
    if isinstance(info, dict):
        repo = repo_meta_from_info(verdict.repo_type, verdict.repo_id, verdict.commit, info)
        card = {"license": (repo.card_data or {}).get("license"), "licenses": licenses_of(repo)}
        card["base_models"] = base_models_of(repo)
    waivers = [admin.waiver_json(w) for w in await store.list_waivers() if w.covers(verdict)]
    return _json(
        verdict_json(verdict)
        | {
            "scan": report.model_dump(mode="json") if report else None,
            "history": history,
            "card": card,
            "waivers": waivers,
        }
    )


async def decide(request: web.Request) -> web.Response:
    """POST /admin/api/artifacts/{id}/{approve|reject|revoke} with {"reason": "..."}."""
    name = require_admin(request)
    reason = str((await _body(request)).get("reason", ""))
    store, target, action = request.app[STORE], request.match_info["id"], request.match_info["action"]
    if action == "approve":
        verdict = await admin.approve(store, request.app[BLOBS], target, by=name, reason=reason)
    elif action == "reject":
        verdict = await admin.reject(store, target, by=name, reason=reason)
    else:
        verdict = await admin.revoke(store, target, by=name, reason=reason)
    return _json(verdict_json(verdict))


async def audit(request: web.Request) -> web.Response:
    require_admin(request)
    try:
        since = float(request.query["since"]) if "since" in request.query else None
        count = int(request.query.get("count", "1000"))
    except ValueError as exc:
        raise BadRequest("hubgate: 'since' is epoch seconds and 'count' a whole number") from exc
    actor = request.query.get("actor", "")
    count = max(1, min(count, 10_000))
    entries = await request.app[STORE].read_audit(
        since=since,
        count=10_000 if actor else count,
        artifact_id=request.query.get("artifact"),
        event=request.query.get("event"),
    )
    if actor:  # a substring of the actor ("alice" matches "admin:alice")
        entries = [e for e in entries if actor in e.get("actor", "")][-count:]
    return _json(entries)


async def reload_policy(request: web.Request) -> web.Response:
    name = require_admin(request)
    return _json(await workflow.reload_policy(request.app, f"admin:{name}"))


# ---- waivers ---------------------------------------------------------------------------------------


async def list_waivers(request: web.Request) -> web.Response:
    require_admin(request)
    waivers = await request.app[STORE].list_waivers()
    now = time.time()
    rows = [admin.waiver_json(w, now) for w in waivers]
    if request.query.get("all") not in ("1", "true", "yes"):
        rows = [r for r in rows if r["state"] == "active"]
    return _json(rows)


async def create_waiver(request: web.Request) -> web.Response:
    """{"target": "<artifact id | sha256 | org/name@commit | org/name | org/name@commit:path>", "reason": "...",
    "expires": "7d" | "2026-12-31" | null, "repo_type": "model" | "dataset" | "space", "scope": optional check}"""
    name = require_admin(request)
    body = await _body(request)
    waiver = await admin.create_waiver(
        request.app[STORE],
        str(body.get("target", "")),
        by=name,
        reason=str(body.get("reason", "")),
        expires=str(body["expires"]) if body.get("expires") else None,
        repo_type=str(body["repo_type"]) if body.get("repo_type") else None,
        scope=str(body["scope"]) if body.get("scope") else None,
    )
    return _json(admin.waiver_json(waiver), status=201)


async def revoke_waiver(request: web.Request) -> web.Response:
    name = require_admin(request)
    body = await _body(request)
    reason = str(body.get("reason", "") or request.query.get("reason", ""))
    waiver = await admin.revoke_waiver(request.app[STORE], request.match_info["id"], by=name, reason=reason)
    return _json(admin.waiver_json(waiver))


# ---- prefetch ----------------------------------------------------------------------------------------


async def start_vet(request: web.Request) -> web.Response:
    """{"repo": "org/name", "revision": "main", "include": [globs], "exclude": [globs], "repo_type": "model"}"""
    name = require_admin(request)
    body = await _body(request)
    repo = str(body.get("repo", ""))
    if not REPO_ID_RE.match(repo):
        raise BadRequest(f"hubgate: {repo!r} is not a repo id (org/name)")
    try:
        repo_type = RepoType(str(body.get("repo_type") or "model"))
    except ValueError as exc:
        raise BadRequest("hubgate: repo_type is model, dataset or space") from exc
    include, exclude = body.get("include") or [], body.get("exclude") or []
    if (
        not isinstance(include, list)
        or not isinstance(exclude, list)
        or not all(isinstance(g, str) for g in [*include, *exclude])
    ):
        raise BadRequest("hubgate: include and exclude are lists of globs")
    job = await request.app[workflow.VETJOBS].start(
        repo,
        revision=str(body.get("revision") or "main"),
        include=include,
        exclude=exclude,
        repo_type=repo_type,
        by=name,
    )
    return _json(job, status=202)


async def show_vet(request: web.Request) -> web.Response:
    require_admin(request)
    job = await request.app[workflow.VETJOBS].get(request.match_info["job"])
    if job is None:
        raise admin.NotFound(f"hubgate: no vet job {request.match_info['job']} (jobs are kept 7 days)")
    return _json(job)


def setup_admin_routes(app: web.Application) -> None:
    app.router.add_get("/admin/api/artifacts", list_artifacts)
    app.router.add_get("/admin/api/lookup", show_artifact)
    app.router.add_get("/admin/api/artifacts/{id}", show_artifact)
    app.router.add_post("/admin/api/artifacts/{id}/{action:approve|reject|revoke}", decide)
    app.router.add_get("/admin/api/audit", audit)
    app.router.add_post("/admin/api/policy/reload", reload_policy)
    app.router.add_get("/admin/api/waivers", list_waivers)
    app.router.add_post("/admin/api/waivers", create_waiver)
    app.router.add_delete("/admin/api/waivers/{id}", revoke_waiver)
    app.router.add_post("/admin/api/vet", start_vet)
    app.router.add_get("/admin/api/vet/{job}", show_vet)
