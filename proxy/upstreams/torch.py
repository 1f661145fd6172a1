"""download.pytorch.org: weight names, the hash rule torch applies to them, and streaming their bytes.

torch has no mirror setting; its weight URLs are `https://download.pytorch.org/models/<path>` and the only
integrity check it does is `sha256(file).startswith(<hex>)` where `<hex>` is the first `-([a-f0-9]*)\\.` match
in the cache file name (torch/hub.py:79, 777-782), and only when `check_hash=True`. A name without such a
prefix is never checked (protocol/torch.md §2). hubgate enforces the prefix server-side on every name that has
one and flags the names that have none.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp

from proxy.errors import BadRequest, IntegrityError, UpstreamError, UpstreamStatus
from proxy.models import ArtifactRef, FileMeta, RepoMeta, RepoType

# Exactly torch.hub.HASH_REGEX; `search` semantics, first match wins.
TORCH_HASH_RE = re.compile(r"-([a-f0-9]*)\.")
# A `_<hex8+>.` suffix is how torchvision's quantized names carry a hash torch never checks.
_UNDERSCORE_HASH_RE = re.compile(r"_([a-f0-9]{8,})\.[A-Za-z0-9]+$")
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]{0,199}$")

TORCH_SOURCE = "torch"
TORCH_REPO_ID = "download.pytorch.org"
TORCH_COMMIT = "-"  # weight URLs carry no revision; the name (and its hash prefix) is the version
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class WeightName:
    """A validated `/models/<path>` name and what torch would check about it."""

    path: str  # relative to /models/, e.g. "resnet18-f37072fd.pth" or "quantized/x_fbgemm_16fa66dd.pth"
    basename: str  # torch caches under this (subdirectories are flattened)
    hash_prefix: str | None  # the `-<hex>.` torch checks; None when torch would not check anything
    unchecked_hint: str | None  # a hash-looking `_<hex>.` suffix torch ignores (quantized names)

    @property
    def checked_by_torch(self) -> bool:
        return self.hash_prefix is not None

    @property
    def warning(self) -> str | None:
        """Why this name is flagged, or None: torch skips its own check for names without `-<hex>.`."""
        if self.hash_prefix is not None:
            return None
        return (
            f"{self.basename} has no '-<sha256 prefix>.' in its name, so torch's check_hash"
            " does not verify it; pin its full sha256"
        )


def torch_hash_prefix(file_name: str) -> str | None:
    """The prefix torch would require of sha256(file) for this cache file name, or None (no check).

    An empty match (`x-.pth`) passes trivially in torch; it is treated as "no check" here.
    """
    match = TORCH_HASH_RE.search(file_name)
    if match is None or not match.group(1):
        return None
    return match.group(1)


def parse_weight_path(path: str) -> WeightName:
    """Validate a path under /models/ (raises BadRequest) and derive torch's view of it."""
    if not path or path.startswith("/") or "\\" in path or len(path) > 512:
        raise BadRequest(f"invalid torch weight path {path!r}")
    segments = path.split("/")
    for segment in segments:
        if segment in ("", ".", "..") or not _SEGMENT_RE.match(segment):
            raise BadRequest(f"invalid torch weight path {path!r}: bad segment {segment!r}")
    basename = segments[-1]
    prefix = torch_hash_prefix(basename)
    hint = None
    if prefix is None:
        underscore = _UNDERSCORE_HASH_RE.search(basename)
        hint = underscore.group(1) if underscore else None
    return WeightName(path=path, basename=basename, hash_prefix=prefix, unchecked_hint=hint)


def weight_ref(name: WeightName) -> ArtifactRef:
    """The artifact a weight file is vetted as: one per upstream path (the name is its version)."""
    return ArtifactRef(
        source=TORCH_SOURCE,
        repo_type=RepoType.MODEL,
        repo_id=TORCH_REPO_ID,
        commit=TORCH_COMMIT,
        path=f"models/{name.path}",
    )


def weight_meta(name: WeightName) -> FileMeta:
    """What is known before download: nothing but the name's hash prefix (the pipeline enforces it)."""
    return FileMeta(path=f"models/{name.path}", size=-1, sha256_prefix=name.hash_prefix)


def weight_repo_meta() -> RepoMeta:
    return RepoMeta(repo_type=RepoType.MODEL, repo_id=TORCH_REPO_ID, commit=TORCH_COMMIT)


def weight_url(upstream: str, name: WeightName) -> str:
    return f"{upstream.rstrip('/')}/models/{name.path}"


class HttpSource:
    """A ContentSource streaming one URL (redirects followed; a 4xx is relayed, anything else is a 502)."""

    def __init__(self, session: aiohttp.ClientSession, url: str, *, what: str) -> None:
        self._session = session
        self._url = url
        self._what = what

    @property
    def description(self) -> str:
        return self._url

    @asynccontextmanager
    async def open(self) -> AsyncIterator[AsyncIterator[bytes]]:
        try:
            async with self._session.get(
                self._url, headers={"User-Agent": "hubgate", "Accept-Encoding": "identity"}
            ) as resp:
                if 400 <= resp.status < 500:
                    raise UpstreamStatus(
                        resp.status,
                        f"upstream answered {resp.status} for {self._what}",
                        error_code="EntryNotFound" if resp.status == 404 else None,
                        headers={},
                    )
                if resp.status != 200:
                    raise UpstreamError(f"upstream answered {resp.status} for {self._what} ({self._url})")
                encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
                if encoding not in ("", "identity"):
                    # identity was asked for; a compressed body would be inflated without any size to stop at
                    raise UpstreamError(f"upstream sent {self._what} {encoding}-encoded although identity was asked")
                yield _chunks(resp, self._what)
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"upstream unreachable for {self._what}: {exc}") from exc


async def _chunks(resp: aiohttp.ClientResponse, what: str) -> AsyncIterator[bytes]:
    # Names without a hash prefix have no other length or digest to check, so a cut transfer must raise
    # rather than end quietly: compare with Content-Length when the upstream sent one.
    received = 0
    async for chunk in resp.content.iter_chunked(CHUNK):
        received += len(chunk)
        if resp.content_length is not None and received > resp.content_length:
            # more than the answer promised (a body inflated despite `Accept-Encoding: identity`): stop now,
            # not after writing it all to disk
            raise IntegrityError(f"transfer of {what} is larger than the {resp.content_length} bytes announced")
        yield chunk
    if resp.content_length is not None and received != resp.content_length:
        raise IntegrityError(f"transfer of {what} cut: {received} of {resp.content_length} bytes")
