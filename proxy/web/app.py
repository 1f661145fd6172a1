"""create_app(settings): the aiohttp application, with every resource owned by a cleanup context."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from proxy.hfmeta import HfMetadata
from proxy.metrics import Metrics
from proxy.pipeline import Pipeline
from proxy.policy_state import PolicyState
from proxy.redis_embedded import EmbeddedRedis
from proxy.scan.pool import ScanPool
from proxy.settings import Settings
from proxy.store import BlobStore
from proxy.upstreams.hf import HfUpstream
from proxy.verdicts import VerdictStore
from proxy.web.admin import setup_admin_routes
from proxy.web.console import setup_console
from proxy.web.hf import setup_hf_routes
from proxy.web.keys import BLOBS, META, METRICS, PIPELINE, POLICY, SESSION, SETTINGS, STORE, UPSTREAM
from proxy.web.middleware import make_middleware
from proxy.web.ops import setup_ops_routes
from proxy.web.torch import setup_torch_routes
from proxy.web.workflow import NOTIFIER, notifier_ctx, workflow_ctx

log = logging.getLogger("hubgate")
REDIS_URL = web.AppKey("redis_url", str)


async def _redis(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    embedded: EmbeddedRedis | None = None
    url = settings.redis_url
    if not url:
        embedded = EmbeddedRedis(settings.redis_dir)
        url = embedded.start()
        log.info("embedded redis started", extra={"url": url})
    app[REDIS_URL] = url
    store = await VerdictStore.connect(url, settings.redis_prefix)
    app[STORE] = store
    try:
        yield
    finally:
        await store.close()
        if embedded is not None:
            embedded.stop()


async def _storage(app: web.Application) -> AsyncIterator[None]:
    blobs = BlobStore(app[SETTINGS].data_dir)
    blobs.startup()  # logs its own summary: leftovers removed, torn files re-verified
    app[BLOBS] = blobs
    yield
    await blobs.drain()


async def _upstream(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=settings.upstream_connect_timeout, sock_read=settings.upstream_read_timeout
    )
    # 1 MiB read buffer: the 64 KiB default pauses the socket every few packets on multi-GB downloads
    session = aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": "hubgate/0.1"}, read_bufsize=1 << 20)
    app[SESSION] = session
    app[UPSTREAM] = None if settings.offline else HfUpstream(session, settings.hf_upstream, settings.hf_token)
    try:
        yield
    finally:
        await session.close()


async def _pipeline(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    scans = ScanPool(workers=settings.scan_workers, timeout=settings.scan_timeout, memory_mb=settings.scan_memory_mb)
    pipeline = Pipeline(
        store=app[STORE],
        blobs=app[BLOBS],
        scans=scans,
        policy=app[POLICY],
        metrics=app[METRICS],
        max_file_size=settings.max_file_size,
        max_concurrent_fetches=settings.max_concurrent_fetches,
        min_free_bytes=settings.min_free_disk_mb * 1024 * 1024,
        offline=settings.offline,
        on_decision=app[NOTIFIER].notify if settings.webhooks else None,
    )
    await scans.warm_up()
    app[PIPELINE] = pipeline
    app[META] = HfMetadata(app[UPSTREAM], app[STORE], revision_ttl=settings.revision_ttl, offline=settings.offline)
    try:
        yield
    finally:
        await pipeline.wait_idle()
        await scans.close()


def create_app(settings: Settings) -> web.Application:
    metrics = Metrics()
    app = web.Application(middlewares=[make_middleware(metrics)], client_max_size=16 * 1024**2)
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[POLICY] = PolicyState(settings.policy)
    app.cleanup_ctx.extend([_redis, _storage, _upstream, notifier_ctx, _pipeline, workflow_ctx])
    setup_ops_routes(app)
    setup_admin_routes(app)
    setup_console(app)
    setup_torch_routes(app)
    setup_hf_routes(app)  # last: its catch-all route must not shadow the others
    return app
