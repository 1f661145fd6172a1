"""Hub metadata with a memory: revisions, repo info, file metadata and the facts policy reads.

Online, answers come from the upstream and are remembered in Redis (branch resolutions expire, commits never);
offline (`HUBGATE_OFFLINE=1`) only what was remembered is used and the upstream is never contacted.
"""

from __future__ import annotations

import re
import time
from typing import Any, TypeVar
from urllib.parse import quote

from proxy.errors import NotInOfflineCache, UpstreamError, UpstreamStatus
from proxy.hfpaths import api_repo_path
from proxy.models import FileMeta, RepoMeta, RepoType
from proxy.policy import base_models_of, licenses_of
from proxy.upstreams.hf import HfUpstream, status_error
from proxy.verdicts import VerdictStore
from proxy.xet import strip_xet_json

K = TypeVar("K")
V = TypeVar("V")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
MAX_LINEAGE = 4
MEMO_ENTRIES = 2048  # per-commit facts kept in process: they never change, so no replica can see them differ
LOCATION_FRESH_S = 60.0  # signed CDN URLs live much longer; a stale one is replaced by a fresh HEAD


def info_key(repo_type: RepoType, repo_id: str, commit: str) -> str:
    return f"{repo_type.value}:{repo_id}:{commit}"


def offline_refusal(what: str, *, commit: str | None = None) -> NotInOfflineCache:
    headers = {"X-Repo-Commit": commit} if commit else {}
    return NotInOfflineCache(
        f"hubgate (offline): {what} is not in the offline cache; only vetted content can be served here",
        headers=headers,
    )


