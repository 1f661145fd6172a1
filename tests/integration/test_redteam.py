"""Red-team tests: attempts to make hubgate serve unvetted or wrong bytes, leak secrets, or stall.

Each test states the attack and asserts the safe behaviour. Most use the faithful `fake_hub`; attacks that
need an upstream the fake cannot imitate (a lying or hostile Hub) use `HostileHub`, a tiny aiohttp origin on
127.0.0.1 whose answers each test writes.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import pickle
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web

from proxy.models import ArtifactRef, RepoType
from proxy.redis_embedded import EmbeddedRedis
from tests.fakes.hf_hub import FakeHub
from tests.integration import http
from tests.integration.conftest import ADMIN_TOKEN
from tests.integration.http import get_until_done
from tests.integration.test_pipeline_http import APACHE_CARD, Payload, safetensors_bytes

COMMIT = "c0ffee" + "0" * 34
LICENSED = {"license": "apache-2.0"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def lfs_head_headers(commit: str, content: bytes) -> dict[str, str]:
    """What the Hub answers to HEAD on an LFS file of `content` at `commit`."""
    sha = hashlib.sha256(content).hexdigest()
    return {
        "X-Repo-Commit": commit,
        "ETag": f'"{sha}"',
        "X-Linked-Etag": f'"{sha}"',
        "X-Linked-Size": str(len(content)),
        "Content-Length": str(len(content)),
    }


class HostileHub:
    """An upstream that answers whatever the test says. `routes` maps (method, path) to a handler; repo
    info for `evil/*` is answered by default (commit COMMIT, Apache-2.0 card) so files reach the download."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Handler] = {}
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.info: dict[str, Any] = {
            "id": "evil/x",
            "sha": COMMIT,
            "cardData": LICENSED,
            "siblings": [{"rfilename": "README.md"}],
        }
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.raw_path, dict(request.headers)))
        # repo names are matched case-insensitively, as on the Hub (`EVIL/X` is `evil/x`)
        handler = self.routes.get((request.method, request.path)) or self.routes.get(
            (request.method, request.path.lower())
        )
        if handler is not None:
            return await handler(request)
        if request.method == "GET" and request.path.lower().startswith("/api/models/evil/"):
            return web.json_response(self.info)
        return web.Response(status=404, headers={"X-Error-Code": "EntryNotFound"})

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def __enter__(self) -> HostileHub:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def lfs_file(self, name: str, content: bytes, body: Handler) -> str:
        """Announce `evil/x/<name>` as an LFS file of `content` (HEAD), answered on GET by `body`."""
        path = f"/evil/x/resolve/{COMMIT}/{name}"

        async def head(request: web.Request) -> web.StreamResponse:
            return web.Response(headers=lfs_head_headers(COMMIT, content))

        self.routes[("HEAD", path)] = head
        self.routes[("GET", path)] = body
        return path


@pytest.fixture
def hostile() -> Iterator[HostileHub]:
    with HostileHub() as hub:
        yield hub


def counter(gate: Any, name: str) -> float:
    value = gate.pipeline.metrics.registry.get_sample_value(name)
    return float(value or 0.0)


def held_files(gate: Any) -> list[Path]:
    data = gate.settings.data_dir
    return [p for sub in ("quarantine", "blobs") for p in (data / sub).rglob("*") if p.is_file()]


# ---- oversized bodies: the size promised by the metadata is the limit, not HUBGATE_MAX_FILE_SIZE ----------


def test_gzip_bomb_is_stopped_at_the_promised_size(make_hubgate, hostile: HostileHub) -> None:
    """Attack: the HEAD promises 1000 bytes; the GET sends `Content-Encoding: gzip` of 1000 bytes followed by
    64 MiB of zeros (64 KiB on the wire). aiohttp inflates it: the download must stop near 1000 bytes, not
    write 64 MiB to disk before the size check."""
    content = b"a" * 1000
    bomb = gzip.compress(content + b"\0" * (64 * 1024 * 1024), compresslevel=9)

    async def body(request: web.Request) -> web.StreamResponse:
        return web.Response(body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "application/octet-stream"})

    path = hostile.lfs_file("model.safetensors", content, body)
    gate = make_hubgate(hf_upstream=hostile.url)
    answer = get_until_done(gate.url + path)
    assert answer.status == 403, answer
    assert "1000" in (answer.header("x-error-message") or "")
    assert counter(gate, "hubgate_upstream_bytes_total") < 8 * 1024 * 1024
    assert held_files(gate) == []


def test_endless_body_is_cut_at_the_promised_size(make_hubgate, hostile: HostileHub) -> None:
    """Attack: the HEAD promises 1000 bytes; the GET streams without end (chunked). hubgate must hang up
    near 1000 bytes rather than read up to HUBGATE_MAX_FILE_SIZE."""
    content = b"b" * 1000
    sent = {"bytes": 0}

    async def body(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        block = b"\0" * (1024 * 1024)
        try:
            while sent["bytes"] < 2 * 1024**3:
                await resp.write(block)
                sent["bytes"] += len(block)
        except (ConnectionError, RuntimeError):
            pass
        return resp

    path = hostile.lfs_file("model.safetensors", content, body)
    gate = make_hubgate(hf_upstream=hostile.url, max_file_size=512 * 1024 * 1024)
    answer = get_until_done(gate.url + path)
    assert answer.status == 403, answer
    assert counter(gate, "hubgate_upstream_bytes_total") < 16 * 1024 * 1024
    assert held_files(gate) == []


# ---- huge metadata answers: bounded memory --------------------------------------------------------------


def test_endless_metadata_answer_is_refused_not_buffered(make_hubgate, hostile: HostileHub) -> None:
    """Attack: the repo info answer never ends. hubgate must give up after a bounded amount (128 MiB), answer
    a 502, and keep serving, instead of buffering the stream in memory."""
    sent = {"bytes": 0}
    total = 320 * 1024 * 1024

    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b'{"sha": "' + COMMIT.encode() + b'", "pad": "')
        block = b"a" * (1024 * 1024)
        try:
            while sent["bytes"] < total:
                await resp.write(block)
                sent["bytes"] += len(block)
            await resp.write(b'"}')
        except (ConnectionError, RuntimeError):
            pass
        return resp

    hostile.routes[("GET", "/api/models/evil/huge")] = endless
    gate = make_hubgate(hf_upstream=hostile.url)
    answer = http.request("GET", gate.url + "/api/models/evil/huge")
    assert answer.status == 502, answer
    assert "larger than" in (answer.header("x-error-message") or "")
    assert sent["bytes"] < 200 * 1024 * 1024
    assert http.request("GET", gate.url + "/api/models/evil/x").status == 200  # still serving


