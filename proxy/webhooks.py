"""Webhook notifications: a JSON POST to every configured URL on each new quarantine or block.

`Notifier.notify` is the pipeline's `on_decision` hook. It only schedules the delivery and returns: the
request that caused the decision never waits for a receiver. Deliveries are retried with exponential
backoff (tenacity); one that still fails is logged and written to the audit stream. Pending deliveries are
kept referenced (so they are not garbage-collected mid-flight) and given a grace period at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from proxy.models import Verdict
from proxy.verdicts import VerdictStore

log = logging.getLogger("hubgate.webhooks")

USER_AGENT = "hubgate-webhook/1"


class DeliveryFailed(Exception):
    """A receiver answered with a non-2xx status (retried like a network error)."""


def payload(verdict: Verdict, console_url: str = "") -> dict[str, Any]:
    """The JSON body: what happened, to which artifact, why, and where an admin can act on it."""
    aid = verdict.artifact_id
    return {
        "event": verdict.status.value,  # "quarantined" or "blocked"
        "artifact_id": aid,
        "ref": verdict.ref.human,
        "source": verdict.source,
        "repo_type": verdict.repo_type.value,
        "repo_id": verdict.repo_id,
        "commit": verdict.commit,
        "path": verdict.path,
        "sha256": verdict.sha256,
        "size": verdict.size,
        "status": verdict.status.value,
        "reasons": verdict.reasons,
        "decided_by": verdict.decided_by,
        "policy_hash": verdict.policy_hash,
        "mode": verdict.mode,
        "ts": time.time(),
        "console": f"{console_url.rstrip('/')}/admin/artifacts/{aid}" if console_url else "",
        "actions": {
            "approve": f"hubgate approve {aid} --reason '...'",
            "reject": f"hubgate reject {aid} --reason '...'",
            "waive": f"hubgate waive {aid} --reason '...' --expires 7d",
        },
    }


class Notifier:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        urls: list[str],
        *,
        store: VerdictStore | None = None,
        attempts: int = 6,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        timeout: float = 10.0,
        console_url: str = "",
    ) -> None:
        self.session = session
        self.urls = list(urls)
        self.store = store
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.console_url = console_url
        self._pending: set[asyncio.Task[None]] = set()
        self.delivered = 0
        self.failed = 0

    async def notify(self, verdict: Verdict) -> None:
        """Schedule one delivery per URL and return at once (the pipeline's on_decision hook)."""
        body = payload(verdict, self.console_url)
        for url in self.urls:
            task = asyncio.create_task(self._deliver(url, body), name=f"webhook:{verdict.artifact_id}")
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _deliver(self, url: str, body: dict[str, Any]) -> None:
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.attempts),
                wait=wait_exponential(multiplier=self.backoff, max=self.max_backoff),
                retry=retry_if_exception_type((aiohttp.ClientError, TimeoutError, DeliveryFailed)),
                reraise=True,
            ):
                with attempt:
                    await self._post(url, body)
            self.delivered += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failed += 1
            log.warning("webhook to %s failed after %d attempts: %s", url, self.attempts, exc)
            if self.store is not None:
                with contextlib.suppress(Exception):
                    await self.store.append_audit(
                        "webhook-failed",
                        "hubgate",
                        artifact_id=str(body.get("artifact_id", "")),
                        url=url,
                        detail=f"{type(exc).__name__}: {exc}",
                    )

    async def _post(self, url: str, body: dict[str, Any]) -> None:
        async with self.session.post(
            url, json=body, timeout=self.timeout, headers={"User-Agent": USER_AGENT}, allow_redirects=False
        ) as resp:
            if not 200 <= resp.status < 300:
                raise DeliveryFailed(f"{url} answered HTTP {resp.status}")

    async def drain(self, grace: float = 5.0) -> None:
        """At shutdown: give pending deliveries `grace` seconds, then cancel the rest."""
        if not self._pending:
            return
        _, late = await asyncio.wait(set(self._pending), timeout=grace)
        for task in late:
            task.cancel()
        if late:
            log.warning("%d webhook deliveries cancelled at shutdown", len(late))
            await asyncio.gather(*late, return_exceptions=True)
