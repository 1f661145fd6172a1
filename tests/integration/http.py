"""A tiny synchronous HTTP helper for integration tests (no redirects followed, headers and body kept)."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def request(
    method: str, url: str, *, headers: dict[str, str] | None = None, body: bytes | None = None, timeout: float = 60
) -> Answer:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


def get_until_done(url: str, *, attempts: int = 60, **kwargs: Any) -> Answer:
    """GET, retrying while hubgate answers 429 (vetting in progress), as huggingface_hub does."""
    import time

    for _ in range(attempts):
        answer = request("GET", url, **kwargs)
        if answer.status != 429:
            return answer
        time.sleep(0.5)
    return answer