class HfMetadata:
    def __init__(self, upstream: HfUpstream | None, store: VerdictStore, *, revision_ttl: int, offline: bool) -> None:
        self.upstream = upstream
        self.store = store
        self.revision_ttl = revision_ttl
        self.offline = offline or upstream is None
        self._locations: dict[tuple[str, str, str, str], tuple[str, float]] = {}
        # A commit's info and file metadata are immutable: remembering them in process spares every cache hit
        # two Redis reads and a JSON parse. Revisions and verdicts are still read from Redis on every request.
        self._infos: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._metas: dict[tuple[str, str, str, str], FileMeta] = {}
        self._repos: dict[tuple[str, str, str], RepoMeta] = {}

    def _online(self) -> HfUpstream:
        if self.offline or self.upstream is None:
            raise UpstreamError("hubgate: offline mode: the upstream is never contacted")
        return self.upstream

    async def resolve(self, repo_type: RepoType, repo_id: str, revision: str) -> str:
        """Branch, tag, short or full commit → full commit."""
        if COMMIT_RE.match(revision):
            return revision
        cached = await self.store.get_revision(repo_type.value, repo_id, revision)
        if cached:
            return cached
        if self.offline:
            remembered = await self.store.get_revision_offline(repo_type.value, repo_id, revision)
            if remembered:
                return remembered
            raise UpstreamStatus(
                404,
                f"hubgate (offline): revision {revision!r} of {repo_id} is not in the offline cache",
                error_code="RevisionNotFound",
                headers={"X-Error-Code": "RevisionNotFound"},
            )
        info = await self.fetch_info(repo_type, repo_id, revision)
        return str(info["sha"])

    async def fetch_info(
        self, repo_type: RepoType, repo_id: str, revision: str | None, query: str = ""
    ) -> dict[str, Any]:
        """GET the repo info upstream (Xet stripped), remember the resolution and the info by commit."""
        path = api_repo_path(repo_type, repo_id)
        if revision is not None:
            path += f"/revision/{quote(revision, safe='')}"
        answer = await self._online().request("GET", path + (f"?{query}" if query else ""))
        if answer.status != 200:
            raise status_error(answer.status, answer.headers, answer.body, f"{repo_id} info")
        info = strip_xet_json(answer.json())
        if not isinstance(info, dict) or not isinstance(info.get("sha"), str) or not COMMIT_RE.fullmatch(info["sha"]):
            # artifacts are pinned (and resolutions cached forever) by this value: a branch name, a short sha
            # or text with line breaks here would pin nothing and could reach a header
            raise UpstreamError(f"hubgate: the upstream's info for {repo_id} has no full commit sha")
        commit = info["sha"]
        rev = revision or "main"
        if rev != commit:
            await self.store.set_revision(repo_type.value, repo_id, rev, commit, self.revision_ttl)
        await self.store.set_revision(repo_type.value, repo_id, commit, commit, None)
        if not query:
            await self.store.set_doc("info", info_key(repo_type, repo_id, commit), info)
        return info

    async def info(self, repo_type: RepoType, repo_id: str, commit: str) -> dict[str, Any]:
        key = (repo_type.value, repo_id, commit)
        if key in self._infos:
            return self._infos[key]
        doc = await self.store.get_doc("info", info_key(repo_type, repo_id, commit))
        if not isinstance(doc, dict):
            if self.offline:
                raise offline_refusal(f"{repo_id}@{commit}")
            doc = await self.fetch_info(repo_type, repo_id, commit)
        return _remember(self._infos, key, doc)

    async def file_meta(self, repo_type: RepoType, repo_id: str, commit: str, path: str) -> FileMeta:
        key = (repo_type.value, repo_id, commit, path)
        if key in self._metas:
            return self._metas[key]
        meta = await self.store.get_file_meta(repo_type.value, repo_id, commit, path)
        if meta is not None:
            return _remember(self._metas, key, meta)
        if self.offline:
            raise offline_refusal(f"{repo_id}@{commit[:12]}:{path}", commit=commit)
        head = await self._online().head_file(repo_type, repo_id, commit, path)
        if head.commit != commit:
            # metadata is cached per commit forever: another commit's file must not be pinned as this one's
            raise UpstreamError(
                f"hubgate: asked for {repo_id}@{commit[:12]}:{path}, the upstream answered the file of commit "
                f"{head.commit[:12]}; refusing to fetch what cannot be pinned"
            )
        await self.store.set_file_meta(repo_type.value, repo_id, commit, head.meta)
        if len(self._locations) > 10_000:
            self._locations.clear()
        self._locations[(repo_type.value, repo_id, commit, path)] = (head.download_url, time.monotonic())
        return _remember(self._metas, key, head.meta)

    def recent_location(self, repo_type: RepoType, repo_id: str, commit: str, path: str) -> str | None:
        """The download URL the last metadata HEAD returned, while fresh (saves the fetch a second HEAD)."""
        seen = self._locations.pop((repo_type.value, repo_id, commit, path), None)
        if seen is None or time.monotonic() - seen[1] > LOCATION_FRESH_S:
            return None
        return seen[0]

    async def repo_meta(self, repo_type: RepoType, repo_id: str, commit: str) -> RepoMeta:
        key = (repo_type.value, repo_id, commit)
        if key in self._repos:
            return self._repos[key]
        info = await self.info(repo_type, repo_id, commit)
        repo = repo_meta_from_info(repo_type, repo_id, commit, info)
        bases = base_models_of(repo)
        if not bases:
            return _remember(self._repos, key, repo)  # a function of the commit alone
        # with a lineage, the bases' licenses are read at their current `main`: not memoised
        lineage: dict[str, list[str]] = {}
        for base in bases[:MAX_LINEAGE]:
            lineage[base] = await self._base_licenses(base)
        return repo.model_copy(update={"base_model_licenses": lineage})

    async def _base_licenses(self, base: str) -> list[str]:
        """A base model's licenses; an unreachable base yields [] (policy treats it as missing)."""
        try:
            commit = await self.resolve(RepoType.MODEL, base, "main")
            info = await self.info(RepoType.MODEL, base, commit)
        except (UpstreamStatus, UpstreamError, NotInOfflineCache):
            return []
        return licenses_of(repo_meta_from_info(RepoType.MODEL, base, commit, info))


def repo_meta_from_info(repo_type: RepoType, repo_id: str, commit: str, info: dict[str, Any]) -> RepoMeta:
    card = info.get("cardData")
    siblings = {s.get("rfilename") for s in info.get("siblings") or [] if isinstance(s, dict)}
    if not isinstance(card, dict):
        card = {} if "README.md" in siblings else None
    tags = [t for t in info.get("tags") or [] if isinstance(t, str)]
    gated = info.get("gated", False)
    return RepoMeta(
        repo_type=repo_type,
        repo_id=repo_id,
        commit=commit,
        card_data=card,
        tags=tags,
        gated=gated if isinstance(gated, bool | str) else False,
    )


def _remember(memo: dict[K, V], key: K, value: V) -> V:
    """Keep `value` in a bounded insertion-ordered memo (the oldest entry goes first)."""
    if len(memo) >= MEMO_ENTRIES:
        del memo[next(iter(memo))]
    memo[key] = value
    return value
