"""Webhooks: a JSON POST per new quarantine and block, retried with backoff, never delaying the client."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from proxy.models import Verdict, VerdictStatus
from proxy.webhooks import Notifier
from tests.fakes.hf_hub import FakeHub
from tests.integration.http import get_until_done
from tests.integration.test_pipeline_http import NC_CARD, add_model


class Receiver:
    """A local aiohttp webhook receiver in its own thread: fails the first `failures` posts, answers after
    `delay` seconds, records every body."""

    def __init__(self, failures: int = 0, delay: float = 0.0) -> None:
        self.failures = failures
        self.delay = delay
        self.attempts = 0
        self.bodies: list[dict[str, Any]] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def _hook(self, request: web.Request) -> web.Response:
        self.attempts += 1
        body = await request.json()
        await asyncio.sleep(self.delay)
        if self.attempts <= self.failures:
            return web.Response(status=503)
        self.bodies.append(body)
        return web.Response(status=204)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def __enter__(self) -> Receiver:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.runner is not None
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def wait(self, n: int, timeout: float = 15) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.bodies) < n:
            assert time.monotonic() < deadline, f"{len(self.bodies)} of {n} webhooks arrived"
            time.sleep(0.05)
        return self.bodies


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(failures=2, delay=0.5) as r:
        yield r


def test_new_quarantine_and_block_are_posted_with_retries(make_hubgate, fake_hub: FakeHub, receiver) -> None:
    add_model(fake_hub, "acme/nolicense", card=None)
    add_model(fake_hub, "acme/noncommercial", card=NC_CARD)
    gate = make_hubgate(hf_upstream=fake_hub.url, webhooks=[receiver.url])

    # the block is decided on the license alone; its webhook needs >= 3 s (two refused 0.5 s attempts and
    # backoff), so an answer that arrives with nothing delivered yet did not wait for it
    blocked = get_until_done(f"{gate.url}/acme/noncommercial/resolve/main/model.safetensors")
    assert blocked.status == 403 and receiver.bodies == []
    quarantined = get_until_done(f"{gate.url}/acme/nolicense/resolve/main/model.safetensors")
    assert quarantined.status == 403

    bodies = receiver.wait(2)
    assert receiver.attempts == 4  # 2 refused and retried, then both delivered
    by_event = {b["event"]: b for b in bodies}
    assert set(by_event) == {"quarantined", "blocked"}
    q, b = by_event["quarantined"], by_event["blocked"]
    assert q["repo_id"] == "acme/nolicense" and q["path"] == "model.safetensors" and q["status"] == "quarantined"
    assert any("license" in r for r in q["reasons"])
    assert b["repo_id"] == "acme/noncommercial" and any("cc-by-nc-4.0" in r for r in b["reasons"])
    assert q["actions"]["approve"].startswith(f"hubgate approve {q['artifact_id']}")

    # asking again is not news: no second notification
    assert get_until_done(f"{gate.url}/acme/nolicense/resolve/main/model.safetensors").status == 403
    time.sleep(0.8)
    assert len(receiver.bodies) == 2


def test_approved_files_send_nothing(make_hubgate, fake_hub: FakeHub) -> None:
    with Receiver() as r:
        add_model(fake_hub)
        gate = make_hubgate(hf_upstream=fake_hub.url, webhooks=[r.url])
        assert get_until_done(f"{gate.url}/acme/model/resolve/main/model.safetensors").status == 200
        time.sleep(0.5)
        assert r.attempts == 0


async def test_undeliverable_webhook_gives_up_and_is_audited(verdict_store) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/hook"
    verdict = Verdict(
        artifact_id="0123456789ab",
        status=VerdictStatus.BLOCKED,
        sha256="a" * 64,
        size=1,
        repo_id="acme/model",
        commit="b" * 40,
        path="w.bin",
        reasons=["nope (rule scan.critical)"],
    )
    async with aiohttp.ClientSession() as session:
        notifier = Notifier(session, [dead], store=verdict_store, attempts=3, backoff=0.01)
        before = time.monotonic()
        await notifier.notify(verdict)
        assert time.monotonic() - before < 0.05  # scheduling only
        await notifier.drain(grace=5)
    assert notifier.failed == 1 and notifier.delivered == 0
    audit = await verdict_store.read_audit(event="webhook-failed")
    assert len(audit) == 1 and audit[0]["url"] == dead and audit[0]["artifact_id"] == "0123456789ab"
    assert "ClientConnectorError" in audit[0]["detail"] or "Connect" in audit[0]["detail"], json.dumps(audit)
