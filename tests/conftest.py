"""Shared fixtures: one real Redis per test session (per xdist worker), a unique key prefix per test.

- `redis_url` (session): `HUBGATE_TEST_REDIS_URL` if set, else an `EmbeddedRedis` in a short temp dir,
  stopped (and its directory removed) when the session ends.
- `redis_prefix` (function): a unique `hgtest:<hex>:` prefix, so tests never see each other's keys; its keys
  are deleted afterwards.
- `verdict_store` (function, async): a connected `proxy.verdicts.VerdictStore` using the two.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio
import redis

from proxy.redis_embedded import EmbeddedRedis

if TYPE_CHECKING:
    from proxy.verdicts import VerdictStore


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    external = os.environ.get("HUBGATE_TEST_REDIS_URL")
    if external:
        yield external
        return
    # /tmp directly, not pytest's tmp_path: AF_UNIX socket paths must stay under ~107 bytes.
    directory = Path(tempfile.mkdtemp(prefix="hgr-", dir="/tmp"))
    server = EmbeddedRedis(directory)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"hgtest:{uuid.uuid4().hex[:12]}:"
    yield prefix
    try:
        client = redis.Redis.from_url(redis_url)
        try:
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()
    except redis.RedisError:
        pass  # a test that stopped its own Redis leaves nothing to clean


@pytest_asyncio.fixture
async def verdict_store(redis_url: str, redis_prefix: str) -> AsyncIterator[VerdictStore]:
    from proxy.verdicts import VerdictStore

    store = await VerdictStore.connect(redis_url, prefix=redis_prefix)
    try:
        yield store
    finally:
        await store.close()
