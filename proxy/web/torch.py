"""PyTorch routes under /torch/: vetted weights, and the GitHub surface torch.hub.load needs (for the shim).

    GET|HEAD /torch/models/<path>                               weights from HUBGATE_TORCH_UPSTREAM/models/<path>
    GET      /torch/github-api/repos/{o}/{r}/branches|tags      listing pages, passed through (never a denial)
    GET|HEAD /torch/github/{o}/{r}/zipball/{ref}                the archive of the commit `ref` pins to, if approved
    GET|HEAD /torch/codeload/{o}/{r}/legacy.zip/{ref}           the same (for clients that follow GitHub's 302)
    GET      /torch/github/{o}/{r}/tree/{branch}/               upstream status (torch probes main vs master)
    GET      /torch/api/hub/{o}/{r}/{commit}                    admin: the static report on that archive

Refusals are denied where torch shows them: a 403 whose *reason phrase* carries hubgate's short message,
because urllib's HTTPError prints `HTTP Error 403: <reason>` (protocol/torch.md W6). The GitHub API is never
where a repo is denied: an API error without GITHUB_TOKEN turns into torch's `KeyError: 'Authorization'`
(A9). torch has no retry and no timeout on these downloads, so the routes wait for the verdict instead of
answering 429. Every 200 carries the verdict's full sha256, artifact id and (hub) commit for `hubgate
torch-mirror`.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from proxy.errors import HubgateError, Refused, Unauthorized
from proxy.hubrepo import report_archive, summary
from proxy.models import Verdict, VerdictStatus
from proxy.upstreams.github import (
    SHA_RE,
    GitHub,
    archive_meta,
    archive_ref,
    archive_repo_meta,
    validate_ref,
    validate_repo,
)
from proxy.upstreams.torch import (
    HttpSource,
    parse_weight_path,
    weight_meta,
    weight_ref,
    weight_repo_meta,
    weight_url,
)
from proxy.web.keys import BLOBS, PIPELINE, SESSION, SETTINGS, STORE
from proxy.web.middleware import ascii_header, error_response
from proxy.web.responses import BlobResponse

log = logging.getLogger("hubgate.torch")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
GITHUB_REVISIONS = "github"  # repo_type under which ref -> commit resolutions are cached
REPORT_DOC = "hubrepo-report"
UNCHECKED_DOC = "torch-unchecked-name"  # audit event and marker: a weight name torch's check_hash ignores
H_REASON = "X-Hubgate-Reason"  # the short form, also used as the status line's reason phrase
_SHORT_RE = re.compile(r"^(.*?\(artifact [0-9a-f]+\))")
_BRACKETS_RE = re.compile(r"\s*\[[^\]]*\]")
_RULE_RE = re.compile(r"\s*\(rule [^)]*\)")
_FIRST_REASON_LIMIT = 160
REASON_LIMIT = 300


@dataclass
class TorchState:
    """Per-app state for the torch routes, created before the app freezes and filled at first use."""

    github: GitHub | None = None
    report_tasks: set[asyncio.Task[None]] = field(default_factory=set)


TORCH = web.AppKey("torch", TorchState)


def reason_phrase(message: str) -> str:
    """The short ASCII status-line reason torch users see: the decision and the artifact, not the advice."""
    match = _SHORT_RE.match(message)
    short = match.group(1) if match else message
    short = short.removeprefix("hubgate: ")
    return ascii_header(f"hubgate {short}", REASON_LIMIT)


def _clean_reason(reason: str, path: str) -> str:
    """One verdict reason without the file path, engine locations and rule tags (they are in the body)."""
    reason = reason.removeprefix(f"{path}: ")
    reason = _BRACKETS_RE.sub("", reason)
    reason = _RULE_RE.sub("", reason)
    return " ".join(reason.split()).strip(" ;,")


def verdict_reason(verdict: Verdict) -> str:
    """`hubgate blocked: <first reason> (+N more) (artifact <id>)`, short enough for a status line."""
    status = verdict.status.value
    if verdict.status is VerdictStatus.REJECTED:
        first = f"by {verdict.admin_by or 'an admin'}: {verdict.admin_reason}"
        more = 0
    else:
        reasons = [_clean_reason(r, verdict.path) for r in verdict.reasons] or ["no reason recorded"]
        first, more = reasons[0], len(reasons) - 1
    if len(first) > _FIRST_REASON_LIMIT:
        first = first[: _FIRST_REASON_LIMIT - 3].rstrip() + "..."
    extra = f" (+{more} more)" if more else ""
    return ascii_header(f"hubgate {status}: {first}{extra} (artifact {verdict.artifact_id})", REASON_LIMIT)


def torch_errors(handler: Handler) -> Handler:
    """Map the error tree as the middleware does, and put the message in the reason phrase as well."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except HubgateError as exc:
            response = error_response(exc)
            if isinstance(exc, Refused) or exc.status in (400, 404, 502, 503):
                response.set_status(exc.status, exc.headers.get(H_REASON) or reason_phrase(exc.message))
            if isinstance(exc, Refused) and exc.artifact_id:
                response.headers["X-Hubgate-Artifact"] = exc.artifact_id
            return response

    return wrapped