# ---- a lying upstream: the commit it names must be a commit ------------------------------------------------


@pytest.mark.parametrize(
    "sha", ["main", "v1.0", COMMIT[:12], f"{COMMIT}\r\nX-Injected: 1", f"{COMMIT}\n", "../../" + COMMIT]
)
def test_repo_info_sha_that_is_not_a_commit_is_refused(make_hubgate, hostile: HostileHub, sha: str) -> None:
    """Attack: the upstream's repo info names as `sha` a branch name, a short sha, or text with CR/LF. hubgate
    pins artifacts (and caches resolutions forever) by that value: anything but 40 hex must be refused, and
    never reach a header."""
    content = b"c" * 100
    hostile.lfs_file("model.safetensors", content, lambda request: _const(content))
    hostile.info = {**hostile.info, "sha": sha}
    gate = make_hubgate(hf_upstream=hostile.url)
    answer = get_until_done(gate.url + "/evil/x/resolve/main/model.safetensors")
    assert answer.status == 502, answer
    assert answer.header("x-injected") is None
    assert "\n" not in (answer.header("x-repo-commit") or "")
    info = http.request("GET", gate.url + "/api/models/evil/x/revision/main")
    assert info.status == 502, info


async def _const(body: bytes) -> web.StreamResponse:
    return web.Response(body=body)


# ---- names with control characters -------------------------------------------------------------------------


def _add_model(hub: FakeHub, repo_id: str = "acme/model", **files: bytes) -> str:
    files = files or {"model.safetensors": safetensors_bytes(), "config.json": b'{"model_type": "bert"}'}
    return hub.add_repo(repo_id, files=files, card=APACHE_CARD)[0]


def test_trailing_newline_in_repo_revision_or_path_is_refused(make_hubgate, fake_hub: FakeHub) -> None:
    """Attack: `$` in a Python regex also matches before a final newline, so `acme/model%0A` or `<commit>%0A`
    pass `REPO_ID_RE.match` / `COMMIT_RE.match`: they must not reach the pipeline as another artifact of the
    same file (a rejected artifact would be vetted afresh under a new id), nor put a newline in a header.
    Held: the catch-all route's `.+` does not match a newline (404 before any handler); CR and TAB reach the
    upstream percent-encoded and find nothing."""
    commit = _add_model(fake_hub)
    gate = make_hubgate(hf_upstream=fake_hub.url)
    for path in (
        "/acme/model%0A/resolve/main/config.json",
        f"/acme/model/resolve/{commit}%0A/config.json",
        "/acme/model/resolve/main/config.json%0A",
        "/acme/model/resolve/main/config.json%0D",
        "/acme/model/resolve/main%09/config.json",
        "/api/models/acme/model%0A/revision/main",
        f"/api/models/acme/model/tree/{commit}%0A",
    ):
        answer = http.request("GET", gate.url + path)
        assert answer.status in (400, 404), (path, answer)
        assert all(" " <= c <= "~" for c in answer.header("x-repo-commit") or ""), (path, answer)
    assert get_until_done(f"{gate.url}/acme/model/resolve/{commit}/config.json").status == 200


# ---- refused files stay refused, whatever the request looks like ---------------------------------------------


def _evil_pickle(marker: Path) -> bytes:
    buf = io.BytesIO()
    pickle.dump({"state": Payload(marker)}, buf, protocol=2)
    return buf.getvalue()


def test_refused_file_is_refused_for_head_range_and_conditional_requests(
    make_hubgate, fake_hub: FakeHub, tmp_path: Path
) -> None:
    """Attack: ask for a blocked file with HEAD, a Range, If-None-Match/If-Range carrying its real hash, by
    commit, by `refs%2Fpr`-style encodings, with `%2F` in the repo id, or a differently encoded path. Every
    form is a 403 without a byte of the file (no 206, no 304 that a cache would treat as 'still valid')."""
    payload = _evil_pickle(tmp_path / "pwned")
    commit = _add_model(fake_hub, **{"pytorch_model.bin": payload, "config.json": b"{}"})
    sha = hashlib.sha256(payload).hexdigest()
    gate = make_hubgate(hf_upstream=fake_hub.url)
    first = get_until_done(f"{gate.url}/acme/model/resolve/main/pytorch_model.bin")
    assert first.status == 403, first
    variants: list[tuple[str, str, dict[str, str]]] = [
        ("HEAD", "/acme/model/resolve/main/pytorch_model.bin", {}),
        ("GET", "/acme/model/resolve/main/pytorch_model.bin", {"Range": "bytes=0-15"}),
        ("GET", "/acme/model/resolve/main/pytorch_model.bin", {"If-None-Match": f'"{sha}"'}),
        ("GET", "/acme/model/resolve/main/pytorch_model.bin", {"If-Range": f'"{sha}"', "Range": "bytes=1-"}),
        ("GET", f"/acme/model/resolve/{commit}/pytorch_model.bin", {}),
        ("GET", "/acme%2Fmodel/resolve/main/pytorch_model.bin", {}),
        ("GET", "/acme/model/resolve/main/pytorch%5Fmodel.bin", {}),
        ("GET", "/acme/model/resolve/main/./pytorch_model.bin", {}),
        ("GET", "/acme/model/resolve/main/x/../pytorch_model.bin", {}),
        ("GET", "/acme/model/resolve/main/%2E/pytorch_model.bin", {}),
        ("GET", "/acme/model/resolve/main//pytorch_model.bin", {}),
        ("GET", "/acme/model/resolve/refs%2Fheads%2Fmain/pytorch_model.bin", {}),
        ("GET", "/models/acme/model/resolve/main/pytorch_model.bin", {}),
        ("GET", "/acme/model/resolve/main/pytorch_model.bin?download=true", {}),
    ]
    for method, path, headers in variants:
        answer = get_until_done(gate.url + path, headers=headers) if method == "GET" else None
        if answer is None:
            answer = http.request(method, gate.url + path, headers=headers)
        assert answer.status in (400, 403, 404), (method, path, headers, answer)
        assert payload[:16] not in answer.body and b"\x80\x02" not in answer.body, (method, path)
        assert answer.status != 200
    assert not (tmp_path / "pwned").exists()
    assert gate.blobs.blob_path(sha) is None  # never promoted


