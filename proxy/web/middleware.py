"""The one place errors become HTTP responses; one log line and one metric per request."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from proxy.errors import HubgateError, VettingInProgress
from proxy.metrics import Metrics

log = logging.getLogger("hubgate.access")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_UNSAFE_HEADER_CHARS = re.compile(r"[^\x20-\x7e]")


def ascii_header(text: str, limit: int = 2000) -> str:
    """Header values must be ASCII on one line; clients show X-Error-Message verbatim."""
    return _UNSAFE_HEADER_CHARS.sub("?", text)[:limit]


def error_response(exc: HubgateError) -> web.Response:
    message = exc.message
    headers = {k: ascii_header(v) for k, v in exc.headers.items()}
    headers["X-Error-Message"] = ascii_header(message)
    if exc.error_code:
        headers["X-Error-Code"] = ascii_header(exc.error_code, 100)  # may be relayed from the upstream
    return web.Response(
        status=exc.status,
        body=json.dumps({"error": message}).encode(),
        content_type="application/json",
        headers=headers,
    )


def route_label(request: web.Request) -> str:
    path = request.path
    if path.startswith("/api/"):
        return "api"
    if path.startswith("/admin"):
        return "admin"
    if path.startswith("/torch/"):
        return "torch"
    if "/resolve/" in path:
        return "resolve"
    return "other"


def make_middleware(metrics: Metrics) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = uuid.uuid4().hex
        started = time.monotonic()
        response: web.StreamResponse
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            # a plain response (aiohttp deprecates returning exception objects); redirects keep Location
            response = web.Response(status=exc.status, reason=exc.reason, headers=exc.headers, body=exc.body)
        except HubgateError as exc:
            response = error_response(exc)
            if not isinstance(exc, VettingInProgress) and exc.status >= 500:
                log.warning("refused %s %s: %s", request.method, request.path, exc.message)
        except Exception:
            log.exception("internal error on %s %s", request.method, request.path)
            response = error_response(
                HubgateError(f"hubgate: internal error (request {request_id}); nothing was served, see the server log")
            )
        response.headers["X-Request-Id"] = request_id
        label = route_label(request)
        metrics.requests.labels(label, str(response.status)).inc()
        log.info(
            "request",
            extra={
                "request_id": request_id,
                "method": request.method,
                "path": request.path,
                "status": response.status,
                "ms": round(1000 * (time.monotonic() - started), 1),
            },
        )
        return response

    return middleware