def _github(app: web.Application) -> GitHub:
    state = app[TORCH]
    if state.github is None:
        settings = app[SETTINGS]
        state.github = GitHub(app[SESSION], web=settings.github_upstream, api=settings.github_api_upstream)
    return state.github


def _serve(request: web.Request, verdict: Verdict, extra: dict[str, str]) -> web.StreamResponse:
    path = request.app[PIPELINE].blob_path(verdict)  # raises the standard refusal unless servable
    headers = {
        "X-Hubgate-Sha256": verdict.sha256,
        "X-Hubgate-Artifact": verdict.artifact_id,
        "X-Hubgate-Status": verdict.status.value,
        **extra,
    }
    if verdict.status is not VerdictStatus.APPROVED:
        headers["X-Hubgate-Warning"] = ascii_header(
            f"audit mode: {verdict.status.value} by policy but served: {'; '.join(verdict.reasons)}"
        )
    return BlobResponse(path, etag=verdict.sha256, headers=headers)


def _refuse(request: web.Request, verdict: Verdict) -> Refused:
    exc = request.app[PIPELINE].refusal(verdict)
    exc.headers["X-Hubgate-Status"] = verdict.status.value
    exc.headers[H_REASON] = verdict_reason(verdict)
    return exc


# ---- weights -------------------------------------------------------------------------------------


@torch_errors
async def model(request: web.Request) -> web.StreamResponse:
    name = parse_weight_path(request.match_info["path"])
    settings, pipeline = request.app[SETTINGS], request.app[PIPELINE]
    source = (
        None
        if settings.offline
        else HttpSource(
            request.app[SESSION], weight_url(settings.torch_upstream, name), what=f"torch weights {name.path}"
        )
    )
    verdict = await pipeline.vet(weight_ref(name), weight_meta(name), weight_repo_meta(), source, hold=None)
    extra: dict[str, str] = {}
    if name.warning:
        extra["X-Hubgate-Warning"] = ascii_header(name.warning)
        await _flag_unchecked(request.app, verdict, name.warning)
    try:
        return _serve(request, verdict, extra)
    except Refused:
        raise _refuse(request, verdict) from None


async def _flag_unchecked(app: web.Application, verdict: Verdict, warning: str) -> None:
    """Record once per artifact (audit trail + log) that torch will not verify this file's name hash."""
    store = app[STORE]
    if await store.get_doc(UNCHECKED_DOC, verdict.artifact_id) is not None:
        return
    await store.set_doc(UNCHECKED_DOC, verdict.artifact_id, {"path": verdict.path, "sha256": verdict.sha256})
    await store.append_audit(UNCHECKED_DOC, "hubgate", artifact_id=verdict.artifact_id, detail=warning)
    log.warning("torch weights %s (artifact %s): %s", verdict.path, verdict.artifact_id, warning)


# ---- GitHub --------------------------------------------------------------------------------------


async def _pin(request: web.Request, owner: str, repo: str, ref: str) -> str:
    """ref -> commit: a full sha pins itself; names are resolved like torch does, cached for revision_ttl."""
    validate_repo(owner, repo)
    validate_ref(ref)
    if SHA_RE.match(ref):
        return ref
    settings, store = request.app[SETTINGS], request.app[STORE]
    repo_id = f"{owner}/{repo}"
    if settings.offline:
        cached = await store.get_revision_offline(GITHUB_REVISIONS, repo_id, ref)
    else:
        cached = await store.get_revision(GITHUB_REVISIONS, repo_id, ref)
    if cached:
        return cached
    if settings.offline:
        from proxy.errors import NotInOfflineCache

        raise NotInOfflineCache(f"hubgate: offline, and {repo_id}:{ref} was never resolved to a commit")
    commit = await _github(request.app).resolve(owner, repo, ref)
    await store.set_revision(GITHUB_REVISIONS, repo_id, ref, commit, settings.revision_ttl)
    return commit


@torch_errors
async def zipball(request: web.Request) -> web.StreamResponse:
    owner, repo = request.match_info["owner"], request.match_info["repo"]
    ref = request.match_info["ref"].removeprefix("refs/heads/").removeprefix("refs/tags/")
    commit = await _pin(request, owner, repo, ref)
    settings, pipeline = request.app[SETTINGS], request.app[PIPELINE]
    source = None if settings.offline else _github(request.app).archive(owner, repo, commit)
    artifact = archive_ref(owner, repo, commit)
    verdict = await pipeline.vet(artifact, archive_meta(), archive_repo_meta(owner, repo, commit), source, hold=None)
    _schedule_report(request.app, verdict)
    extra = {"X-Hubgate-Commit": commit, "Content-Type": "application/zip"}
    try:
        return _serve(request, verdict, extra)
    except Refused:
        exc = _refuse(request, verdict)
        exc.headers["X-Hubgate-Commit"] = commit
        raise exc from None


