"""The Hugging Face Hub upstream: API JSON, file metadata (HEAD /resolve), and file byte streams.

Only this module speaks HTTP to the Hub. The upstream token is sent to the Hub's origin only, never to the
CDN a LFS redirect points at (signed object-store URLs reject it), and never appears in logs or answers.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from multidict import CIMultiDict
from pydantic import SecretStr

from proxy.errors import UpstreamError, UpstreamStatus
from proxy.hfpaths import resolve_url_path
from proxy.models import FileMeta, RepoType

MAX_REDIRECTS = 10
MAX_API_BODY = 128 * 1024 * 1024  # an API answer (JSON, error body) larger than this is refused, not buffered
RELAYED_ERROR_HEADERS = ("X-Error-Code", "X-Error-Message", "X-Repo-Commit")
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def normalize_etag(value: str | None) -> str:
    if not value:
        return ""
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"')


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname or "", parts.port


async def read_capped(resp: aiohttp.ClientResponse, what: str, limit: int | None = None) -> bytes:
    """The whole body of a metadata answer, refused once it passes `limit` (an endless or huge answer must not
    exhaust memory)."""
    limit = MAX_API_BODY if limit is None else limit
    if resp.content_length is not None and resp.content_length > limit:
        raise UpstreamError(f"hubgate: the upstream's answer for {what} is larger than {limit} bytes; refused")
    body = bytearray()
    async for chunk in resp.content.iter_any():
        body += chunk
        if len(body) > limit:
            raise UpstreamError(f"hubgate: the upstream's answer for {what} is larger than {limit} bytes; refused")
    return bytes(body)


@dataclass
class UpstreamAnswer:
    status: int
    headers: CIMultiDict[str]
    body: bytes
    url: str

    def json(self) -> Any:
        import json

        return json.loads(self.body)


@dataclass
class FileHead:
    commit: str
    meta: FileMeta
    download_url: str
    headers: dict[str, str] = field(default_factory=dict)


def status_error(answer_status: int, headers: CIMultiDict[str] | Any, body: bytes, what: str) -> Exception:
    """Map an upstream error answer: 4xx are relayed with their X-Error-Code, the rest is a 502."""
    message = headers.get("X-Error-Message") or ""
    if not message and body:
        try:
            import json

            err = json.loads(body).get("error")
            message = err if isinstance(err, str) else ""
        except (ValueError, AttributeError):
            message = ""
    if 400 <= answer_status < 500 and answer_status != 429:
        relayed = {h: headers[h] for h in RELAYED_ERROR_HEADERS if h in headers}
        return UpstreamStatus(
            answer_status,
            message or f"upstream answered {answer_status} for {what}",
            error_code=headers.get("X-Error-Code"),
            headers=relayed,
        )
    return UpstreamError(f"hubgate: upstream answered {answer_status} for {what}; try again later")


class HfUpstream:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: SecretStr | None) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._origin = origin(self.base_url)

    def _scrub(self, headers: Any, body: bytes = b"") -> tuple[CIMultiDict[str], bytes]:
        """An answer with our token masked wherever it quotes it: upstream error messages reach clients."""
        secret = self._token.get_secret_value() if self._token is not None else ""
        if not secret:
            return CIMultiDict(headers), body
        masked = CIMultiDict((k, v.replace(secret, "***")) for k, v in headers.items())
        return masked, body.replace(secret.encode(), b"***")

    def _auth_for(self, url: str) -> dict[str, str]:
        if self._token is None or origin(url) != self._origin:
            return {}
        return {"Authorization": f"Bearer {self._token.get_secret_value()}"}

    async def request(
        self, method: str, path_qs: str, *, data: Any = None, headers: dict[str, str] | None = None
    ) -> UpstreamAnswer:
        """An API call; same-origin redirects (renamed repos) are followed, the token never leaves the Hub."""
        url = self.base_url + path_qs
        for _ in range(MAX_REDIRECTS):
            try:
                async with self.session.request(
                    method,
                    url,
                    data=data,
                    headers={**(headers or {}), **self._auth_for(url)},
                    allow_redirects=False,
                ) as resp:
                    body = await read_capped(resp, path_qs)
                    if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                        target = urljoin(url, resp.headers["Location"])
                        if origin(target) == self._origin:
                            url = target
                            continue
                    answer_headers, body = self._scrub(resp.headers, body)
                    return UpstreamAnswer(resp.status, answer_headers, body, url)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise UpstreamError(
                    f"hubgate: the Hub upstream {self.base_url} is unreachable ({type(exc).__name__}); try again later"
                ) from exc
        raise UpstreamError(f"hubgate: too many redirects from the upstream for {path_qs}")

    async def head_file(self, repo_type: RepoType, repo_id: str, revision: str, path: str) -> FileHead:
        """File metadata as the client would see it: same-origin redirects followed, a CDN redirect read as is."""
        url = self.base_url + resolve_url_path(repo_type, repo_id, revision, path)
        what = f"{repo_id}@{revision}:{path}"
        for _ in range(MAX_REDIRECTS):
            try:
                async with self.session.head(
                    url,
                    headers={"Accept-Encoding": "identity", **self._auth_for(url)},
                    allow_redirects=False,
                ) as resp:
                    headers, _ = self._scrub(resp.headers)
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise UpstreamError(
                    f"hubgate: the Hub upstream {self.base_url} is unreachable ({type(exc).__name__}); try again later"
                ) from exc
            if status in (301, 302, 303, 307, 308) and "Location" in headers:
                target = urljoin(url, headers["Location"])
                if origin(target) == self._origin:
                    url = target
                    continue
                return self._file_head(headers, path, target, what)
            if status >= 400:
                raise status_error(status, headers, b"", what)
            return self._file_head(headers, path, url, what)
        raise UpstreamError(f"hubgate: too many redirects from the upstream for {what}")

    @staticmethod
    def _file_head(headers: CIMultiDict[str], path: str, download_url: str, what: str) -> FileHead:
        commit = headers.get("X-Repo-Commit", "")
        etag = normalize_etag(headers.get("X-Linked-Etag") or headers.get("ETag"))
        size_header = headers.get("X-Linked-Size") or headers.get("Content-Length")
        if not _HEX40.match(commit) or not etag or size_header is None or not size_header.isdigit():
            raise UpstreamError(
                f"hubgate: the upstream's metadata for {what} is incomplete (commit, etag or size missing); "
                "refusing to fetch what cannot be verified"
            )
        size = int(size_header)
        if _HEX64.match(etag):
            meta = FileMeta(path=path, size=size, sha256=etag, lfs=True)
        elif _HEX40.match(etag):
            meta = FileMeta(path=path, size=size, git_oid=etag, lfs=False)
        else:
            raise UpstreamError(f"hubgate: the upstream's etag for {what} is neither a sha256 nor a git blob id")
        return FileHead(commit=commit, meta=meta, download_url=download_url)

    async def open_response(self, url: str, what: str) -> aiohttp.ClientResponse:
        """GET the bytes (a 200 response, not yet read), following redirects by hand so the token is sent
        to the Hub origin only."""
        for _ in range(MAX_REDIRECTS):
            try:
                resp = await self.session.get(url, headers=self._auth_for(url), allow_redirects=False)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise UpstreamError(f"hubgate: download of {what} failed to start ({type(exc).__name__})") from exc
            if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                url = urljoin(url, resp.headers["Location"])
                resp.release()
                continue
            if resp.status != 200:
                try:
                    body = await read_capped(resp, what, limit=1024 * 1024)
                finally:
                    resp.release()
                error_headers, body = self._scrub(resp.headers, body)
                raise status_error(resp.status, error_headers, body, what)
            return resp
        raise UpstreamError(f"hubgate: too many redirects downloading {what}")


async def _chunks(resp: aiohttp.ClientResponse, what: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in resp.content.iter_any():  # whatever arrived; the blob writer batches it
            yield chunk
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise UpstreamError(f"hubgate: download of {what} was cut ({type(exc).__name__}); nothing was kept") from exc


class HfFileSource:
    """ContentSource for one Hub file. The download URL seen by the metadata HEAD is used while fresh (one
    HEAD per file, not two); an expired signed URL is replaced by a fresh HEAD."""

    def __init__(
        self,
        upstream: HfUpstream,
        repo_type: RepoType,
        repo_id: str,
        commit: str,
        path: str,
        *,
        download_url: str | None = None,
    ) -> None:
        self.upstream = upstream
        self.repo_type, self.repo_id, self.commit, self.path = repo_type, repo_id, commit, path
        self.download_url = download_url

    @property
    def description(self) -> str:
        return f"{self.upstream.base_url} {self.repo_id}@{self.commit}:{self.path}"

    @asynccontextmanager
    async def open(self) -> AsyncIterator[AsyncIterator[bytes]]:
        what = f"{self.repo_id}:{self.path}"
        resp: aiohttp.ClientResponse | None = None
        if self.download_url is not None:
            try:
                resp = await self.upstream.open_response(self.download_url, what)
            except UpstreamStatus:
                resp = None  # expired or revoked signature: ask the Hub again
        if resp is None:
            head = await self.upstream.head_file(self.repo_type, self.repo_id, self.commit, self.path)
            resp = await self.upstream.open_response(head.download_url, what)
        try:
            yield _chunks(resp, what)
        finally:
            resp.release()