def test_revoked_approval_and_new_reject_stop_serving_at_once(make_hubgate, fake_hub: FakeHub) -> None:
    """Attack: keep downloading a file after an admin withdrew it. Approved, served, then rejected: the very
    next request is a 403, although the bytes are still in the vetted cache."""
    commit = _add_model(fake_hub)
    gate = make_hubgate(hf_upstream=fake_hub.url)
    url = f"{gate.url}/acme/model/resolve/main/model.safetensors"
    served = get_until_done(url)
    assert served.status == 200
    aid = ArtifactRef(
        source="hf", repo_type=RepoType.MODEL, repo_id="acme/model", commit=commit, path="model.safetensors"
    ).artifact_id
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
    reject = http.request(
        "POST", f"{gate.url}/admin/api/artifacts/{aid}/reject", headers=auth, body=b'{"reason": "withdrawn"}'
    )
    assert reject.status == 200, reject
    for method in ("GET", "HEAD"):
        answer = http.request(method, url, headers={"Range": "bytes=0-3"})
        assert answer.status == 403, (method, answer)
        assert answer.body[:4] != served.body[:4]
    revoke = http.request(
        "POST", f"{gate.url}/admin/api/artifacts/{aid}/revoke", headers=auth, body=b'{"reason": "ok again"}'
    )
    assert revoke.status == 200, revoke
    assert http.request("GET", url).status == 200  # back to the policy's approval


# ---- Xet, CDN redirects and passthrough: nothing leads a client around hubgate ------------------------------


def _no_xet(answer: http.Answer, what: str) -> None:
    assert not [h for h in answer.headers if h.startswith("x-xet")], (what, answer.headers)
    assert b"xetHash" not in answer.body and b"xet-cas" not in answer.body, what
    assert "xet" not in (answer.header("link") or ""), what
    assert answer.header("location") is None, what


def test_xet_never_reaches_a_client_including_errors(make_hubgate, fake_hub: FakeHub) -> None:
    """Attack: the upstream advertises Xet everywhere. No header, Link rel, `xetHash` or CAS URL may reach
    a client on any route: files, HEAD, info, tree (recursive, paged), paths-info, refs, 404s, token routes."""
    commit = _add_model(fake_hub)
    fake_hub.xet = True
    gate = make_hubgate(hf_upstream=fake_hub.url)
    base = gate.url
    for method, path in [
        ("GET", "/acme/model/resolve/main/model.safetensors"),
        ("HEAD", "/acme/model/resolve/main/model.safetensors"),
        ("GET", "/acme/model/resolve/main/missing.safetensors"),
        ("GET", "/api/models/acme/model"),
        ("GET", "/api/models/acme/model/revision/main?expand[]=siblings"),
        ("GET", f"/api/models/acme/model/tree/{commit}?recursive=true&expand=true"),
        ("GET", "/api/models/acme/model/tree/main?expand=1"),
        ("GET", "/api/models/acme/model/refs"),
        ("GET", f"/api/models/acme/model/xet-read-token/{commit}"),
        ("GET", "/api/models/acme/nothere"),
    ]:
        answer = get_until_done(base + path) if method == "GET" else http.request(method, base + path)
        assert answer.status != 500, (path, answer)
        _no_xet(answer, path)
    paths_info = http.request(
        "POST",
        f"{base}/api/models/acme/model/paths-info/{commit}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        body=b"paths=model.safetensors&expand=true",
    )
    assert paths_info.status == 200 and paths_info.json(), paths_info
    _no_xet(paths_info, "paths-info")
    assert fake_hub.xet_accesses() == []


