"""The web console at /admin/: server-rendered pages over the same admin actions as the API and CLI.

Sign-in exchanges the admin token for a session cookie: `payload.signature`, where the payload holds the
admin's name, an expiry and a per-session CSRF token, and the signature is an HMAC keyed by the admin token
(rotating the token ends every session). The cookie is HttpOnly, SameSite=Strict, scoped to /admin/. Every
form carries the session's CSRF token, compared in constant time; a cross-origin Origin header is refused.
Templates autoescape everything.
"""

from __future__ import annotations

import functools
import hmac
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp_jinja2
import jinja2
from aiohttp import web

from proxy import admin
from proxy.errors import BadRequest, HubgateError
from proxy.hfmeta import info_key, repo_meta_from_info
from proxy.models import REPO_ID_RE, RepoType, VerdictStatus
from proxy.pipeline import servable
from proxy.policy import base_models_of, licenses_of
from proxy.web.keys import BLOBS, POLICY, SETTINGS, STORE
from proxy.web.session import COOKIE, SESSION_SECONDS, current_session, make_cookie, session_key
from proxy.web.workflow import VETJOBS

NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.@")


def _signed_in(request: web.Request) -> dict[str, Any]:
    session = current_session(request)
    if session is None:
        raise web.HTTPSeeOther("/admin/login?" + urlencode({"next": request.path_qs}))
    return session


async def _form(request: web.Request, session: dict[str, Any]) -> dict[str, str]:
    """The posted form, once its CSRF token and origin check out."""
    origin = request.headers.get("Origin")
    if origin and origin != "null" and origin != f"{request.scheme}://{request.host}":
        raise web.HTTPForbidden(text="hubgate: cross-origin form refused")
    form = await request.post()
    given = str(form.get("csrf", ""))
    if not hmac.compare_digest(given.encode(), str(session["c"]).encode()):
        raise web.HTTPForbidden(text="hubgate: the form's CSRF token is missing or stale; reload the page")
    return {k: str(v) for k, v in form.items()}


def _page(request: web.Request, template: str, session: dict[str, Any] | None, **context: Any) -> web.Response:
    context |= {"session": session, "csrf": session["c"] if session else "", "flash": request.query.get("flash", "")}
    context.setdefault("error", request.query.get("error", ""))
    response = aiohttp_jinja2.render_template(template, request, context)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = "default-src 'self'; style-src 'self' 'unsafe-inline'"
    return response


def _back(path: str, *, flash: str = "", error: str = "") -> web.HTTPSeeOther:
    query = urlencode({k: v for k, v in (("flash", flash), ("error", error)) if v})
    return web.HTTPSeeOther(path + (f"?{query}" if query else ""))


# ---- sign in / out --------------------------------------------------------------------------------------


async def login_page(request: web.Request) -> web.Response:
    disabled = request.app[SETTINGS].admin_token is None
    return _page(request, "login.html", None, next=request.query.get("next", "/admin/"), disabled=disabled)


