"""A fake download.pytorch.org and a fake GitHub (web, api, codeload) as one real aiohttp app.

Shapes copied from protocol/torch.md: `/models/<path>`; `/{o}/{r}/zipball/{ref}` answers 302 to a
codeload-like `/_codeload/{o}/{r}/legacy.zip/<refs/heads/ref | sha>`;
`/repos/{o}/{r}/branches|tags?per_page&page` pages and returns `[]` after the last page;
`/{o}/{r}/tree/main/` is 200 or 404. Every request is logged so tests can assert what hubgate fetched (and
that it pinned a commit).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class FakeRepo:
    owner: str
    repo: str
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit sha
    tags: dict[str, str] = field(default_factory=dict)
    archives: dict[str, bytes] = field(default_factory=dict)  # commit sha -> zip bytes


@dataclass
class FakePyTorch:
    models: dict[str, bytes] = field(default_factory=dict)  # path under /models/ -> bytes
    repos: dict[tuple[str, str], FakeRepo] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)  # "METHOD /path?query"
    url: str = ""  # set while running
    cut_models: set[str] = field(default_factory=set)  # paths whose transfer stops halfway

    def add_repo(self, owner: str, repo: str, files: dict[str, str], *, branch: str = "main", tag: str = "") -> str:
        """Add a commit holding `files` (relative path -> text) at `branch` (and `tag`); returns its sha."""
        fake = self.repos.setdefault((owner, repo), FakeRepo(owner, repo))
        seed = f"{owner}/{repo}/{sorted(files.items())}/{len(fake.archives)}"
        sha = hashlib.sha1(seed.encode()).hexdigest()
        fake.archives[sha] = make_zipball(owner, repo, sha, files)
        fake.branches[branch] = sha
        if tag:
            fake.tags[tag] = sha
        return sha

    def count(self, needle: str) -> int:
        return sum(1 for r in self.requests if needle in r)


def make_zipball(owner: str, repo: str, sha: str, files: dict[str, str]) -> bytes:
    """A GitHub-style zipball: the first entry is the top folder `{owner}-{repo}-{sha7}/`."""
    top = f"{owner}-{repo}-{sha[:7]}/"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo(top), b"")
        for rel, text in sorted(files.items()):
            zf.writestr(top + rel, text)
    return buf.getvalue()


def make_app(state: FakePyTorch) -> web.Application:
    @web.middleware
    async def log(request: web.Request, handler):  # type: ignore[no-untyped-def]
        state.requests.append(f"{request.method} {request.path_qs}")
        return await handler(request)

    async def model(request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        body = state.models.get(path)
        if body is None:
            return web.Response(status=404, text="Not Found")
        if path in state.cut_models and request.method == "GET":
            resp = web.StreamResponse(headers={"Content-Length": str(len(body))})
            await resp.prepare(request)
            await resp.write(body[: len(body) // 2])
            request.transport.close()  # type: ignore[union-attr]
            return resp
        return web.Response(body=body, content_type="application/octet-stream")

    def repo_of(request: web.Request) -> FakeRepo:
        fake = state.repos.get((request.match_info["owner"], request.match_info["repo"]))
        if fake is None:
            raise web.HTTPNotFound(text='{"message": "Not Found"}', content_type="application/json")
        return fake

    async def listing(request: web.Request) -> web.Response:
        fake = repo_of(request)
        heads = fake.branches if request.match_info["kind"] == "branches" else fake.tags
        per_page = int(request.query.get("per_page", "30"))
        page = int(request.query.get("page", "1"))
        items = [{"name": n, "commit": {"sha": s, "url": "x"}} for n, s in sorted(heads.items())]
        return web.json_response(items[(page - 1) * per_page : page * per_page])

    async def zipball(request: web.Request) -> web.Response:
        fake = repo_of(request)
        ref = request.match_info["ref"]
        sha = fake.branches.get(ref) or fake.tags.get(ref) or (ref if ref in fake.archives else None)
        if sha is None:
            raise web.HTTPNotFound()
        target = f"refs/heads/{ref}" if ref in fake.branches else sha
        raise web.HTTPFound(f"/_codeload/{fake.owner}/{fake.repo}/legacy.zip/{target}")

    async def codeload(request: web.Request) -> web.Response:
        fake = repo_of(request)
        ref = request.match_info["ref"].removeprefix("refs/heads/")
        sha = fake.branches.get(ref) or (ref if ref in fake.archives else None)
        if sha is None:
            raise web.HTTPNotFound()
        return web.Response(body=fake.archives[sha], content_type="application/zip")

    async def tree(request: web.Request) -> web.Response:
        fake = repo_of(request)
        if request.match_info["branch"] in fake.branches:
            return web.Response(text="<html>tree</html>", content_type="text/html")
        raise web.HTTPNotFound()

    app = web.Application(middlewares=[log])
    app.router.add_get("/models/{path:.+}", model)
    app.router.add_get("/repos/{owner}/{repo}/{kind:branches|tags}", listing)
    app.router.add_get("/_codeload/{owner}/{repo}/legacy.zip/{ref:.+}", codeload)
    app.router.add_get("/{owner}/{repo}/zipball/{ref:.+}", zipball)
    app.router.add_get("/{owner}/{repo}/tree/{branch}/", tree)
    return app


def state_dict_bytes(seed: int = 0) -> bytes:
    """A real `torch.save` of a small nn.Module's state dict (zip format), deterministic per seed."""
    import torch

    torch.manual_seed(seed)
    buf = io.BytesIO()
    torch.save(torch.nn.Linear(4, 2).state_dict(), buf)
    return buf.getvalue()


def hashed_name(stem: str, body: bytes, digits: int = 8) -> str:
    """`<stem>-<sha256 prefix>.pth`, the way download.pytorch.org names weights."""
    return f"{stem}-{hashlib.sha256(body).hexdigest()[:digits]}.pth"


def hubconf(weight_url: str) -> str:
    """A minimal hub repo entry point that loads its weights from an original download.pytorch.org URL."""
    return f'''dependencies = ["torch"]

import torch


def tiny(pretrained=True):
    """A 4->2 linear layer."""
    model = torch.nn.Linear(4, 2)
    if pretrained:
        model.load_state_dict(torch.hub.load_state_dict_from_url({weight_url!r}, check_hash=True))
    return model
'''


class Marker:
    """Pickles as `os.system(<cmd>)`: loading it with weights_only=False would run the command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return os.system, (self.command,)


def malicious_pth(marker: str) -> bytes:
    """A torch zip checkpoint whose pickle runs `touch <marker>` (harmless; generated at test time only)."""
    import torch

    buf = io.BytesIO()
    torch.save({"weight": torch.zeros(2), "payload": Marker(f"touch {marker}")}, buf)
    return buf.getvalue()


@contextmanager
def running(state: FakePyTorch) -> Iterator[FakePyTorch]:
    """Serve `state` on 127.0.0.1 (free port) from a daemon thread; `state.url` is its base URL."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-pytorch", daemon=True)
    thread.start()
    runner = web.AppRunner(make_app(state), access_log=None)

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        state.url = f"http://127.0.0.1:{port}"

    asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    try:
        yield state
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