def test_passthrough_never_relays_redirects_or_non_json_bytes(make_hubgate, hostile: HostileHub) -> None:
    """Attack: the generic `/api/...` passthrough answered upstream by a 302 to storage (with a signed URL),
    by raw file bytes, or by a `resolve`-looking path. No Location and no non-JSON body reach the client."""
    cdn = f"http://localhost:{hostile.port}/cdn/blob?X-Amz-Signature=abc"
    secret = b"\x80\x02}q\x00RAW-FILE-BYTES"

    async def redirect(request: web.Request) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": cdn})

    async def raw(request: web.Request) -> web.StreamResponse:
        return web.Response(body=secret, content_type="application/octet-stream")

    hostile.routes[("GET", "/api/models/evil/x/commits/main")] = redirect
    hostile.routes[("GET", "/api/models/evil/y/commits/main")] = raw
    hostile.routes[("GET", "/api/models/evil/z")] = redirect
    gate = make_hubgate(hf_upstream=hostile.url)
    for path in (
        "/api/models/evil/x/commits/main",
        "/api/models/evil/y/commits/main",
        "/api/models/evil/z",
        "/api/models/evil/z/revision/main",
        "/api/models/evil/x/resolve/main/model.bin",
        "/api/resolve-cache/models/evil/x/" + COMMIT + "/model.bin",
        "/api/models/evil/x/commits/main/../../resolve/main/model.bin",
        "/api/models/evil/x/commits/main%2F..%2F..%2Fresolve%2Fmain%2Fmodel.bin",
    ):
        answer = http.request("GET", gate.url + path)
        assert answer.header("location") is None, (path, answer)
        assert answer.status not in (200, 301, 302, 303, 307, 308) or path == "/api/models/evil/z/revision/main"
        assert secret not in answer.body and b"X-Amz" not in answer.body, (path, answer)
    assert not [s for s in hostile.seen if "/cdn/" in s[1]]  # hubgate never fetched the storage URL for them


def test_hf_token_goes_to_the_hub_only_and_never_to_clients(make_hubgate, hostile: HostileHub, caplog) -> None:
    """Attack: look for the server's HF token in what hubgate sends: to the CDN a redirect names (another
    origin), in answers (files, errors, /healthz, /metrics), and in the log."""
    token = "hf_SECRET_red_team_token_0123456789"
    content = safetensors_bytes()
    sha = hashlib.sha256(content).hexdigest()
    cdn_path = "/cdn/blob"

    async def head(request: web.Request) -> web.StreamResponse:
        return web.Response(
            status=302,
            headers={
                "Location": f"http://localhost:{hostile.port}{cdn_path}",
                "X-Repo-Commit": COMMIT,
                "X-Linked-Etag": f'"{sha}"',
                "X-Linked-Size": str(len(content)),
                "ETag": '"0123"',
            },
        )

    async def blob(request: web.Request) -> web.StreamResponse:
        return web.Response(body=content)

    async def fail(request: web.Request) -> web.StreamResponse:
        return web.Response(status=500, text="upstream exploded")

    hostile.routes[("HEAD", f"/evil/x/resolve/{COMMIT}/model.safetensors")] = head
    hostile.routes[("GET", f"/evil/x/resolve/{COMMIT}/model.safetensors")] = head
    hostile.routes[("GET", cdn_path)] = blob
    hostile.routes[("GET", "/api/models/evil/broken")] = fail
    gate = make_hubgate(hf_upstream=hostile.url, hf_token=token)
    answers = [
        get_until_done(f"{gate.url}/evil/x/resolve/main/model.safetensors"),
        http.request("GET", f"{gate.url}/api/models/evil/broken"),
        http.request("GET", f"{gate.url}/evil/x/resolve/main/missing.bin"),
        http.request("GET", f"{gate.url}/healthz"),
        http.request("GET", f"{gate.url}/metrics"),
    ]
    assert answers[0].status == 200 and answers[0].body == content, answers[0]
    for answer in answers:
        assert token.encode() not in answer.body and token not in str(answer.headers)
    hub_auth = [h.get("Authorization") for m, p, h in hostile.seen if p.startswith("/api/")]
    assert hub_auth and all(a == f"Bearer {token}" for a in hub_auth)  # it is used where it belongs
    cdn_auth = [h.get("Authorization") for m, p, h in hostile.seen if p.startswith(cdn_path)]
    assert cdn_auth == [None], hostile.seen
    assert token not in caplog.text


# ---- one repo, many spellings ---------------------------------------------------------------------------------


def test_a_reject_is_not_bypassed_by_another_spelling_of_the_repo(make_hubgate, hostile: HostileHub) -> None:
    """Attack: an admin rejected `evil/x@C:model.safetensors`; the Hub matches repo names case-insensitively
    (and answers a renamed repo's old name), so `EVIL/X` names the same file. Asking under another spelling
    must not vet the same bytes afresh as a new artifact and serve them."""
    content = safetensors_bytes()

    async def body(request: web.Request) -> web.StreamResponse:
        return web.Response(body=content)

    hostile.lfs_file("model.safetensors", content, body)
    gate = make_hubgate(hf_upstream=hostile.url)
    first = get_until_done(f"{gate.url}/evil/x/resolve/main/model.safetensors")
    assert first.status == 200, first
    aid = ArtifactRef(
        source="hf", repo_type=RepoType.MODEL, repo_id="evil/x", commit=COMMIT, path="model.safetensors"
    ).artifact_id
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
    reject = http.request(
        "POST", f"{gate.url}/admin/api/artifacts/{aid}/reject", headers=auth, body=b'{"reason": "withdrawn"}'
    )
    assert reject.status == 200, reject
    for spelling in ("EVIL/X", "Evil/x", "evil/X"):
        for revision in ("main", COMMIT):
            answer = get_until_done(f"{gate.url}/{spelling}/resolve/{revision}/model.safetensors")
            assert answer.status == 403, (spelling, revision, answer)
            assert answer.body != content


# ---- admin surface ---------------------------------------------------------------------------------------------


