"""Hugging Face routes at the root, so `HF_ENDPOINT=http://hubgate:8080` is the whole client setup.

Metadata passes through (Xet removed, `Link` pagination pointed back at hubgate, remembered for offline use);
file bytes come only from the vetted cache.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from aiohttp import web
from multidict import MultiDict

from proxy.errors import HubgateError, NotInOfflineCache, Refused, UpstreamError
from proxy.hfmeta import offline_refusal
from proxy.hfpaths import ApiTarget, ResolveTarget, api_repo_path, parse_api, parse_resolve
from proxy.models import REPO_ID_RE, ArtifactRef, FileMeta, Verdict, VerdictStatus
from proxy.upstreams.hf import HfFileSource, status_error
from proxy.web.keys import META, PIPELINE, SETTINGS, UPSTREAM
from proxy.web.middleware import ascii_header
from proxy.web.responses import BlobResponse
from proxy.xet import split_link_header, strip_xet_json

AGENT_HARNESSES: dict[str, object] = {"standardEnvVars": [], "harnesses": {}}


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(value).encode(), content_type="application/json", headers=headers
    )


async def agent_harnesses(request: web.Request) -> web.Response:
    return json_response(AGENT_HARNESSES)


async def xet_refused(request: web.Request) -> web.Response:
    return json_response(
        {"error": "hubgate: Xet storage is not offered; files are served over plain HTTP after vetting"},
        status=404,
    )


# ---- /resolve ------------------------------------------------------------------------------------


async def resolve_file(request: web.Request) -> web.StreamResponse:
    target = parse_resolve(request.rel_url.raw_path)
    if target is None:
        raise web.HTTPNotFound(text="hubgate: no such route")
    meta, pipeline = request.app[META], request.app[PIPELINE]
    commit = await meta.resolve(target.repo_type, target.repo_id, target.revision)
    try:
        target = await _canonical(request, target, commit)
        verdict, file_meta, path = await _vetted_file(request, target, commit)
    except HubgateError as exc:
        exc.headers.setdefault("X-Repo-Commit", commit)  # every file answer names the commit, refusals too
        if isinstance(exc, Refused):
            pipeline.metrics.refusals.labels(type(exc).__name__.lower()).inc()
        raise
    pipeline.metrics.served_files.inc()
    headers = {"X-Repo-Commit": commit, "Accept-Ranges": "bytes"}
    if verdict.decided_by.startswith("waiver:"):
        headers["X-HF-Warning"] = ascii_header(
            f"hubgate; served under {verdict.decided_by.replace(':', ' ')}: {'; '.join(verdict.reasons)}"
            f" (artifact {verdict.artifact_id})"
        )
    elif verdict.status is not VerdictStatus.APPROVED:
        headers["X-HF-Warning"] = ascii_header(  # reasons quote names taken from the file (any character)
            f"hubgate; audit mode: {verdict.status.value} by policy but served: {'; '.join(verdict.reasons)}"
            f" (artifact {verdict.artifact_id})"
        )
    return BlobResponse(path, etag=file_meta.etag, headers=headers)


async def _canonical(request: web.Request, target: ResolveTarget, commit: str) -> ResolveTarget:
    """The file under the repo name the Hub gives it (its info's `id`). The Hub matches names case-insensitively
    and answers a renamed repo's old name, so `Acme/Model` and `acme/model` are one file there: they must be one
    artifact here, or an admin's reject of one would be bypassed by asking for another spelling."""
    info = await request.app[META].info(target.repo_type, target.repo_id, commit)
    canonical = info.get("id")
    if isinstance(canonical, str) and canonical != target.repo_id and REPO_ID_RE.fullmatch(canonical):
        return dataclasses.replace(target, repo_id=canonical)
    return target


async def _vetted_file(request: web.Request, target: ResolveTarget, commit: str) -> tuple[Verdict, FileMeta, Path]:
    settings, meta, pipeline = request.app[SETTINGS], request.app[META], request.app[PIPELINE]
    file_meta = await meta.file_meta(target.repo_type, target.repo_id, commit, target.path)
    repo = await meta.repo_meta(target.repo_type, target.repo_id, commit)
    ref = ArtifactRef(source="hf", repo_type=target.repo_type, repo_id=target.repo_id, commit=commit, path=target.path)
    upstream = request.app[UPSTREAM]
    source = (
        None
        if meta.offline or upstream is None
        else HfFileSource(
            upstream,
            target.repo_type,
            target.repo_id,
            commit,
            target.path,
            download_url=meta.recent_location(target.repo_type, target.repo_id, commit, target.path),
        )
    )
    verdict = await pipeline.vet(ref, file_meta, repo, source, hold=settings.hold_seconds)
    return verdict, file_meta, pipeline.blob_path(verdict)


# ---- /api ------------------------------------------------------------------------------------------


async def api(request: web.Request) -> web.StreamResponse:
    type_segment = request.match_info["type"]
    prefix = f"/api/{type_segment}/"
    raw = request.rel_url.raw_path
    target = parse_api(type_segment, raw[len(prefix) :])
    if target.action in ("xet-read-token", "xet-write-token"):
        return await xet_refused(request)
    if target.action in ("", "revision") and request.method == "GET":
        return await repo_info(request, target)
    if target.action == "tree" and request.method == "GET" and target.revision is not None:
        return await tree(request, target)
    if target.action == "paths-info" and request.method == "POST" and target.revision is not None:
        return await paths_info(request, target)
    if target.action == "refs" and request.method == "GET":
        return await refs(request, target)
    if request.method != "GET":
        raise web.HTTPMethodNotAllowed(request.method, ["GET"])
    return await passthrough(request)


async def repo_info(request: web.Request, target: ApiTarget) -> web.Response:
    meta = request.app[META]
    if meta.offline:
        commit = await meta.resolve(target.repo_type, target.repo_id, target.revision or "main")
        return json_response(await meta.info(target.repo_type, target.repo_id, commit))
    info = await meta.fetch_info(target.repo_type, target.repo_id, target.revision, request.rel_url.raw_query_string)
    return json_response(info)


def _tree_key(target: ApiTarget, commit: str, query: dict[str, str]) -> str:
    return ":".join(
        [
            target.repo_type.value,
            target.repo_id,
            commit,
            target.path,
            query.get("recursive", "false").lower(),
            query.get("cursor", ""),
        ]
    )


async def tree(request: web.Request, target: ApiTarget) -> web.Response:
    meta = request.app[META]
    assert target.revision is not None
    commit = await meta.resolve(target.repo_type, target.repo_id, target.revision)
    query = dict(request.rel_url.query)
    key = _tree_key(target, commit, query)
    page = await meta.store.get_doc("tree", key)
    if not isinstance(page, dict):
        if meta.offline:
            raise offline_refusal(f"the file listing of {target.repo_id}@{commit[:12]}", commit=commit)
        page = await _fetch_tree_page(request, target, commit)
        await meta.store.set_doc("tree", key, page)
        await _remember_entries(request, target, commit, page["items"])
    headers = {}
    if page.get("next"):
        base = str(request.url.origin())
        path = f"{api_repo_path(target.repo_type, target.repo_id)}/tree/{quote(target.revision, safe='')}"
        if target.path:
            path += "/" + quote(target.path, safe="")
        headers["Link"] = f'<{base}{path}?{page["next"]}>; rel="next"'
    return json_response(page["items"], headers=headers)


async def _fetch_tree_page(request: web.Request, target: ApiTarget, commit: str) -> dict[str, Any]:
    upstream = request.app[UPSTREAM]
    assert upstream is not None
    path = f"{api_repo_path(target.repo_type, target.repo_id)}/tree/{commit}"
    if target.path:
        path += "/" + quote(target.path, safe="")
    query = request.rel_url.raw_query_string
    answer = await upstream.request("GET", path + (f"?{query}" if query else ""))
    if answer.status != 200:
        raise status_error(answer.status, answer.headers, answer.body, f"{target.repo_id} tree")
    items = strip_xet_json(answer.json())
    if not isinstance(items, list):
        raise UpstreamError(f"hubgate: the upstream's tree listing for {target.repo_id} is not a list")
    next_query = None
    for url, rel in split_link_header(answer.headers.get("Link", "")):
        if rel == "next":
            next_query = urlsplit(url).query
    return {"items": items, "next": next_query}


async def _remember_entries(request: web.Request, target: ApiTarget, commit: str, items: list[Any]) -> None:
    """Tree entries double as paths-info answers when offline."""
    store = request.app[META].store
    for entry in items:
        if isinstance(entry, dict) and isinstance(entry.get("path"), str):
            await store.set_doc(
                "pathinfo", f"{target.repo_type.value}:{target.repo_id}:{commit}:{entry['path']}", entry
            )


async def paths_info(request: web.Request, target: ApiTarget) -> web.Response:
    meta = request.app[META]
    assert target.revision is not None
    commit = await meta.resolve(target.repo_type, target.repo_id, target.revision)
    form = await request.post()
    paths = [str(p) for p in form.getall("paths", [])]
    if meta.offline:
        found = []
        for p in paths:
            entry = await meta.store.get_doc("pathinfo", f"{target.repo_type.value}:{target.repo_id}:{commit}:{p}")
            if entry is not None:
                found.append(entry)
        return json_response(found)
    upstream = request.app[UPSTREAM]
    assert upstream is not None
    body = MultiDict([("paths", p) for p in paths] + [("expand", str(form.get("expand", "false")))])
    answer = await upstream.request(
        "POST",
        f"{api_repo_path(target.repo_type, target.repo_id)}/paths-info/{commit}",
        data=urlencode(list(body.items())),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    if answer.status != 200:
        raise status_error(answer.status, answer.headers, answer.body, f"{target.repo_id} paths-info")
    items = strip_xet_json(answer.json())
    if isinstance(items, list):
        await _remember_entries(request, target, commit, items)
    return json_response(items)


async def refs(request: web.Request, target: ApiTarget) -> web.Response:
    meta = request.app[META]
    key = f"{target.repo_type.value}:{target.repo_id}"
    if meta.offline:
        doc = await meta.store.get_doc("refs", key)
        if doc is None:
            raise offline_refusal(f"the refs of {target.repo_id}")
        return json_response(doc)
    upstream = request.app[UPSTREAM]
    assert upstream is not None
    query = request.rel_url.raw_query_string
    answer = await upstream.request(
        "GET", f"{api_repo_path(target.repo_type, target.repo_id)}/refs" + (f"?{query}" if query else "")
    )
    if answer.status != 200:
        raise status_error(answer.status, answer.headers, answer.body, f"{target.repo_id} refs")
    doc = strip_xet_json(answer.json())
    if not query:
        await meta.store.set_doc("refs", key, doc)
    return json_response(doc)


async def passthrough(request: web.Request) -> web.Response:
    """Other read-only API calls: metadata passes through with Xet removed; never offline."""
    meta, upstream = request.app[META], request.app[UPSTREAM]
    if meta.offline or upstream is None:
        raise NotInOfflineCache(f"hubgate (offline): {request.path} is not served offline")
    query = request.rel_url.raw_query_string
    answer = await upstream.request("GET", request.rel_url.raw_path + (f"?{query}" if query else ""))
    if answer.status != 200:
        raise status_error(answer.status, answer.headers, answer.body, request.path)
    try:
        return json_response(strip_xet_json(answer.json()))
    except ValueError as exc:
        raise UpstreamError(f"hubgate: the upstream's answer for {request.path} is not JSON") from exc


def setup_hf_routes(app: web.Application) -> None:
    app.router.add_get("/api/agent-harnesses", agent_harnesses)
    app.router.add_route("*", "/api/{type:models|datasets|spaces}/{rest:.+}", api)
    app.router.add_route("HEAD", "/{tail:.+}", resolve_file)
    app.router.add_get("/{tail:.+}", resolve_file, allow_head=False)
