"""The torch and GitHub upstream clients against the fake download.pytorch.org / GitHub (real aiohttp servers)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from proxy.errors import UpstreamError, UpstreamStatus
from proxy.upstreams.github import GitHub
from proxy.upstreams.torch import HttpSource
from tests.fakes.torch_upstream import FakePyTorch, make_app


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakePyTorch, str, aiohttp.ClientSession]]:
    state = FakePyTorch()
    server = TestServer(make_app(state), host="127.0.0.1")
    await server.start_server()
    state.url = str(server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as session:
        yield state, state.url, session
    await server.close()


async def _read(source: HttpSource) -> bytes:
    out = bytearray()
    async with source.open() as chunks:
        async for chunk in chunks:
            out += chunk
    return bytes(out)


async def test_resolve_pages_like_torch(fake: tuple[FakePyTorch, str, aiohttp.ClientSession]) -> None:
    state, url, session = fake
    sha = state.add_repo("acme", "r", {"hubconf.py": ""}, branch="main", tag="v1")
    for i in range(150):
        state.repos[("acme", "r")].branches[f"a{i:03d}"] = f"{i:040x}"
    gh = GitHub(session, web=url, api=url)
    assert await gh.resolve("acme", "r", "v1") == sha  # after two full pages of branches and the [] page
    assert state.count("/branches?per_page=100&page=3") == 1 and state.count("/tags?per_page=100&page=1") == 1
    assert await gh.resolve("acme", "r", sha[:10]) == sha
    assert await gh.resolve("acme", "r", "a007") == f"{7:040x}"
    with pytest.raises(UpstreamStatus, match="Cannot find nope") as info:
        await gh.resolve("acme", "r", "nope")
    assert info.value.status == 404
    with pytest.raises(UpstreamStatus, match="not found"):
        await gh.resolve("acme", "missing", "main")


async def test_archive_follows_the_codeload_redirect(fake: tuple[FakePyTorch, str, aiohttp.ClientSession]) -> None:
    state, url, session = fake
    sha = state.add_repo("acme", "r", {"hubconf.py": "dependencies = []\n"})
    body = await _read(GitHub(session, web=url, api=url).archive("acme", "r", sha))
    assert body == state.repos[("acme", "r")].archives[sha]
    names = zipfile.ZipFile(io.BytesIO(body)).namelist()
    assert names[0] == f"acme-r-{sha[:7]}/" and f"acme-r-{sha[:7]}/hubconf.py" in names
    assert state.count(f"/_codeload/acme/r/legacy.zip/{sha}") == 1


async def test_weight_source_errors(fake: tuple[FakePyTorch, str, aiohttp.ClientSession]) -> None:
    state, url, session = fake
    state.models["ok.pth"] = b"x" * 3_000_000
    assert await _read(HttpSource(session, f"{url}/models/ok.pth", what="ok")) == b"x" * 3_000_000
    with pytest.raises(UpstreamStatus) as info:
        await _read(HttpSource(session, f"{url}/models/none.pth", what="none"))
    assert info.value.status == 404
    state.models["cut.pth"] = b"y" * 3_000_000
    state.cut_models.add("cut.pth")
    with pytest.raises(UpstreamError, match="cut"):  # a cut transfer raises; it never ends quietly
        await _read(HttpSource(session, f"{url}/models/cut.pth", what="cut"))
    with pytest.raises(UpstreamError, match="unreachable"):
        await _read(HttpSource(session, "http://127.0.0.1:9/models/x.pth", what="x"))