def test_admin_api_refuses_every_forged_credential(make_hubgate, fake_hub: FakeHub) -> None:
    """Attack: approve an artifact without the token: no header, a wrong or prefix token, the token without
    `Bearer`, padded, a forged console cookie, or a real cookie replayed without the form's CSRF token."""
    gate = make_hubgate(hf_upstream=fake_hub.url)
    url = f"{gate.url}/admin/api/artifacts/0123456789ab/approve"
    body = b'{"reason": "let me in"}'
    for headers in (
        {},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"},
        {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
        {"Authorization": ADMIN_TOKEN},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
        {"Authorization": f"bearer  {ADMIN_TOKEN} "},
        {"Cookie": "hubgate_session=eyJuIjoiYWRtaW4iLCJlIjo5OTk5OTk5OTk5LCJjIjoieCJ9.forged"},
        {"Cookie": "hubgate_session=eyJuIjoiYWRtaW4iLCJlIjo5OTk5OTk5OTk5LCJjIjoieCJ9."},
    ):
        answer = http.request("POST", url, headers={"Content-Type": "application/json", **headers}, body=body)
        assert answer.status == 401, (headers, answer)
        assert ADMIN_TOKEN.encode() not in answer.body
    assert gate.call(gate.store.read_audit(event="approve")) == []
    # a real console session: forms without the CSRF token, or from another origin, are refused
    login = http.request(
        "POST",
        f"{gate.url}/admin/login",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        body=f"token={ADMIN_TOKEN}&name=alice".encode(),
    )
    assert login.status == 303, login
    cookie = (login.header("set-cookie") or "").split(";")[0]
    assert cookie.startswith("hubgate_session=")
    form = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie}
    for extra, data in (
        ({}, b"reason=csrf"),
        ({}, b"reason=csrf&csrf=guess"),
        ({"Origin": "http://evil.example"}, b"reason=csrf"),
    ):
        answer = http.request(
            "POST", f"{gate.url}/admin/artifacts/0123456789ab/approve", headers={**form, **extra}, body=data
        )
        assert answer.status == 403, (extra, data, answer)
    # the REST API does not take the console cookie in place of the token
    answer = http.request("POST", url, headers={"Content-Type": "application/json", "Cookie": cookie}, body=body)
    assert answer.status == 401, answer


def test_admin_api_is_closed_when_no_token_is_configured(make_hubgate, fake_hub: FakeHub) -> None:
    """Attack: a server started without HUBGATE_ADMIN_TOKEN must not accept an empty token anywhere."""
    gate = make_hubgate(hf_upstream=fake_hub.url, admin_token=None)
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer None"}):
        answer = http.request("GET", f"{gate.url}/admin/api/artifacts", headers=headers)
        assert answer.status == 401, (headers, answer)
    login = http.request(
        "POST",
        f"{gate.url}/admin/login",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        body=b"token=&name=alice",
    )
    assert login.header("set-cookie") is None and login.status != 303, login


def test_admin_name_cannot_inject_into_the_audit_trail(make_hubgate, fake_hub: FakeHub) -> None:
    """Attack: a token holder names themselves with separators or markup (`X-Hubgate-Admin`); refused."""
    gate = make_hubgate(hf_upstream=fake_hub.url)
    for name in ("alice<script>", "alice admin:bob", "alice;x", "a" * 65, "alice\\tbob", "x:y"):
        answer = http.request(
            "GET",
            f"{gate.url}/admin/api/artifacts",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Hubgate-Admin": name},
        )
        assert answer.status == 400, (name, answer)


# ---- offline means offline -------------------------------------------------------------------------------------


def test_offline_mode_never_contacts_the_upstream(make_hubgate, fake_hub: FakeHub) -> None:
    """Attack: make an offline server reach the upstream: unknown files, every API route, torch weights."""
    commit = _add_model(fake_hub)
    gate = make_hubgate(hf_upstream=fake_hub.url, offline=True, torch_upstream=fake_hub.url)
    for method, path in [
        ("GET", "/acme/model/resolve/main/model.safetensors"),
        ("HEAD", f"/acme/model/resolve/{commit}/config.json"),
        ("GET", "/api/models/acme/model"),
        ("GET", "/api/models/acme/model/revision/main"),
        ("GET", f"/api/models/acme/model/tree/{commit}"),
        ("GET", "/api/models/acme/model/refs"),
        ("GET", "/api/models/acme/model/commits/main"),
        ("GET", "/torch/models/resnet18-f37072fd.pth"),
    ]:
        answer = http.request(method, gate.url + path)
        assert answer.status in (404, 400, 403), (path, answer)
    assert fake_hub.log == [], fake_hub.log


# ---- failures elsewhere never turn into bytes --------------------------------------------------------------------


def test_redis_lost_mid_service_refuses_even_approved_files(make_hubgate, fake_hub: FakeHub, tmp_path: Path) -> None:
    """Attack: Redis goes away after a file was approved (its bytes are still in the vetted cache). Without
    the verdict nothing can prove the file is still approved (it may have been rejected meanwhile): 503,
    no bytes, for cached and cold files alike; /healthz says so."""
    _add_model(fake_hub)
    redis = EmbeddedRedis(tmp_path / "own-redis")
    url = redis.start()
    try:
        gate = make_hubgate(hf_upstream=fake_hub.url, redis_url=url)
        served = get_until_done(f"{gate.url}/acme/model/resolve/main/model.safetensors")
        assert served.status == 200
    finally:
        redis.stop()
    for path in ("/acme/model/resolve/main/model.safetensors", "/acme/model/resolve/main/config.json"):
        answer = http.request("GET", gate.url + path, timeout=30)
        assert answer.status == 503, (path, answer)
        assert answer.body != served.body
    assert http.request("GET", f"{gate.url}/healthz").status == 503


def test_one_stalled_download_does_not_stall_other_files(make_hubgate, fake_hub: FakeHub) -> None:
    """Attack: one file drips from the upstream (a hostile or broken origin). Its clients get 429 after the
    hold; everyone else is served meanwhile."""
    _add_model(fake_hub, **{"slow.safetensors": safetensors_bytes(200_000), "config.json": b"{}"})
    fake_hub.add_fault("slow.safetensors", origin="cdn", chunk_delay=1.0, chunk_size=64 * 1024)
    gate = make_hubgate(hf_upstream=fake_hub.url, hold_seconds=1.0)
    slow = [http.request("GET", f"{gate.url}/acme/model/resolve/main/slow.safetensors") for _ in range(3)]
    assert [a.status for a in slow] == [429, 429, 429], slow
    fast = get_until_done(f"{gate.url}/acme/model/resolve/main/config.json")
    assert fast.status == 200 and fast.body == b"{}"
    fake_hub.clear_faults()


