"""The one interface the vetting pipeline needs from any upstream: a way to stream a file's bytes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Protocol


class ContentSource(Protocol):
    """Streams one file's decoded bytes from an upstream.

    `open()` yields an async iterator of chunks; it raises `proxy.errors.UpstreamError` (or
    `UpstreamStatus` for a 4xx) when the upstream cannot deliver. A transfer that ends early simply
    stops yielding: the pipeline detects the short size and refuses.
    """

    def open(self) -> AbstractAsyncContextManager[AsyncIterator[bytes]]: ...

    @property
    def description(self) -> str:
        """Where the bytes come from, for logs and audit (never contains a token)."""
        ...
