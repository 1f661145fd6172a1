"""The admin workflow's server-side parts: webhooks, prefetch jobs, and policy reloads (API, SIGHUP, file watch).

Each lives in a cleanup context on the app; `reload_policy` is the one path every reload takes, so a bad file
is always rejected the same way (the old policy stays, the rejection is audited).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from proxy.errors import BadRequest
from proxy.policy import PolicyError
from proxy.vetjobs import VetJobs
from proxy.web.keys import META, PIPELINE, POLICY, SESSION, SETTINGS, STORE, UPSTREAM
from proxy.webhooks import Notifier

log = logging.getLogger("hubgate.workflow")

NOTIFIER = web.AppKey("notifier", Notifier)
VETJOBS = web.AppKey("vetjobs", VetJobs)


async def reload_policy(app: web.Application, actor: str) -> dict[str, Any]:
    """Load the policy file again. A bad file raises BadRequest and the old policy stays in force; both
    outcomes are audited. Stored verdicts are re-decided on next use (their policy hash no longer matches)."""
    state = app[POLICY]
    store = app[STORE]
    try:
        old, new = state.reload()
    except PolicyError as exc:
        log.warning("policy reload rejected (%s): %s", actor, exc)
        await store.append_audit("policy-reload-rejected", actor, error=str(exc), source=str(state.path))
        raise BadRequest(f"hubgate: policy not reloaded, the old one stays in force: {exc}") from exc
    if old.hash != new.hash:
        log.info("policy reloaded (%s): %s -> %s", actor, old.hash, new.hash)
    await store.append_audit("policy-reload", actor, old=old.hash, new=new.hash, source=state.source)
    return {"old": old.hash, "new": new.hash, "source": state.source, "mode": str(new.mode)}


def _stamp(app: web.Application) -> tuple[int, int] | None:
    try:
        st = app[POLICY].path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


async def _watch_policy(app: web.Application, interval: float) -> None:
    """Reload when the policy file's mtime or size changes; a bad edit is rejected once, not every tick."""
    seen = _stamp(app)
    while True:
        await asyncio.sleep(interval)
        now = _stamp(app)
        if now == seen:
            continue
        seen = now
        if now is None:
            # gone (or mid-rename by an editor): keep the policy in force rather than fall back to defaults
            log.warning("policy file %s is missing; keeping the policy in force", app[POLICY].path)
            continue
        try:
            await reload_policy(app, "hubgate:file-watch")
        except BadRequest:
            pass  # logged and audited; the old policy stays
        except Exception:
            log.exception("policy file watch failed")


def _on_sighup(app: web.Application) -> None:
    async def run() -> None:
        with contextlib.suppress(BadRequest):
            await reload_policy(app, "hubgate:SIGHUP")

    task = asyncio.get_running_loop().create_task(run(), name="policy-reload:SIGHUP")
    app[_SIGNAL_TASKS].add(task)
    task.add_done_callback(app[_SIGNAL_TASKS].discard)


_SIGNAL_TASKS = web.AppKey("signal_tasks", set)


async def install_sighup(app: web.Application) -> None:
    """on_startup hook for `hubgate serve` (main thread only): `kill -HUP <pid>` reloads the policy."""
    app[_SIGNAL_TASKS] = set()
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, _on_sighup, app)


async def notifier_ctx(app: web.Application) -> AsyncIterator[None]:
    """Webhooks (HUBGATE_WEBHOOKS, a JSON list of URLs); must run after the HTTP session exists and before
    the pipeline is built (it is the pipeline's on_decision hook)."""
    settings = app[SETTINGS]
    notifier = Notifier(app[SESSION], settings.webhooks, store=app[STORE])
    app[NOTIFIER] = notifier
    try:
        yield
    finally:
        await notifier.drain()


async def workflow_ctx(app: web.Application) -> AsyncIterator[None]:
    """Prefetch jobs and the policy file watch; after the pipeline."""
    settings = app[SETTINGS]
    jobs = VetJobs(
        store=app[STORE],
        meta=app[META],
        pipeline=app[PIPELINE],
        upstream=app[UPSTREAM],
        concurrency=settings.vet_concurrency,
    )
    app[VETJOBS] = jobs
    watch = None
    if settings.policy_watch_seconds > 0:
        watch = asyncio.create_task(_watch_policy(app, settings.policy_watch_seconds), name="policy-watch")
    try:
        yield
    finally:
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        await jobs.close()