# ---- the bytes on disk must still be the bytes that were vetted ---------------------------------------------------


def test_a_vetted_blob_changed_on_disk_is_not_served(make_hubgate, fake_hub: FakeHub) -> None:
    """Attack: after approval, the file under blobs/ is truncated or has bytes appended (a torn copy, a
    careless restore, tampering). Serving it would hand out bytes that were never vetted under the hash its
    ETag names: refuse (the next request fetches and vets a fresh copy)."""
    weights = safetensors_bytes(20_000)
    _add_model(fake_hub, **{"model.safetensors": weights, "config.json": b"{}"})
    gate = make_hubgate(hf_upstream=fake_hub.url)
    url = f"{gate.url}/acme/model/resolve/main/model.safetensors"
    assert get_until_done(url).status == 200
    blob = gate.blobs.blob_path(hashlib.sha256(weights).hexdigest())
    for tampered in (weights[:-100], weights + b"\x80\x02cposix\nsystem\n"):
        blob.chmod(0o644)
        blob.write_bytes(tampered)
        answer = http.request("GET", url)
        assert answer.status != 200 and answer.body != tampered, answer
        again = get_until_done(url)  # self-heals: a fresh, verified copy
        assert again.status == 200 and again.body == weights, again


# ---- torch routes ------------------------------------------------------------------------------------------------


def test_torch_paths_cannot_leave_models_or_the_repo(make_hubgate, hostile: HostileHub) -> None:
    """Attack: traversal and encoding tricks on the torch routes. Nothing outside `/models/` (weights) or the
    named repo (GitHub) may be requested upstream, and nothing is served."""
    gate = make_hubgate(torch_upstream=hostile.url, github_upstream=hostile.url, github_api_upstream=hostile.url)
    for path in (
        "/torch/models/..%2F..%2Fetc%2Fpasswd",
        "/torch/models/%2E%2E/secret.pth",
        "/torch/models/a/%2e%2e/%2e%2e/secret.pth",
        "/torch/models/..\\..\\secret.pth",
        "/torch/models/x.pth%00.txt",
        "/torch/models/" + "a" * 600 + ".pth",
        "/torch/models/%252e%252e/secret.pth",
        "/torch/github/..%2F..%2Fapi/repo/zipball/main",
        "/torch/github/owner/..%2F..%2Frepos/zipball/main",
        "/torch/github/owner/repo/zipball/..%2F..%2Fmain",
        "/torch/codeload/owner/repo/legacy.zip/refs%2F..%2F..%2Fx",
        "/torch/github-api/repos/..%2F..%2Fx/repo/branches",
    ):
        answer = http.request("GET", gate.url + path)
        assert answer.status in (400, 404), (path, answer)
    assert hostile.seen == [], hostile.seen  # refused before any upstream request


