"""A small synchronous client for the admin API, used by the CLI (`--url`, token from HUBGATE_ADMIN_TOKEN)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlencode

from proxy.errors import HubgateError, Unauthorized


class AdminClient:
    def __init__(
        self, url: str, token: str | None = None, *, admin_name: str | None = None, timeout: float = 30
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token if token is not None else os.environ.get("HUBGATE_ADMIN_TOKEN")
        self.admin_name = admin_name or os.environ.get("HUBGATE_ADMIN_NAME") or os.environ.get("USER") or "admin"
        self.timeout = timeout

    def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, query: dict[str, Any] | None = None
    ) -> Any:
        if not self.token:
            raise Unauthorized("hubgate: set HUBGATE_ADMIN_TOKEN to the server's admin token")
        url = self.url + path + (f"?{urlencode({k: v for k, v in query.items() if v is not None})}" if query else "")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("X-Hubgate-Admin", self.admin_name)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            message = exc.headers.get("X-Error-Message") or f"HTTP {exc.code} from {url}"
            err = HubgateError(message)
            err.status = exc.code
            raise err from None
        except (urllib.error.URLError, OSError) as exc:
            raise HubgateError(
                f"hubgate: cannot reach the server at {self.url} ({exc}); is `hubgate serve` running?"
            ) from exc

    def artifact_path(self, id_or_ref: str) -> str:
        return f"/admin/api/artifacts/{quote(id_or_ref, safe='')}"