async def login(request: web.Request) -> web.Response:
    key = session_key(request)
    form = await request.post()
    target = str(form.get("next", "/admin/"))
    if not target.startswith("/admin/") or target.startswith("//"):
        target = "/admin/"
    token = request.app[SETTINGS].admin_token
    given = str(form.get("token", ""))
    name = str(form.get("name", "")).strip() or "admin"
    if key is None or token is None or not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        return _page(request, "login.html", None, next=target, error="wrong admin token", disabled=token is None)
    if not set(name) <= NAME_CHARS or len(name) > 64:
        return _page(request, "login.html", None, next=target, error="name: letters, digits, - _ . @ (64 at most)")
    value, _ = make_cookie(key, name, time.time())
    response = web.HTTPSeeOther(target)
    response.set_cookie(
        COOKIE,
        value,
        max_age=SESSION_SECONDS,
        path="/admin/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    await request.app[STORE].append_audit("console-sign-in", f"admin:{name}")
    raise response


async def logout(request: web.Request) -> web.Response:
    session = _signed_in(request)
    await _form(request, session)
    response = web.HTTPSeeOther("/admin/login")
    response.del_cookie(COOKIE, path="/admin/")
    raise response


# ---- pages ------------------------------------------------------------------------------------------------


async def queue(request: web.Request) -> web.Response:
    session = _signed_in(request)
    status_arg = request.query.get("status", "quarantined")
    try:
        status = VerdictStatus(status_arg)
    except ValueError:
        status = VerdictStatus.QUARANTINED
    store = request.app[STORE]
    verdicts = await store.list_verdicts(status, limit=500)
    counts = await store.count_by_status()
    policy = request.app[POLICY].current
    return _page(
        request,
        "queue.html",
        session,
        verdicts=verdicts,
        status=status.value,
        counts={s.value: n for s, n in counts.items()},
        policy=policy,
        policy_source=request.app[POLICY].source,
    )


async def artifact(request: web.Request) -> web.Response:
    session = _signed_in(request)
    store = request.app[STORE]
    try:
        verdict = await admin.find_artifact(store, request.match_info["id"])
    except HubgateError as exc:
        raise web.HTTPNotFound(text=exc.message) from exc
    report = await store.get_scan(verdict.sha256) if verdict.sha256 else None
    by_engine: dict[str, list[Any]] = defaultdict(list)
    for finding in report.findings if report else []:
        by_engine[finding.engine].append(finding)
    info = await store.get_doc("info", info_key(verdict.repo_type, verdict.repo_id, verdict.commit))
    card: dict[str, Any] = {}
    licenses: list[str] = []
    bases: list[str] = []
    if isinstance(info, dict):
        repo = repo_meta_from_info(verdict.repo_type, verdict.repo_id, verdict.commit, info)
        card = repo.card_data or {}
        licenses, bases = licenses_of(repo), base_models_of(repo)
    waivers = [w for w in await store.list_waivers() if w.covers(verdict)]
    history = await store.read_audit(artifact_id=verdict.artifact_id, count=200)
    return _page(
        request,
        "artifact.html",
        session,
        v=verdict,
        report=report,
        by_engine=dict(by_engine),
        card=card,
        licenses=licenses,
        bases=bases,
        waivers=waivers,
        now=time.time(),
        history=history,
        servable=servable(verdict),
        has_bytes=bool(verdict.sha256 and request.app[BLOBS].blob_path(verdict.sha256)),
    )


async def act(request: web.Request) -> web.Response:
    """approve / reject / revoke / waive one artifact, from its page."""
    session = _signed_in(request)
    form = await _form(request, session)
    aid, action = request.match_info["id"], request.match_info["action"]
    store, by, reason = request.app[STORE], str(session["n"]), form.get("reason", "")
    page = f"/admin/artifacts/{quote(aid)}"
    try:
        if action == "approve":
            await admin.approve(store, request.app[BLOBS], aid, by=by, reason=reason)
        elif action == "reject":
            await admin.reject(store, aid, by=by, reason=reason)
        elif action == "revoke":
            await admin.revoke(store, aid, by=by, reason=reason)
        elif action == "waive":
            scope = form.get("scope", "artifact")
            verdict = await admin.find_artifact(store, aid)
            target = {
                "artifact": verdict.artifact_id,
                "sha256": verdict.sha256,
                "commit": f"{verdict.repo_id}@{verdict.commit}",
                "repo": verdict.repo_id,
            }.get(scope, verdict.artifact_id)
            waiver = await admin.create_waiver(
                store,
                target,
                by=by,
                reason=reason,
                expires=form.get("expires") or None,
                repo_type=verdict.repo_type.value,
                scope=scope,
            )
            raise _back(page, flash=f"waiver {waiver.id} created ({waiver.target})")
        else:
            raise web.HTTPNotFound(text=f"hubgate: no action {action!r}")
    except HubgateError as exc:
        raise _back(page, error=exc.message) from exc
    raise _back(page, flash=f"{action}d" if action.endswith("e") else f"{action}ed")


async def waivers_page(request: web.Request) -> web.Response:
    session = _signed_in(request)
    now = time.time()
    waivers = await request.app[STORE].list_waivers()
    show_all = request.query.get("all") == "1"
    rows = [w for w in waivers if show_all or w.active(now)]
    return _page(request, "waivers.html", session, waivers=rows, now=now, show_all=show_all)


async def waiver_create(request: web.Request) -> web.Response:
    session = _signed_in(request)
    form = await _form(request, session)
    try:
        waiver = await admin.create_waiver(
            request.app[STORE],
            form.get("target", ""),
            by=str(session["n"]),
            reason=form.get("reason", ""),
            expires=form.get("expires") or None,
            repo_type=form.get("repo_type") or None,
        )
    except HubgateError as exc:
        raise _back("/admin/waivers", error=exc.message) from exc
    raise _back("/admin/waivers", flash=f"waiver {waiver.id} created ({waiver.target})")


async def waiver_revoke(request: web.Request) -> web.Response:
    session = _signed_in(request)
    form = await _form(request, session)
    try:
        waiver = await admin.revoke_waiver(
            request.app[STORE], request.match_info["id"], by=str(session["n"]), reason=form.get("reason", "")
        )
    except HubgateError as exc:
        raise _back("/admin/waivers", error=exc.message) from exc
    raise _back("/admin/waivers", flash=f"waiver {waiver.id} revoked")


async def audit_page(request: web.Request) -> web.Response:
    session = _signed_in(request)
    q = request.query
    try:
        hours = float(q["hours"]) if q.get("hours") else None
        count = max(1, min(int(q.get("count") or 200), 5000))
    except ValueError:
        raise _back("/admin/audit", error="hours and count are numbers") from None
    actor = q.get("actor", "").strip()
    entries = await request.app[STORE].read_audit(
        since=time.time() - hours * 3600 if hours is not None else None,
        count=count if not actor else 10_000,
        artifact_id=q.get("artifact") or None,
        event=q.get("event") or None,
    )
    if actor:
        entries = [e for e in entries if actor in e.get("actor", "")][-count:]
    entries.reverse()  # newest first on screen
    return _page(request, "audit.html", session, entries=entries, filters=dict(q))


async def vet_page(request: web.Request) -> web.Response:
    session = _signed_in(request)
    job = None
    if "job" in request.match_info:
        job = await request.app[VETJOBS].get(request.match_info["job"])
        if job is None:
            raise web.HTTPNotFound(text="hubgate: no such vet job (jobs are kept 7 days)")
    return _page(request, "vet.html", session, job=job)


async def vet_start(request: web.Request) -> web.Response:
    session = _signed_in(request)
    form = await _form(request, session)
    repo = form.get("repo", "").strip()
    try:
        if not REPO_ID_RE.match(repo):
            raise BadRequest(f"hubgate: {repo!r} is not a repo id (org/name)")
        job = await request.app[VETJOBS].start(
            repo,
            revision=form.get("revision", "").strip() or "main",
            include=form.get("include", "").split(),
            exclude=form.get("exclude", "").split(),
            repo_type=RepoType(form.get("repo_type") or "model"),
            by=str(session["n"]),
        )
    except (HubgateError, ValueError) as exc:
        raise _back("/admin/vet", error=getattr(exc, "message", str(exc))) from exc
    raise _back(f"/admin/vet/{job['id']}", flash=f"vetting {repo} (job {job['id']})")


def _fmt_time(ts: Any) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(ts))) + " UTC"
    except (TypeError, ValueError):
        return ""


