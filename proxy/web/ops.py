"""Operations endpoints: /healthz (503 when Redis is unreachable) and /metrics (Prometheus)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from proxy.web.keys import METRICS, POLICY, SETTINGS, STORE


async def healthz(request: web.Request) -> web.Response:
    redis_ok = await request.app[STORE].ping()
    body = {
        "status": "ok" if redis_ok else "unavailable",
        "redis": redis_ok,
        "policy": request.app[POLICY].current.hash,
        "offline": request.app[SETTINGS].offline,
    }
    return web.json_response(body, status=200 if redis_ok else 503)


async def metrics(request: web.Request) -> web.Response:
    payload = generate_latest(request.app[METRICS].registry)
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup_ops_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
