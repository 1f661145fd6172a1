"""HTTP pieces shared by the fake Hub's two origins: request log entries, errors, Range, file bodies.

`serve_content` answers a file the way the Hub's storage does: `200` with `Content-Length` and
`Accept-Ranges: bytes`, `206` + `Content-Range` for a satisfiable `Range`, `416` + `Content-Range:
bytes */<size>` otherwise, and — when `gzip_text` and the client accepts gzip on a plain GET — a gzip body
with chunked encoding and no Content-Length for text larger than 1 KB (shared/protocol/hf.md §1.6).
"""

from __future__ import annotations

import gzip
import mimetypes
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.hf_faults import Fault, corrupted, send_body

GZIP_MIN_SIZE = 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_REDACTED = frozenset({"authorization", "cookie"})


@dataclass
class LoggedRequest:
    """One request as the fake saw it. Credentials are never recorded, only whether they were sent."""

    origin: str  # "hub" | "cdn"
    method: str
    path: str  # percent-decoded
    raw_path: str  # as sent, without the query
    query: list[tuple[str, str]]
    headers: dict[str, str]
    authorized: bool
    status: int | None = None  # None while in flight
    repo_id: str | None = None
    file: str | None = None  # the repo file this request was about, when known (also for CDN requests)
    cut: bool = False  # the body was cut short by a fault
    response_headers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, origin: str, request: web.Request) -> LoggedRequest:
        return cls(
            origin=origin,
            method=request.method,
            path=request.path,
            raw_path=request.raw_path.split("?", 1)[0],
            query=list(request.query.items()),
            headers={k.lower(): v for k, v in request.headers.items() if k.lower() not in _REDACTED},
            authorized="Authorization" in request.headers,
        )


LOG = web.RequestKey("fake_hub_log", LoggedRequest)  # each request's log entry, set by the middleware


def hub_error(
    status: int,
    message: str,
    *,
    code: str | None = None,
    commit: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> web.Response:
    """An error shaped like the Hub's: `X-Error-Code`, `X-Error-Message` and a JSON `error` body."""
    headers = {"X-Error-Message": message, **(extra or {})}
    if code:
        headers["X-Error-Code"] = code
    if commit:
        headers["X-Repo-Commit"] = commit
    return web.json_response({"error": message}, status=status, headers=headers)


def bearer(request: web.Request) -> str | None:
    value = request.headers.get("Authorization", "")
    return value[7:].strip() if value.lower().startswith("bearer ") else (value or None)


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """Inclusive (start, end) of a single `bytes=` range, or None when unsatisfiable or malformed."""
    m = _RANGE.match(header.strip())
    if not m or (m[1] == "" and m[2] == ""):
        return None
    if m[1] == "":  # suffix: the last N bytes
        n = int(m[2])
        return (max(0, size - n), size - 1) if n > 0 and size > 0 else None
    start = int(m[1])
    end = min(int(m[2]), size - 1) if m[2] else size - 1
    return (start, end) if start <= end and start < size else None


def is_text(path: str, content: bytes) -> bool:
    guessed = mimetypes.guess_type(path)[0] or ""
    if guessed.startswith("text/") or guessed.endswith(("json", "xml", "yaml", "javascript")):
        return True
    try:
        content[:4096].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\0" not in content[:4096]


def content_type(path: str, content: bytes) -> str:
    guessed = mimetypes.guess_type(path)[0]
    if guessed:
        return f"{guessed}; charset=utf-8" if guessed.startswith("text/") else guessed
    return "text/plain; charset=utf-8" if is_text(path, content) else "application/octet-stream"


async def serve_content(
    request: web.Request,
    content: bytes,
    headers: Mapping[str, str],
    fault: Fault | None,
    *,
    gzip_text: bool,
    path: str,
) -> web.StreamResponse:
    size = len(content)
    out = {"Accept-Ranges": "bytes", **headers}
    range_header = request.headers.get("Range")
    if range_header is not None:
        span = parse_range(range_header, size)
        if span is None:
            return web.Response(status=416, headers={**out, "Content-Range": f"bytes */{size}"})
        start, end = span
        out["Content-Range"] = f"bytes {start}-{end}/{size}"
        return await send_body(request, 206, out, content[start : end + 1], fault)
    accepts_gzip = "gzip" in request.headers.get("Accept-Encoding", "")
    if gzip_text and request.method == "GET" and accepts_gzip and size > GZIP_MIN_SIZE and is_text(path, content):
        out["Content-Encoding"] = "gzip"
        out["Vary"] = "Accept-Encoding"
        if fault is not None and fault.corrupt:
            content = corrupted(content)  # corrupt the file, not the gzip stream
        body = gzip.compress(content, compresslevel=1, mtime=0)
        return await send_body(request, 200, out, body, fault, chunked=True, corrupt=False)
    return await send_body(request, 200, out, content, fault)
