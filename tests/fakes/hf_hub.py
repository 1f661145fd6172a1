"""A faithful fake Hugging Face Hub: two real aiohttp origins on 127.0.0.1 (the Hub and its "CDN").

It imitates what the real Hub does for huggingface_hub 2.4 / transformers 5.x (shared/protocol/hf.md):

- `HEAD/GET /{datasets/|spaces/}{repo}/resolve/{rev}/{path}`: rev = branch, tag, short/full commit or a
  percent-encoded `refs/...`; small public files → `307` relative Location `/api/resolve-cache/...` whose
  target answers `200` with `X-Repo-Commit`, `ETag: "<git sha1>"`, `Content-Length` (gzip, chunked, for text
  > 1 KB when accepted); private/gated small files → `200` at `/resolve`; LFS files → `302` to the CDN origin
  (signed, expiring URL) with `X-Repo-Commit`, `X-Linked-Etag: "<sha256>"`, `X-Linked-Size`, `ETag`
  (pointer oid). The CDN refuses `Authorization` (400, like S3) and expired/forged signatures (403).
- `/api/{models,datasets,spaces}/{repo}[/revision/{rev}]`, `/tree/{rev}[/{path}]` (absolute `Link` next
  pagination, `page_size`), `POST /paths-info/{rev}`, `/refs`, `/xet-read-token/{rev}`,
  `/api/agent-harnesses`.
- Errors as on the Hub: `X-Error-Code` RepoNotFound (404; 401 for private repos without a token),
  RevisionNotFound, EntryNotFound (+ `X-Repo-Commit`), GatedRepo (401 without token, 403 with a token
  lacking access) on content only — `/api` info and tree of gated repos are public. `X-Request-Id` always.
- `hub.xet = True`: Xet headers and `xetHash` keys on LFS files; a "xet CAS" under `{cdn_url}/xet-cas/`
  that only records accesses (`hub.xet_accesses()`), so tests can assert nobody used Xet storage.
- Faults (`add_fault`), a request log (`requests`, `count`, `reset_log`).

Use `async with FakeHub() as hub:` in async tests, or `with FakeHubThread() as hub:` from sync code.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote, unquote, urlencode

from aiohttp import web

from tests.fakes import hf_api
from tests.fakes.hf_cdn import FakeCdn
from tests.fakes.hf_faults import CUT, Fault, before_answer
from tests.fakes.hf_http import LOG, LoggedRequest, bearer, content_type, hub_error, serve_content
from tests.fakes.hf_repos import LFS_THRESHOLD, Repo, RepoFile, default_gitattributes

VALID_TOKEN = "hf_fake_authorized_token"  # a user with access to every gated and private repo
NO_ACCESS_TOKEN = "hf_fake_unauthorized_token"  # a valid user who was not granted gated access
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_API_ACTIONS = frozenset({"revision", "tree", "paths-info", "refs", "xet-read-token", "resolve"})


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def _decoded_segments(raw_path: str) -> list[str]:
    # Split the raw path first, then decode: `%2F` inside a segment stays inside it (hf.md §1.1).
    return [unquote(s) for s in raw_path.split("?", 1)[0].split("/")[1:]]


class FakeHub:
    """The fake Hub. Build repos with `add_repo`/`commit`, then `await start()`; see the module doc."""

    def __init__(self, *, page_size: int = 50, host: str = "127.0.0.1") -> None:
        self.page_size = page_size
        self.host = host
        self.xet = False
        self.missing_repo_status = 404
        self.tokens: dict[str, bool] = {VALID_TOKEN: True, NO_ACCESS_TOKEN: False}  # token → gated access
        self.repos: dict[tuple[str, str], Repo] = {}
        self.faults: list[Fault] = []
        self.log: list[LoggedRequest] = []
        self.cdn = FakeCdn()
        self._runners: list[web.AppRunner] = []
        self._ports: dict[str, int] = {}

    # -- building repos -----------------------------------------------------------------------------------
    def add_repo(
        self,
        repo_id: str,
        *,
        repo_type: str = "model",
        files: Mapping[str, bytes | str] | None = None,
        branch: str = "main",
        tags: Mapping[str, str] | None = None,
        card: str | None = None,
        gated: bool | str = False,
        private: bool = False,
        lfs_threshold: int = LFS_THRESHOLD,
        gitattributes: bool = True,
        extra_commits: Sequence[Mapping[str, bytes | str | None]] = (),
        hub_tags: Sequence[str] = (),
        message: str = "initial commit",
    ) -> list[str]:
        """Create a repo; returns the shas of its first commit and of each of `extra_commits`.

        `card` becomes README.md; `tags` maps git tag names to a revision (branch, sha) resolved after all
        commits; `gitattributes` adds the Hub's default `.gitattributes` unless `files` has one.
        """
        repo = Repo(
            repo_type,
            repo_id,
            private=private,
            gated="manual" if gated is True else gated,
            lfs_threshold=lfs_threshold,
            extra_tags=list(hub_tags),
        )
        self.repos[repo.key] = repo
        first: dict[str, bytes | str | None] = dict(files or {})
        if gitattributes and ".gitattributes" not in first:
            first[".gitattributes"] = default_gitattributes()
        if card is not None:
            first["README.md"] = card
        shas = [self.commit(repo_id, first, branch=branch, repo_type=repo_type, message=message)]
        for i, changes in enumerate(extra_commits, 1):
            shas.append(self.commit(repo_id, changes, branch=branch, repo_type=repo_type, message=f"update {i}"))
        for name, revision in (tags or {}).items():
            self.tag(repo_id, name, revision, repo_type=repo_type)
        return shas

    def commit(
        self,
        repo_id: str,
        files_changed: Mapping[str, bytes | str | None],
        *,
        branch: str = "main",
        repo_type: str = "model",
        message: str | None = None,
    ) -> str:
        """Push a commit on `branch` (created from `main` if new); a None value deletes the file."""
        repo = self.repo(repo_id, repo_type)
        changes = {p: c.encode() if isinstance(c, str) else c for p, c in files_changed.items()}
        parent = repo.branches.get(branch) or repo.branches.get("main")
        sha = repo.commit(changes, branch=branch, message=message, parent=parent)
        for f in repo.commits[sha].files.values():
            if f.is_lfs:
                self.cdn.store(f)
        return sha

    def tag(self, repo_id: str, name: str, revision: str, *, repo_type: str = "model") -> str:
        repo = self.repo(repo_id, repo_type)
        sha = repo.resolve(revision)
        if sha is None:
            raise KeyError(f"{repo_id}: unknown revision {revision!r}")
        repo.tags[name] = sha
        return sha

    def branch(self, repo_id: str, name: str, revision: str = "main", *, repo_type: str = "model") -> str:
        repo = self.repo(repo_id, repo_type)
        sha = repo.resolve(revision)
        if sha is None:
            raise KeyError(f"{repo_id}: unknown revision {revision!r}")
        repo.branches[name] = sha
        return sha

    def repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        return self.repos[(repo_type, repo_id)]

    def file(self, repo_id: str, path: str, revision: str = "main", *, repo_type: str = "model") -> RepoFile:
        """The stored file (its sha256, git oid, size, LFS-ness) at a revision."""
        repo = self.repo(repo_id, repo_type)
        sha = repo.resolve(revision)
        if sha is None:
            raise KeyError(f"{repo_id}: unknown revision {revision!r}")
        return repo.commits[sha].files[path]

    # -- faults and introspection ---------------------------------------------------------------------------
    def add_fault(self, path_contains: str = "", **kwargs: Any) -> Fault:
        """Arm a fault (see `Fault`); `path_contains` matches the URL path or the repo file path."""
        fault = Fault(path_contains=path_contains, **kwargs)
        self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        self.faults = []

    def requests(
        self,
        method: str | None = None,
        *,
        path_contains: str | None = None,
        origin: str | None = None,
        status: int | None = None,
        file: str | None = None,
    ) -> list[LoggedRequest]:
        return [
            r
            for r in list(self.log)
            if (method is None or r.method == method)
            and (path_contains is None or path_contains in r.path)
            and (origin is None or r.origin == origin)
            and (status is None or r.status == status)
            and (file is None or r.file == file)
        ]

    def count(self, method: str | None = None, **filters: Any) -> int:
        """E.g. `count("GET", origin="cdn", file="model.safetensors")`: downloads of that LFS file."""
        return len(self.requests(method, **filters))

    def xet_accesses(self) -> list[LoggedRequest]:
        """Every request for Xet tokens or to the Xet CAS: a client bypassing the proxy would show here."""
        return [r for r in list(self.log) if "/xet-cas/" in r.path or "/xet-read-token/" in r.path]

    def reset_log(self) -> None:
        self.log = []

    # -- lifecycle ------------------------------------------------------------------------------------------
    @property
    def cdn_ttl(self) -> float:
        """Seconds a signed CDN URL stays valid (set it low to test expired redirects)."""
        return self.cdn.ttl

    @cdn_ttl.setter
    def cdn_ttl(self, seconds: float) -> None:
        self.cdn.ttl = seconds

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._ports['hub']}"

    @property
    def cdn_url(self) -> str:
        return f"http://{self.host}:{self._ports['cdn']}"

    async def start(self) -> None:
        cdn_handler = self.cdn.handler(lambda request: self._fault("cdn", request, body=True))
        for origin, handler in (("hub", self._hub), ("cdn", cdn_handler)):
            app = web.Application(middlewares=[self._middleware(origin)])
            app.router.add_route("*", "/{tail:.*}", handler)
            app.on_response_prepare.append(self._stamp)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
            await runner.setup()
            await web.TCPSite(runner, self.host, 0).start()
            self._runners.append(runner)
            self._ports[origin] = runner.addresses[0][1]
        self.cdn.url = self.cdn_url

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners = []

    async def __aenter__(self) -> FakeHub:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- plumbing -------------------------------------------------------------------------------------------
    def _middleware(self, origin: str) -> Any:
        @web.middleware
        async def log_requests(request: web.Request, handler: Any) -> web.StreamResponse:
            entry = LoggedRequest.of(origin, request)
            request[LOG] = entry
            self.log.append(entry)  # appended first, so in-flight requests are counted too
            try:
                response = await handler(request)
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
        if repo is None or repo.private or sha not in repo.commits or path not in repo.commits[sha].files:
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


class FakeHubThread:
    """Runs a `FakeHub` on its own event loop in a daemon thread: `with FakeHubThread() as hub: ...`.

    For sync tests driving subprocess clients. Building repos and arming faults from the test thread is
    fine (plain dict/list updates); do it before the requests that should see them.
    """

    def __init__(self, hub: FakeHub | None = None, **kwargs: Any) -> None:
        self.hub = hub or FakeHub(**kwargs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-hub", daemon=True)

    def __enter__(self) -> FakeHub:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.hub.start(), self._loop).result(timeout=30)
        return self.hub

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.hub.stop(), self._loop).result(timeout=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._loop.close()
