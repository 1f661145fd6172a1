"""The fake Hub's second origin: an S3/CloudFront-like object store serving LFS content by sha256.

Like the real CDN behind `302` LFS redirects: signed, expiring URLs (`Expires` + `Signature` over the
path; a forged or expired URL → `403 AccessDenied`), `400 InvalidArgument` when a request carries
`Authorization` (S3 refuses two auth mechanisms — a proxy must drop the user's token when following the
redirect), `Range` → `206`, an md5 `ETag` (not the Hub's etag). `/xet-cas/...` stands in for the Xet CAS:
it only answers 404, and the request log shows who came.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from urllib.parse import quote, unquote, urlencode

from aiohttp import web

from tests.fakes.hf_faults import Fault, before_answer
from tests.fakes.hf_http import LOG, LoggedRequest, serve_content
from tests.fakes.hf_repos import Repo, RepoFile

FaultLookup = Callable[[web.Request], Fault | None]


def s3_error(status: int, code: str, message: str) -> web.Response:
    xml = '<?xml version="1.0" encoding="UTF-8"?>\n'
    body = f"{xml}<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    return web.Response(status=status, text=body, content_type="application/xml")


class FakeCdn:
    """Content by sha256 plus URL signing; `handler(fault_lookup)` is the aiohttp handler of the origin."""

    def __init__(self) -> None:
        self.url = ""  # set when the origin is listening
        self.ttl = 3600.0  # seconds a signed URL stays valid
        self._blobs: dict[str, bytes] = {}
        self._names: dict[tuple[str, str], tuple[str, str]] = {}  # (repo hash, sha256) → (repo id, path)
        self._secret = secrets.token_bytes(16)

    def store(self, f: RepoFile) -> None:
        self._blobs[f.sha256] = f.content

    def _signature(self, path: str, expires: str) -> str:
        return hmac.new(self._secret, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()[:32]

    def location(self, repo: Repo, f: RepoFile) -> str:
        """A signed absolute URL for `f`, valid `ttl` seconds from now."""
        repo_hash = hashlib.sha256(f"{repo.repo_type}/{repo.repo_id}".encode()).hexdigest()
        self._names[(repo_hash, f.sha256)] = (repo.repo_id, f.path)
        path = f"/repos/{repo_hash[:2]}/{repo_hash[2:4]}/{repo_hash}/{f.sha256}"
        expires = str(int(time.time() + self.ttl))
        name = f.path.rsplit("/", 1)[-1]
        disposition = f"inline; filename*=UTF-8''{quote(name)}; filename=\"{name}\";"
        query = urlencode(
            {
                "response-content-disposition": disposition,
                "Expires": expires,
                "Signature": self._signature(path, expires),
                "Key-Pair-Id": "KFAKEHUBCDN",
            }
        )
        return f"{self.url}{path}?{query}"

    def handler(self, fault_lookup: FaultLookup) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            raw = request.raw_path.split("?", 1)[0]
            segs = [unquote(s) for s in raw.split("/")[1:]]
            if segs[0] == "xet-cas":
                return web.json_response({"error": "fake xet CAS: not implemented"}, status=404)
            if "Authorization" in request.headers:
                return s3_error(
                    400,
                    "InvalidArgument",
                    "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature "
                    "query string parameter or the Authorization header should be specified",
                )
            if len(segs) != 5 or segs[0] != "repos" or request.method not in ("GET", "HEAD"):
                return s3_error(404, "NoSuchKey", "The specified key does not exist.")
            expires, signature = request.query.get("Expires", ""), request.query.get("Signature", "")
            if not hmac.compare_digest(signature, self._signature(raw, expires)):
                return s3_error(403, "AccessDenied", "Invalid signature")
            if not expires.isdigit() or int(expires) < time.time():
                return s3_error(403, "AccessDenied", "Request has expired")
            content = self._blobs.get(segs[4])
            if content is None:
                return s3_error(404, "NoSuchKey", "The specified key does not exist.")
            entry: LoggedRequest = request[LOG]
            entry.repo_id, entry.file = self._names.get((segs[3], segs[4]), (None, None))
            fault = fault_lookup(request)
            if (early := await before_answer(fault)) is not None:
                return early
            headers = {
                "ETag": f'"{hashlib.md5(content).hexdigest()}"',
                "Content-Type": "binary/octet-stream",
                "Content-Disposition": request.query.get("response-content-disposition", "attachment"),
                "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT",
            }
            return await serve_content(request, content, headers, fault, gzip_text=False, path=segs[4])

        return handle