def test_hf_token_echoed_by_the_upstream_is_not_relayed(make_hubgate, hostile: HostileHub) -> None:
    """Attack: the upstream's error answer quotes the Authorization it received (a debugging proxy, a
    misconfigured gateway). hubgate relays upstream 4xx messages to clients: the server's token must be
    masked in them (X-Error-Message, the JSON body) and in the log."""
    token = "hf_SECRET_echoed_token_9876543210"

    async def echo(request: web.Request) -> web.StreamResponse:
        given = request.headers.get("Authorization", "")
        text = f"token rejected: {given}"
        return web.json_response({"error": text}, status=403, headers={"X-Error-Message": text})

    async def echo_body(request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": f"bad credentials {request.headers.get('Authorization', '')}"}, status=401)

    hostile.routes[("GET", "/api/models/evil/echo")] = echo
    hostile.routes[("GET", "/api/models/evil/echo/revision/main")] = echo
    hostile.routes[("HEAD", f"/evil/x/resolve/{COMMIT}/echo.bin")] = echo
    hostile.routes[("GET", "/api/models/evil/body")] = echo_body
    gate = make_hubgate(hf_upstream=hostile.url, hf_token=token)
    answers = [
        http.request("GET", f"{gate.url}/api/models/evil/echo"),
        http.request("GET", f"{gate.url}/evil/echo/resolve/main/x.bin"),
        http.request("GET", f"{gate.url}/evil/x/resolve/main/echo.bin"),
        http.request("GET", f"{gate.url}/api/models/evil/body"),
    ]
    assert any(h[2].get("Authorization") == f"Bearer {token}" for h in hostile.seen)  # it was sent upstream
    for answer in answers:
        assert answer.status in (401, 403), answer
        assert token not in str(answer.headers) and token.encode() not in answer.body, answer


# ---- an approval covers what the admin saw --------------------------------------------------------------------


def test_approval_given_before_the_scan_does_not_cover_unsafe_bytes(
    make_hubgate, fake_hub: FakeHub, tmp_path: Path
) -> None:
    """Attack: a repo is blocked on its license alone, before any byte is fetched (no scan). An admin approves
    the artifact ("legal says the license is fine"). The bytes then fetched carry a pickle that runs
    os.system: the approval was given without a scan and must not serve what the scanners find unsafe
    (as for broad waivers); it takes an approval given with the findings in view."""
    payload = _evil_pickle(tmp_path / "pwned")
    commit = fake_hub.add_repo(
        "acme/nc", files={"pytorch_model.bin": payload}, card="---\nlicense: cc-by-nc-4.0\n---\n# NC\n"
    )[0]
    gate = make_hubgate(hf_upstream=fake_hub.url)
    url = f"{gate.url}/acme/nc/resolve/main/pytorch_model.bin"
    first = get_until_done(url)
    assert first.status == 403 and "license" in (first.header("x-error-message") or ""), first
    aid = ArtifactRef(
        source="hf", repo_type=RepoType.MODEL, repo_id="acme/nc", commit=commit, path="pytorch_model.bin"
    ).artifact_id
    stored = gate.call(gate.store.get_verdict(aid))
    assert stored is not None and stored.scan_verdict is None  # decided without the bytes
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
    approve = http.request(
        "POST", f"{gate.url}/admin/api/artifacts/{aid}/approve", headers=auth, body=b'{"reason": "legal ok"}'
    )
    assert approve.status == 200, approve
    second = get_until_done(url)
    assert second.status == 403, second
    assert second.body != payload
    assert "posix.system" in (second.header("x-error-message") or ""), second
    dropped = gate.call(gate.store.read_audit(event="approval-dropped"))
    assert len(dropped) == 1 and dropped[0]["artifact_id"] == aid
    # with the findings in view, the admin can still approve (a false positive, say)
    again = http.request(
        "POST", f"{gate.url}/admin/api/artifacts/{aid}/approve", headers=auth, body=b'{"reason": "seen it"}'
    )
    assert again.status == 200, again
    assert get_until_done(url).body == payload
    assert not (tmp_path / "pwned").exists()


# ---- relayed upstream headers -------------------------------------------------------------------------------------


def test_hostile_upstream_error_headers_are_relayed_safely(make_hubgate, hostile: HostileHub) -> None:
    """Attack: the upstream's error answer carries odd `X-Error-Code` / `X-Error-Message` / `X-Repo-Commit`
    values (non-ASCII bytes, very long). The client gets a clean, bounded, ASCII refusal, not a crash."""

    async def odd(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=404)
        resp.headers["X-Error-Code"] = "RepoNotFound\u00e9<script>"
        resp.headers["X-Error-Message"] = "nope \u00e9" + "x" * 4000
        resp.headers["X-Repo-Commit"] = "not-a-commit \u00e9"
        await resp.prepare(request)
        await resp.write_eof()
        return resp

    hostile.routes[("GET", "/api/models/evil/odd")] = odd
    hostile.routes[("GET", "/api/models/evil/odd/revision/main")] = odd
    gate = make_hubgate(hf_upstream=hostile.url)
    for path in ("/api/models/evil/odd", "/evil/odd/resolve/main/x.bin"):
        answer = http.request("GET", gate.url + path)
        assert answer.status == 404, (path, answer)
        for name in ("x-error-code", "x-error-message", "x-repo-commit"):
            value = answer.header(name) or ""
            assert value.isascii() and len(value) <= 2000, (path, name, value)


# ---- the file answered must be the file of the commit asked for ----------------------------------------------------


def test_file_metadata_of_another_commit_is_refused(make_hubgate, hostile: HostileHub) -> None:
    """Attack: asked for `model.safetensors` at commit C, the upstream answers the HEAD with the file of
    another commit (X-Repo-Commit D) or of no commit. hubgate would pin D's bytes as C's file forever
    (artifact ids and cached metadata are per commit): refuse instead."""
    content = safetensors_bytes()
    other = "d" * 40

    def head_for(commit: str) -> Handler:
        async def head(request: web.Request) -> web.StreamResponse:
            return web.Response(headers=lfs_head_headers(commit, content))

        return head

    async def body(request: web.Request) -> web.StreamResponse:
        return web.Response(body=content)

    for name, commit in (("moved.safetensors", other), ("upper.safetensors", COMMIT.upper())):
        hostile.routes[("HEAD", f"/evil/x/resolve/{COMMIT}/{name}")] = head_for(commit)
        hostile.routes[("GET", f"/evil/x/resolve/{COMMIT}/{name}")] = body
    gate = make_hubgate(hf_upstream=hostile.url)
    for name in ("moved.safetensors", "upper.safetensors"):
        for revision in ("main", COMMIT):
            answer = get_until_done(f"{gate.url}/evil/x/resolve/{revision}/{name}")
            assert answer.status == 502, (name, revision, answer)
            assert answer.body != content


# ---- served repo files must not run in hubgate's origin (the console lives there) ----------------------------------


def test_served_html_cannot_script_the_console_origin(make_hubgate, fake_hub: FakeHub) -> None:
    """Attack: a repo ships `index.html` / `x.svg` with script that, opened in an admin's browser from
    hubgate's origin, would read the console's CSRF token and approve artifacts. Files are served as opaque
    downloads: octet-stream, no sniffing, sandboxed, as an attachment."""
    script = b"<html><script>fetch('/admin/').then(r=>r.text()).then(alert)</script></html>"
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.domain)</script></svg>'
    _add_model(fake_hub, **{"index.html": script, "x.svg": svg, "config.json": b"{}"})
    gate = make_hubgate(hf_upstream=fake_hub.url)
    for name, body in (("index.html", script), ("x.svg", svg)):
        answer = get_until_done(f"{gate.url}/acme/model/resolve/main/{name}")
        if answer.status != 200:
            continue  # refused is safe too
        assert answer.body == body
        assert answer.header("content-type") == "application/octet-stream", answer.headers
        assert answer.header("x-content-type-options") == "nosniff", answer.headers
        assert "sandbox" in (answer.header("content-security-policy") or ""), answer.headers


# ---- audit mode --------------------------------------------------------------------------------------------------


def _stack_global_pickle(module: str, name: str) -> bytes:
    """A protocol-4 pickle naming `module.name` via STACK_GLOBAL (names may hold any character)."""
    out = bytearray(b"\x80\x04")
    for text in (module, name):
        raw = text.encode()
        out += b"\x8c" + bytes([len(raw)]) + raw  # SHORT_BINUNICODE
    out += b"\x93."  # STACK_GLOBAL, STOP
    return bytes(out)


