"""Fault injection for the fake Hub, and the one function that sends file bytes (where faults apply).

A `Fault` matches requests by origin ("hub", "cdn" or "any"), method and a substring of the decoded path,
fires `times` times (None = forever) and then disarms. What it does, in order: wait `delay` seconds;
answer `status` (a 5xx, say) instead of the content; otherwise send the content — with the bytes
corrupted (same size, different hash) if `corrupt`, `chunk_delay` seconds between `chunk_size` chunks
(slow drip), and the connection closed after `cut_after` bytes (a cut transfer).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web

DEFAULT_CHUNK = 256 * 1024
CUT = web.RequestKey("fake_hub_cut", bool)  # set on requests whose body a fault cut short


@dataclass
class Fault:
    path_contains: str = ""
    methods: tuple[str, ...] = ("GET",)
    origin: str = "any"
    times: int | None = None
    delay: float = 0.0
    status: int | None = None
    corrupt: bool = False
    cut_after: int | None = None
    chunk_delay: float = 0.0
    chunk_size: int = DEFAULT_CHUNK
    fired: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def matches(self, origin: str, method: str, path: str) -> bool:
        return (
            self.origin in ("any", origin)
            and method in self.methods
            and self.path_contains in path
            and (self.times is None or self.fired < self.times)
        )

    def take(self, origin: str, method: str, path: str) -> bool:
        """Atomically check and count one firing (faults are set from test threads)."""
        with self._lock:
            if not self.matches(origin, method, path):
                return False
            self.fired += 1
            return True


def corrupted(body: bytes) -> bytes:
    """Same size, different content: flips every bit of the middle byte (and the first, if tiny)."""
    if not body:
        return body
    data = bytearray(body)
    data[len(data) // 2] ^= 0xFF
    return bytes(data)


async def before_answer(fault: Fault | None) -> web.Response | None:
    """Apply the delay; return the error answer if the fault replaces the content with a status."""
    if fault is None:
        return None
    if fault.delay:
        await asyncio.sleep(fault.delay)
    if fault.status is not None:
        text = f"fake hub: injected error {fault.status}"
        return web.json_response({"error": text}, status=fault.status, headers={"X-Error-Message": text})
    return None


async def send_body(
    request: web.Request,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    fault: Fault | None,
    *,
    chunked: bool = False,
    corrupt: bool = True,
) -> web.StreamResponse:
    """Stream `body` (HEAD: headers only), honouring the fault. `chunked` omits Content-Length;
    `corrupt=False` when the caller already corrupted the content (before compressing it)."""
    if fault is not None and fault.corrupt and corrupt:
        body = corrupted(body)
    if request.method == "HEAD":
        head = web.Response(status=status, headers=headers)
        if not chunked:
            head.headers["Content-Length"] = str(len(body))
        return head
    resp = web.StreamResponse(status=status, headers=headers)
    if chunked:
        resp.enable_chunked_encoding()
    else:
        resp.content_length = len(body)
    await resp.prepare(request)
    chunk = fault.chunk_size if fault is not None else DEFAULT_CHUNK
    limit = len(body)
    if fault is not None and fault.cut_after is not None:
        limit = min(limit, fault.cut_after)
    view = memoryview(body)
    for start in range(0, limit, chunk):
        if start and fault is not None and fault.chunk_delay:
            await asyncio.sleep(fault.chunk_delay)  # between chunks: a slow drip
        await resp.write(view[start : min(start + chunk, limit)])
    if limit < len(body):
        # A cut: flush what was written, then drop the connection mid-body.
        # Returning (not raising) keeps aiohttp from logging a traceback for a cut we made on purpose.
        request[CUT] = True
        transport = request.transport
        if transport is not None:
            transport.close()
        return resp
    await resp.write_eof()
    return resp