async def _to_console(request: web.Request) -> web.Response:
    raise web.HTTPFound("/admin/")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _answers(handler: Handler) -> Handler:
    """Redirects and refusals are raised where they are decided; turn them into plain responses here (aiohttp
    deprecates returning HTTPException objects, which the shared middleware would otherwise do)."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            headers = {k: v for k, v in exc.headers.items() if k.lower() not in ("content-length", "content-type")}
            response = web.Response(status=exc.status, text=exc.text, headers=headers)
            for morsel in exc.cookies.values():
                response.cookies[morsel.key] = morsel
            return response

    return wrapper


def setup_console(app: web.Application) -> None:
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("proxy.web", "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["time"] = _fmt_time
    app.router.add_get("/admin", _answers(_to_console))
    app.router.add_get("/admin/", _answers(queue))
    app.router.add_get("/admin/login", _answers(login_page))
    app.router.add_post("/admin/login", _answers(login))
    app.router.add_post("/admin/logout", _answers(logout))
    app.router.add_get("/admin/artifacts/{id}", _answers(artifact))
    app.router.add_post("/admin/artifacts/{id}/{action:approve|reject|revoke|waive}", _answers(act))
    app.router.add_get("/admin/waivers", _answers(waivers_page))
    app.router.add_post("/admin/waivers", _answers(waiver_create))
    app.router.add_post("/admin/waivers/{id}/revoke", _answers(waiver_revoke))
    app.router.add_get("/admin/audit", _answers(audit_page))
    app.router.add_get("/admin/vet", _answers(vet_page))
    app.router.add_post("/admin/vet", _answers(vet_start))
    app.router.add_get("/admin/vet/{job}", _answers(vet_page))