@torch_errors
async def listing(request: web.Request) -> web.Response:
    owner, repo, kind = request.match_info["owner"], request.match_info["repo"], request.match_info["kind"]
    try:
        page = max(1, int(request.query.get("page", "1")))
        per_page = min(100, max(1, int(request.query.get("per_page", "30"))))
    except ValueError:
        raise web.HTTPBadRequest(text="page and per_page must be integers") from None
    items = await _github(request.app).list_page(owner, repo, kind, page, per_page)
    # Only what torch reads; everything else (URLs to github.com) would lead clients around hubgate.
    slim = [
        {"name": item.get("name"), "commit": {"sha": (item.get("commit") or {}).get("sha")}}
        for item in items
        if isinstance(item, dict)
    ]
    return web.json_response(slim)


@torch_errors
async def tree(request: web.Request) -> web.Response:
    owner, repo, branch = request.match_info["owner"], request.match_info["repo"], request.match_info["branch"]
    status = await _github(request.app).tree_status(owner, repo, branch)
    if status == 200:
        return web.Response(text=f"{owner}/{repo} has a branch {branch}\n")
    if status == 404:
        return web.Response(status=404, text=f"{owner}/{repo} has no branch {branch}\n")
    return web.Response(status=502, reason="hubgate: GitHub answered " + str(status))


# ---- the static report ---------------------------------------------------------------------------


def _schedule_report(app: web.Application, verdict: Verdict) -> None:
    """Compute the archive's report once, in the background, while its bytes are still held."""
    if not verdict.sha256:
        return
    state = app[TORCH]
    task = asyncio.create_task(_ensure_report(app, verdict))
    state.report_tasks.add(task)
    task.add_done_callback(state.report_tasks.discard)


async def _ensure_report(app: web.Application, verdict: Verdict) -> None:
    store = app[STORE]
    try:
        if await store.get_doc(REPORT_DOC, verdict.artifact_id) is not None:
            return
        await _compute_report(app, verdict)
    except Exception:  # a report is advice for the admin; its failure must not touch the request
        log.exception("hub repo report for %s failed", verdict.artifact_id)


async def _compute_report(app: web.Application, verdict: Verdict) -> dict[str, object] | None:
    blobs = app[BLOBS]
    path = blobs.quarantine_path(verdict.sha256) or blobs.blob_path(verdict.sha256)
    if path is None:
        return None
    report = await asyncio.to_thread(report_archive, path)
    doc: dict[str, object] = {
        "artifact_id": verdict.artifact_id,
        "repo_id": verdict.repo_id,
        "commit": verdict.commit,
        "sha256": verdict.sha256,
        "summary": summary(report),
        "report": report.model_dump(mode="json"),
    }
    await app[STORE].set_doc(REPORT_DOC, verdict.artifact_id, doc)
    await app[STORE].append_audit("hubrepo-report", "hubgate", artifact_id=verdict.artifact_id, detail=summary(report))
    log.info("hub repo %s@%s: %s", verdict.repo_id, verdict.commit[:12], summary(report))
    return doc


def _require_admin(request: web.Request) -> None:
    token = request.app[SETTINGS].admin_token
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if token is None or not given or not hmac.compare_digest(given, token.get_secret_value()):
        raise Unauthorized("hubgate: admin API needs Authorization: Bearer <HUBGATE_ADMIN_TOKEN>")


async def hub_report(request: web.Request) -> web.Response:
    _require_admin(request)
    owner, repo, commit = request.match_info["owner"], request.match_info["repo"], request.match_info["commit"]
    validate_repo(owner, repo)
    if not SHA_RE.match(commit):
        raise web.HTTPBadRequest(text="commit must be a full sha")
    artifact = archive_ref(owner, repo, commit)
    doc = await request.app[STORE].get_doc(REPORT_DOC, artifact.artifact_id)
    if doc is None:
        verdict = await request.app[STORE].get_verdict(artifact.artifact_id)
        doc = await _compute_report(request.app, verdict) if verdict is not None and verdict.sha256 else None
    if doc is None:
        raise web.HTTPNotFound(text=f"no archive of {owner}/{repo}@{commit} has been fetched")
    return web.json_response(doc)


async def _drain_reports(app: web.Application) -> None:
    tasks = list(app[TORCH].report_tasks)
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


def setup_torch_routes(app: web.Application) -> None:
    app[TORCH] = TorchState()
    app.on_shutdown.append(_drain_reports)
    r = app.router
    r.add_get("/torch/models/{path:.+}", model)  # allow_head: HEAD answers from the verdict, no body
    r.add_get("/torch/github-api/repos/{owner}/{repo}/{kind:branches|tags}", listing, allow_head=False)
    r.add_get("/torch/github/{owner}/{repo}/zipball/{ref:.+}", zipball)
    r.add_get("/torch/codeload/{owner}/{repo}/legacy.zip/{ref:.+}", zipball)
    r.add_get("/torch/github/{owner}/{repo}/tree/{branch}/", tree, allow_head=False)
    r.add_get("/torch/api/hub/{owner}/{repo}/{commit}", hub_report, allow_head=False)
