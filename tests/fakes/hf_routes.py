"""The Hub origin's HTTP handlers for `FakeHub` (tests/fakes/hf_hub.py): /resolve, /api/resolve-cache, /api.

A mixin: `FakeHub` owns the state (repos, tokens, faults, log, CDN) and inherits these handlers. Requests
are routed by one catch-all route and parsed from the *raw* path, split on `/` before percent-decoding, so
`refs%2Fpr%2F1` stays one segment as on the Hub (shared/protocol/hf.md §1.1). A repo renamed with
`FakeHub.rename` answers `307` to its new name, relative, for /resolve and /api alike (hf.md §1.3).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote, urlencode

from aiohttp import web

from tests.fakes import hf_api
from tests.fakes.hf_cdn import FakeCdn
from tests.fakes.hf_faults import CUT, Fault, before_answer
from tests.fakes.hf_http import LOG, LoggedRequest, bearer, content_type, hub_error, serve_content
from tests.fakes.hf_repos import Repo, RepoFile

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_API_ACTIONS = frozenset({"revision", "tree", "paths-info", "refs", "xet-read-token", "resolve"})


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def _decoded_segments(raw_path: str) -> list[str]:
    # Split the raw path first, then decode: `%2F` inside a segment stays inside it (hf.md §1.1).
    return [unquote(s) for s in raw_path.split("?", 1)[0].split("/")[1:]]


class HubRoutes:
    """Handlers of the Hub origin; the attributes below are `FakeHub`'s state."""

    page_size: int
    xet: bool
    missing_repo_status: int
    tokens: dict[str, bool]
    repos: dict[tuple[str, str], Repo]
    renamed: dict[tuple[str, str], str]
    faults: list[Fault]
    log: list[LoggedRequest]
    cdn: FakeCdn

    @property
    def url(self) -> str:
        raise NotImplementedError  # FakeHub's

    @property
    def cdn_url(self) -> str:
        raise NotImplementedError  # FakeHub's

    # -- plumbing -------------------------------------------------------------------------------------------
    def _middleware(self, origin: str) -> Any:
        @web.middleware
        async def log_requests(request: web.Request, handler: Any) -> web.StreamResponse:
            entry = LoggedRequest.of(origin, request)
            request[LOG] = entry
            self.log.append(entry)  # appended first, so in-flight requests are counted too
            try:
                response: web.StreamResponse = await handler(request)
                entry.status = response.status
                entry.cut = bool(request.get(CUT))
                entry.response_headers = {k.lower(): v for k, v in response.headers.items()}
                return response
            except web.HTTPException as exc:
                entry.status = exc.status
                raise

        return log_requests

    @staticmethod
    async def _stamp(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.setdefault("X-Request-Id", f"Root=1-{int(time.time()):x}-{secrets.token_hex(12)}")

    def _fault(self, origin: str, request: web.Request, *, body: bool) -> Fault | None:
        """The first armed fault for this request; answers without a body only take delay/status faults."""
        entry: LoggedRequest = request[LOG]
        subject = f"{request.path} {entry.repo_id}/{entry.file}" if entry.file else request.path
        for fault in list(self.faults):
            if not body and fault.status is None and not fault.delay:
                continue
            if fault.take(origin, request.method, subject):
                entry.extra["fault"] = fault
                return fault
        return None

    def _access(self, request: web.Request, repo: Repo | None, *, content: bool) -> web.Response | None:
        """None if allowed, else the Hub's answer: invalid token, missing/private repo, gated content."""
        token = bearer(request)
        if token is not None and token not in self.tokens:
            return hub_error(401, "Invalid credentials in Authorization header")
        if repo is None:
            return hub_error(self.missing_repo_status, "Repository not found", code="RepoNotFound")
        if repo.private and token is None:
            return hub_error(401, "Repository not found", code="RepoNotFound")
        if content and repo.gated and not repo.private:
            what = f"{repo.repo_type} {repo.repo_id}"
            if token is None:
                msg = (
                    f"Access to {what} is restricted. You must have access to it and be authenticated "
                    "to access it. Please log in."
                )
                return hub_error(401, msg, code="GatedRepo")
            if not self.tokens[token]:
                msg = (
                    f"Access to {what} is restricted and you are not in the authorized list. "
                    f"Visit https://huggingface.co/{URL_PREFIX[repo.repo_type]}{repo.repo_id} "
                    "to ask for access."
                )
                return hub_error(403, msg, code="GatedRepo")
        return None

    def _split_repo(self, repo_type: str, segs: list[str]) -> tuple[str, list[str]]:
        """Repo ids have one or two segments (`gpt2`, `acme/model`): known repos first, then the layout."""
        if len(segs) >= 2 and (repo_type, f"{segs[0]}/{segs[1]}") in self.repos:
            return f"{segs[0]}/{segs[1]}", segs[2:]
        if segs and (repo_type, segs[0]) in self.repos:
            return segs[0], segs[1:]
        if len(segs) >= 2 and segs[1] not in _API_ACTIONS:
            return f"{segs[0]}/{segs[1]}", segs[2:]
        return (segs[0] if segs else ""), segs[1:]

    def _moved(self, request: web.Request, repo_type: str, repo_id: str, prefix: str) -> web.Response | None:
        """`307` to the new name of a renamed repo: same path and query, relative Location."""
        new_id = self.renamed.get((repo_type, repo_id))
        if new_id is None or (repo_type, repo_id) in self.repos:
            return None
        location = request.raw_path.replace(f"{prefix}{repo_id}/", f"{prefix}{new_id}/", 1)
        if request.raw_path.split("?", 1)[0] == f"{prefix}{repo_id}":  # /api/models/{old} exactly
            location = request.raw_path.replace(f"{prefix}{repo_id}", f"{prefix}{new_id}", 1)
        return web.Response(
            status=307, text=f"Temporary Redirect. Redirecting to {location}", headers={"Location": location}
        )

    def _locate(self, request: web.Request, repo_type: str, repo_id: str) -> Repo | None:
        request[LOG].repo_id = repo_id
        return self.repos.get((repo_type, repo_id))

    def _resolve_rev(self, repo: Repo, rev: str) -> tuple[str | None, web.Response | None]:
        sha = repo.resolve(rev)
        if sha is None:
            return None, hub_error(404, f"Invalid rev id: {rev}", code="RevisionNotFound")
        return sha, None

    # -- the Hub origin ------------------------------------------------------------------------------------
    async def _hub(self, request: web.Request) -> web.StreamResponse:
        segs = _decoded_segments(request.raw_path)
        if segs[0] == "api" and segs[1:2] != ["resolve-cache"]:
            # Metadata answers take delay/status faults too (file answers apply theirs themselves).
            early = await before_answer(self._fault("hub", request, body=False))
            if early is not None:
                return early
        if segs[:2] == ["api", "agent-harnesses"]:
            return web.json_response({"standardEnvVars": [], "harnesses": {}})
        if segs[:2] == ["api", "resolve-cache"] and len(segs) > 2 and segs[2] in REPO_TYPES:
            return await self._resolve_cache(request, REPO_TYPES[segs[2]], segs[3:])
        if segs[0] == "api" and len(segs) > 2 and segs[1] in REPO_TYPES:
            return await self._api(request, REPO_TYPES[segs[1]], segs[2:])
        repo_type = "model"
        if segs[0] in ("datasets", "spaces"):
            repo_type, segs = REPO_TYPES[segs[0]], segs[1:]
        repo_id, rest = self._split_repo(repo_type, segs)
        if (moved := self._moved(request, repo_type, repo_id, f"/{URL_PREFIX[repo_type]}")) is not None:
            return moved
        if len(rest) >= 3 and rest[0] == "resolve" and request.method in ("GET", "HEAD"):
            return await self._resolve(request, repo_type, repo_id, rest[1], "/".join(rest[2:]))
        return web.Response(status=404, text="Not Found")

    async def _resolve(
        self, request: web.Request, repo_type: str, repo_id: str, rev: str, path: str
    ) -> web.StreamResponse:
        repo = self._locate(request, repo_type, repo_id)
        denied = self._access(request, repo, content=True)
        if denied is not None or repo is None:
            return denied or web.Response(status=500)
        sha, bad_rev = self._resolve_rev(repo, rev)
        if bad_rev is not None or sha is None:
            return bad_rev or web.Response(status=500)
        f = repo.commits[sha].files.get(path)
        if f is None:
            return hub_error(404, "Entry not found", code="EntryNotFound", commit=sha)
        request[LOG].file = path
        common = {"X-Repo-Commit": sha, "Vary": "Origin, Accept", "Access-Control-Expose-Headers": "*"}
        if f.is_lfs:
            fault = self._fault("hub", request, body=False)
            if (early := await before_answer(fault)) is not None:
                return early
            location = self.cdn.location(repo, f)
            headers = {
                **common,
                "Location": location,
                "ETag": f'"{f.oid}"',
                "X-Linked-Etag": f'"{f.sha256}"',
                "X-Linked-Size": str(f.size),
            }
            if self.xet:
                headers.update(self._xet_headers(repo, sha, f))
            return web.Response(status=302, text=f"Found. Redirecting to {location}", headers=headers)
        if repo.private or repo.gated:
            fault = self._fault("hub", request, body=True)
            if (early := await before_answer(fault)) is not None:
                return early
            return await self._serve_small(request, sha, f, fault, common)
        fault = self._fault("hub", request, body=False)
        if (early := await before_answer(fault)) is not None:
            return early
        origin_path = f"/{URL_PREFIX[repo_type]}{repo_id}/resolve/{quote(rev, safe='')}/{quote(path)}"
        query = urlencode({origin_path: "", "etag": f'"{f.oid}"'})
        location = f"/api/resolve-cache/{repo_type}s/{repo_id}/{sha}/{quote(path)}?{query}"
        return web.Response(
            status=307,
            text=f"Temporary Redirect. Redirecting to {location}",
            headers={**common, "Location": location},
        )

    async def _resolve_cache(self, request: web.Request, repo_type: str, segs: list[str]) -> web.StreamResponse:
        # /api/resolve-cache/{type}s/{repo}/{commit}/{path}: the commit is the first 40-hex segment.
        at = next((i for i in (1, 2) if i < len(segs) and len(segs[i]) == 40), None)
        if at is None or at + 1 >= len(segs):
            return web.Response(status=404, text="Not Found")
        repo = self._locate(request, repo_type, "/".join(segs[:at]))
        sha, path = segs[at], "/".join(segs[at + 1 :])
        if repo is not None and (repo.private or repo.gated):
            # The Hub only sends public files here; a crafted URL must not bypass the gate.
            denied = self._access(request, repo, content=True)
            if denied is not None:
                return denied
        if repo is None or sha not in repo.commits or path not in repo.commits[sha].files:
            return hub_error(404, "Entry not found", code="EntryNotFound")
        request[LOG].file = path
        fault = self._fault("hub", request, body=True)
        if (early := await before_answer(fault)) is not None:
            return early
        return await self._serve_small(request, sha, repo.commits[sha].files[path], fault, {"X-Repo-Commit": sha})

    async def _serve_small(
        self, request: web.Request, sha: str, f: RepoFile, fault: Fault | None, headers: Mapping[str, str]
    ) -> web.StreamResponse:
        out = {
            **headers,
            "X-Repo-Commit": sha,
            "ETag": f'"{f.oid}"',
            "Content-Type": content_type(f.path, f.content),
        }
        return await serve_content(request, f.content, out, fault, gzip_text=True, path=f.path)

    def _xet_headers(self, repo: Repo, sha: str, f: RepoFile) -> dict[str, str]:
        token_url = f"{self.url}/api/{repo.repo_type}s/{repo.repo_id}/xet-read-token/{sha}"
        return {
            "X-Xet-Hash": f.xet_hash,
            "X-Xet-Refresh-Route": token_url,
            "Link": (
                f'<{token_url}>; rel="xet-auth", '
                f'<{self.cdn_url}/xet-cas/v1/reconstructions/{f.xet_hash}>; rel="xet-reconstruction-info"'
            ),
        }

    # -- /api -----------------------------------------------------------------------------------------------
    async def _api(self, request: web.Request, repo_type: str, segs: list[str]) -> web.StreamResponse:
        repo_id, rest = self._split_repo(repo_type, segs)
        if (moved := self._moved(request, repo_type, repo_id, f"/api/{repo_type}s/")) is not None:
            return moved
        repo = self._locate(request, repo_type, repo_id)
        action = rest[0] if rest else "revision"
        if action == "xet-read-token" and len(rest) >= 2:
            return self._xet_read_token(request, repo, rest[1])
        denied = self._access(request, repo, content=False)
        if denied is not None or repo is None:
            return denied or web.Response(status=500)
        q = request.query
        if action == "revision" and request.method in ("GET", "HEAD"):
            sha, bad = self._resolve_rev(repo, "/".join(rest[1:]) or "main")
            if bad is not None or sha is None:
                return bad or web.Response(status=500)
            expand = q.getall("expand", []) or None
            return self._json(request, hf_api.repo_info(repo, sha, blobs=_truthy(q.get("blobs")), expand=expand))
        if action == "tree" and len(rest) >= 2 and request.method == "GET":
            sha, bad = self._resolve_rev(repo, rest[1])
            if bad is not None or sha is None:
                return bad or web.Response(status=500)
            path = "/".join(rest[2:]).strip("/")
            entries = hf_api.tree(
                repo,
                sha,
                path,
                recursive=_truthy(q.get("recursive")),
                expand=_truthy(q.get("expand")),
                xet=self.xet,
            )
            if entries is None:
                return hub_error(404, f'"{path}" does not exist on "{rest[1]}"', code="EntryNotFound", commit=sha)
            return self._page(request, entries)
        if action == "paths-info" and len(rest) >= 2 and request.method == "POST":
            sha, bad = self._resolve_rev(repo, rest[1])
            if bad is not None or sha is None:
                return bad or web.Response(status=500)
            if request.content_type == "application/json":
                body = await request.json()
                paths, expand_flag = list(body.get("paths", [])), bool(body.get("expand"))
            else:
                form = await request.post()
                paths = [str(p) for p in form.getall("paths", [])]
                expand_flag = _truthy(str(form.get("expand", "")))
            return self._json(request, hf_api.paths_info(repo, sha, paths, expand=expand_flag, xet=self.xet))
        if action == "refs" and request.method == "GET":
            return self._json(request, hf_api.refs(repo, include_prs=_truthy(q.get("include_prs"))))
        return hub_error(404, "Sorry, we can't find the page you are looking for.")

    def _xet_read_token(self, request: web.Request, repo: Repo | None, rev: str) -> web.Response:
        denied = self._access(request, repo, content=True)
        if denied is not None or repo is None:
            return denied or web.Response(status=500)
        exp = int(time.time()) + 3600
        cas = f"{self.cdn_url}/xet-cas"
        token = "xet_" + secrets.token_hex(8)
        headers = {"X-Xet-Cas-Url": cas, "X-Xet-Access-Token": token, "X-Xet-Token-Expiration": str(exp)}
        return web.json_response({"casUrl": cas, "accessToken": token, "exp": exp}, headers=headers)

    def _json(self, request: web.Request, data: Any, headers: Mapping[str, str] | None = None) -> web.Response:
        response = web.json_response(data, headers=headers)
        if "gzip" in request.headers.get("Accept-Encoding", "") and len(response.body or b"") > 1024:  # type: ignore[arg-type]
            response.enable_compression()  # the Hub compresses API answers; clients must cope
        return response

    def _page(self, request: web.Request, entries: list[dict[str, Any]]) -> web.Response:
        cursor = request.query.get("cursor")
        offset = json.loads(base64.urlsafe_b64decode(cursor))["offset"] if cursor else 0
        page = entries[offset : offset + self.page_size]
        headers = {}
        if offset + self.page_size < len(entries):
            nxt = base64.urlsafe_b64encode(json.dumps({"offset": offset + self.page_size}).encode()).decode()
            query = [(k, v) for k, v in request.query.items() if k != "cursor"] + [("cursor", nxt)]
            raw = request.raw_path.split("?", 1)[0]
            headers["Link"] = f'<{self.url}{raw}?{urlencode(query)}>; rel="next"'
        return self._json(request, page, headers)