def test_audit_mode_warning_cannot_inject_headers(make_hubgate, fake_hub: FakeHub, tmp_path: Path) -> None:
    """Attack: in audit mode a refused file is served with its reasons in `X-HF-Warning`; the reasons quote
    names taken from the file (a pickle global may hold CR/LF). The warning must stay one clean ASCII
    header, and the file is still answered (not a 500)."""
    policy = tmp_path / "audit.toml"
    policy.write_text('version = 1\nmode = "audit"\n')
    evil = _stack_global_pickle("os\r\nX-Injected: 1\r\n\u00e9", "system")
    _add_model(fake_hub, **{"pytorch_model.bin": evil, "config.json": b"{}"})
    gate = make_hubgate(hf_upstream=fake_hub.url, policy=policy)
    answer = get_until_done(f"{gate.url}/acme/model/resolve/main/pytorch_model.bin")
    assert answer.status == 200, answer
    assert answer.header("x-injected") is None
    warning = answer.header("x-hf-warning") or ""
    assert "audit mode" in warning and warning.isascii() and "\n" not in warning and "\r" not in warning, warning


def test_switching_audit_to_enforce_stops_serving_what_audit_let_through(
    make_hubgate, fake_hub: FakeHub, tmp_path: Path
) -> None:
    """Attack: a file refused by policy was served (and cached in blobs/) while the policy was in audit mode.
    Once the policy is switched to enforce, the cached bytes must not be served any more; an admin's reject
    stops them even in audit mode."""
    policy = tmp_path / "policy.toml"
    policy.write_text('version = 1\nmode = "audit"\n')
    evil = _evil_pickle(tmp_path / "pwned")
    _add_model(fake_hub, **{"pytorch_model.bin": evil, "config.json": b"{}"})
    gate = make_hubgate(hf_upstream=fake_hub.url, policy=policy, policy_watch_seconds=0)
    url = f"{gate.url}/acme/model/resolve/main/pytorch_model.bin"
    assert get_until_done(url).status == 200
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    policy.write_text('version = 1\nmode = "enforce"\n')
    assert http.request("POST", f"{gate.url}/admin/api/policy/reload", headers=auth).status == 200
    refused = http.request("GET", url)
    assert refused.status == 403 and refused.body != evil, refused
    policy.write_text('version = 1\nmode = "audit"\n')
    assert http.request("POST", f"{gate.url}/admin/api/policy/reload", headers=auth).status == 200
    assert get_until_done(url).status == 200
    aid = refused.header("x-error-message").split("(artifact ")[1][:12]
    reject = http.request(
        "POST",
        f"{gate.url}/admin/api/artifacts/{aid}/reject",
        headers={**auth, "Content-Type": "application/json"},
        body=b'{"reason": "no"}',
    )
    assert reject.status == 200, reject
    assert http.request("GET", url).status == 403


def test_torch_gzip_bomb_is_stopped_early(make_hubgate, hostile: HostileHub) -> None:
    """Attack: download.pytorch.org (or a GitHub archive) answers `Content-Encoding: gzip` although hubgate
    asked for identity: 64 KiB on the wire inflating to 64 MiB. Torch names carry no size, so the limit is
    what the answer itself promised (its Content-Length): stop there, not at HUBGATE_MAX_FILE_SIZE."""
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)

    async def body(request: web.Request) -> web.StreamResponse:
        return web.Response(body=bomb, headers={"Content-Encoding": "gzip"})

    hostile.routes[("GET", "/models/bomb-0123abcd.pth")] = body
    gate = make_hubgate(torch_upstream=hostile.url)
    answer = http.request("GET", f"{gate.url}/torch/models/bomb-0123abcd.pth")
    assert answer.status in (403, 502), answer
    assert counter(gate, "hubgate_upstream_bytes_total") < 8 * 1024 * 1024
    assert held_files(gate) == []


def test_oversized_names_are_refused_cleanly(make_hubgate, fake_hub: FakeHub) -> None:
    """Attack: very long repo names, revisions, file paths and URLs, and unicode look-alikes. Each is a clean
    4xx (never a 500, never an upstream call with the long name)."""
    _add_model(fake_hub)
    gate = make_hubgate(hf_upstream=fake_hub.url)
    fake_hub.reset_log()
    for path in (
        "/acme/" + "m" * 200 + "/resolve/main/config.json",
        "/acme/model/resolve/" + "r" * 300 + "/config.json",
        "/acme/model/resolve/main/" + "/".join(["d" * 100] * 11) + "/config.json",
        "/acme/model/resolve/main/" + "x" * 7000,
        "/api/models/acme/model/tree/main/" + "p" * 1100,
        "/acme\u2215model/resolve/main/config.json",  # DIVISION SLASH, not '/'
        "/ac%C3%A9me/model/resolve/main/config.json",
    ):
        answer = http.request("GET", gate.url + quote(path, safe="/%"))
        assert 400 <= answer.status < 500, (path[:80], answer.status)
    assert not [r for r in fake_hub.log if len(r.path) > 1000], "a long name reached the upstream"


def test_torch_chunked_gzip_bomb_is_refused_before_inflating(make_hubgate, hostile: HostileHub) -> None:
    """Attack: the same bomb sent chunked (no Content-Length to compare with). hubgate asked for identity:
    a compressed answer is refused outright rather than inflated up to HUBGATE_MAX_FILE_SIZE."""
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)

    async def body(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Encoding": "gzip"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(bomb)
        await resp.write_eof()
        return resp

    hostile.routes[("GET", "/models/chunked-0123abcd.pth")] = body
    gate = make_hubgate(torch_upstream=hostile.url)
    answer = http.request("GET", f"{gate.url}/torch/models/chunked-0123abcd.pth")
    assert answer.status in (403, 502), answer
    assert counter(gate, "hubgate_upstream_bytes_total") < 8 * 1024 * 1024
    assert held_files(gate) == []
