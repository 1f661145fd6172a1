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
- Renamed repos (`rename`): the old name answers `307` to the new one, for /resolve and /api.
- Faults (`add_fault`), a request log (`requests`, `count`, `reset_log`).

This module holds the state and the test-facing API; the Hub origin's handlers are in `hf_routes.py`, the
CDN's in `hf_cdn.py`, the `/api` JSON shapes in `hf_api.py`, repos and hashes in `hf_repos.py`.

Use `async with FakeHub() as hub:` in async tests, or `with FakeHubThread() as hub:` from sync code.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from aiohttp import web

from tests.fakes.hf_cdn import FakeCdn
from tests.fakes.hf_faults import Fault
from tests.fakes.hf_http import LoggedRequest
from tests.fakes.hf_repos import LFS_THRESHOLD, Repo, RepoFile, default_gitattributes
from tests.fakes.hf_routes import HubRoutes

VALID_TOKEN = "hf_fake_authorized_token"  # a user with access to every gated and private repo
NO_ACCESS_TOKEN = "hf_fake_unauthorized_token"  # a valid user who was not granted gated access


class FakeHub(HubRoutes):
    """The fake Hub. Build repos with `add_repo`/`commit`, then `await start()`; see the module doc."""

    def __init__(self, *, page_size: int = 50, host: str = "127.0.0.1") -> None:
        self.page_size = page_size
        self.host = host
        self.xet = False
        self.missing_repo_status = 404
        self.tokens: dict[str, bool] = {VALID_TOKEN: True, NO_ACCESS_TOKEN: False}  # token → gated access
        self.repos: dict[tuple[str, str], Repo] = {}
        self.renamed: dict[tuple[str, str], str] = {}  # (type, old id) → new id
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
        repo, sha = self._resolved(repo_id, revision, repo_type)
        repo.tags[name] = sha
        return sha

    def branch(self, repo_id: str, name: str, revision: str = "main", *, repo_type: str = "model") -> str:
        repo, sha = self._resolved(repo_id, revision, repo_type)
        repo.branches[name] = sha
        return sha

    def rename(self, repo_id: str, new_id: str, *, repo_type: str = "model") -> None:
        """Move a repo; its old name then answers `307` to the new one (relative), as on the Hub."""
        repo = self.repos.pop((repo_type, repo_id))
        repo.repo_id = new_id
        self.repos[(repo_type, new_id)] = repo
        self.renamed[(repo_type, repo_id)] = new_id

    def repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        return self.repos[(repo_type, repo_id)]

    def _resolved(self, repo_id: str, revision: str, repo_type: str) -> tuple[Repo, str]:
        """The repo and the commit a revision names; KeyError for an unknown revision."""
        repo = self.repo(repo_id, repo_type)
        sha = repo.resolve(revision)
        if sha is None:
            raise KeyError(f"{repo_id}: unknown revision {revision!r}")
        return repo, sha

    def file(self, repo_id: str, path: str, revision: str = "main", *, repo_type: str = "model") -> RepoFile:
        """The stored file (its sha256, git oid, size, LFS-ness) at a revision."""
        repo, sha = self._resolved(repo_id, revision, repo_type)
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
