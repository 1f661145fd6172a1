"""Serving vetted bytes: sendfile with the ETag huggingface_hub caches under, and correct Range answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web


class BlobResponse(web.FileResponse):
    """A FileResponse whose ETag is the content's hash (sha256 or git blob id), not mtime-size.

    aiohttp's FileResponse assigns its own ETag while preparing; the property below keeps ours, so the client's
    cache file is named after the content hash exactly as with the real Hub.
    """

    def __init__(self, path: Path, *, etag: str, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self._content_etag = etag
        self.headers["ETag"] = f'"{etag}"'
        self.headers.setdefault("Content-Type", "application/octet-stream")
        # repo files are opaque downloads: a browser opening one (HTML, SVG) from hubgate's origin, where the
        # admin console lives, must neither sniff it into a page nor run its script
        self.headers["X-Content-Type-Options"] = "nosniff"
        self.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"

    @property
    def etag(self) -> Any:
        return super().etag

    @etag.setter
    def etag(self, value: Any) -> None:
        self.headers["ETag"] = f'"{self._content_etag}"'
