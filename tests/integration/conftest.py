"""A real hubgate server for integration tests, in a background thread with its own event loop.

    def test_x(make_hubgate, fake_hub):
        gate = make_hubgate(hf_upstream=fake_hub.url)          # Settings overrides as keyword arguments
        run_client(snippet, endpoint=gate.url)                  # tests/clients.py: real HF clients
        gate.cli("approve", artifact_id, "--reason", "ok")      # the real CLI in a subprocess (--url added)
        gate.call(store.get_verdict(aid))                       # run a coroutine on the server's loop
        gate.restart()                                          # same data dir and Redis: persistence

The server uses the session's embedded Redis (`redis_url`) with the test's unique key prefix, a temp data
dir, the shipped default policy unless `policy=` is given, and admin token `ADMIN_TOKEN`.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

from proxy.settings import Settings
from proxy.web.app import create_app
from proxy.web.keys import BLOBS, PIPELINE, STORE
from tests.fakes.hf_hub import FakeHub, FakeHubThread

ADMIN_TOKEN = "test-admin-token-0123456789"
REPO_ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


class HubgateThread:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.admin_token = ADMIN_TOKEN
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.app: web.Application | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HubgateThread:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hubgate-test", daemon=True)
        self._thread.start()
        self.call(self._start())
        return self

    async def _start(self) -> None:
        self.app = create_app(self.settings)
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.settings.port or 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        if self._loop is None:
            return
        if self._runner is not None:
            self.call(self._runner.cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(10)
        self._loop.close()
        self._loop = None

    def restart(self) -> HubgateThread:
        port = self.port
        self.stop()
        self.settings = self.settings.model_copy(update={"port": port})
        return self.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        assert self._loop is not None, "server not running"
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    @property
    def store(self) -> Any:
        assert self.app is not None
        return self.app[STORE]

    @property
    def blobs(self) -> Any:
        assert self.app is not None
        return self.app[BLOBS]

    @property
    def pipeline(self) -> Any:
        assert self.app is not None
        return self.app[PIPELINE]

    def cli(self, *args: str, url: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """The real `hubgate` CLI in a subprocess; `--url` is appended for admin commands."""
        argv = [sys.executable, "-m", "proxy", *args]
        if url:
            argv += ["--url", self.url]
        full_env = {**os.environ, "HUBGATE_ADMIN_TOKEN": self.admin_token, "HUBGATE_ADMIN_NAME": "alice"}
        full_env.update(env or {})
        return subprocess.run(argv, capture_output=True, text=True, env=full_env, cwd=REPO_ROOT, timeout=120)


@pytest.fixture
def make_hubgate(tmp_path: Path, redis_url: str, redis_prefix: str) -> Iterator[Any]:
    started: list[HubgateThread] = []

    def make(**overrides: Any) -> HubgateThread:
        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "data_dir": tmp_path / f"data{len(started)}",
            "redis_url": redis_url,
            "redis_prefix": redis_prefix,
            "admin_token": ADMIN_TOKEN,
            "policy": REPO_ROOT / "config" / "policy.toml",
            "hold_seconds": 5.0,
            "scan_workers": 2,
            "scan_timeout": 120.0,
            "log_json": False,
        }
        values.update(overrides)
        gate = HubgateThread(Settings(**values)).start()
        started.append(gate)
        return gate

    yield make
    for gate in started:
        gate.stop()


@pytest.fixture
def fake_hub() -> Iterator[FakeHub]:
    with FakeHubThread() as hub:
        yield hub
