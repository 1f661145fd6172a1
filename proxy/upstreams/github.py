"""GitHub, as torch.hub uses it: `owner/repo:ref` specs, ref -> commit pinning, and the zipball archive.

torch.hub validates a ref by paging `GET /repos/{o}/{r}/branches?per_page=100&page=N` (then `/tags`) until
an empty page, matching `name == ref` or `commit.sha.startswith(ref)` (protocol/torch.md §3). hubgate
resolves refs the same way, so a ref torch accepts pins to the same commit, and then vets the archive *of
that commit*: a branch that moves later yields a new artifact, never new bytes under an approved one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import aiohttp

from proxy.errors import BadRequest, UpstreamError, UpstreamStatus
from proxy.models import REPO_ID_RE, ArtifactRef, FileMeta, RepoMeta, RepoType
from proxy.upstreams.torch import HttpSource

GITHUB_SOURCE = "github"
ARCHIVE_PATH = "zipball"  # the artifact is the whole archive at a commit; its id is per (owner, repo, commit)
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_REF_RE = re.compile(r"^[A-Za-z0-9_.+/-]{1,255}$")
SHA_RE = re.compile(r"^[0-9a-f]{40}$")
MAX_PAGES = 50  # 5,000 branches or tags; beyond that the listing is treated as misbehaving
PER_PAGE = 100


@dataclass(frozen=True)
class HubSpec:
    """`owner/repo:ref` as torch.hub parses it."""

    owner: str
    repo: str
    ref: str

    @property
    def repo_id(self) -> str:
        return f"{self.owner}/{self.repo}"

    @property
    def dir_name(self) -> str:
        """torch's hub directory name: `{owner}_{repo}_{ref with / -> _}` (hub.py:283-289)."""
        return f"{self.owner}_{self.repo}_{self.ref.replace('/', '_')}"

    @property
    def trusted_name(self) -> str:
        """The `trusted_list` line torch looks for (`owner_repo`)."""
        return f"{self.owner}_{self.repo}"

    def __str__(self) -> str:
        return f"{self.owner}/{self.repo}:{self.ref}"


def validate_repo(owner: str, repo: str) -> None:
    if not _NAME_RE.match(owner) or not _NAME_RE.match(repo) or not REPO_ID_RE.match(f"{owner}/{repo}"):
        raise BadRequest(f"invalid GitHub repository {owner}/{repo!s}")


def validate_ref(ref: str) -> None:
    if not _REF_RE.match(ref) or ".." in ref or ref.startswith("/") or ref.endswith("/") or "//" in ref:
        raise BadRequest(f"invalid git ref {ref!r}")


def parse_hub_spec(text: str) -> HubSpec:
    """Parse `owner/repo:ref`; the ref is required (an unpinned torch.hub.load probes github.com first)."""
    repo_info, sep, ref = text.partition(":")
    if not sep or not ref:
        raise BadRequest(f"hub repo {text!r} needs a ref: owner/repo:ref (a tag, branch or commit)")
    owner, slash, repo = repo_info.partition("/")
    if not slash or "/" in repo:
        raise BadRequest(f"hub repo {text!r} is not owner/repo:ref")
    validate_repo(owner, repo)
    validate_ref(ref)
    return HubSpec(owner=owner, repo=repo, ref=ref)


def match_ref(ref: str, heads: list[dict[str, Any]]) -> str | None:
    """torch's rule on one listing page: the first head named `ref`, or whose sha starts with it."""
    for head in heads:
        sha = _head_sha(head)
        if head.get("name") == ref or (sha and sha.startswith(ref)):
            return sha
    return None


def _head_sha(head: Any) -> str | None:
    commit = head.get("commit") if isinstance(head, dict) else None
    sha = commit.get("sha") if isinstance(commit, dict) else None
    return sha if isinstance(sha, str) and SHA_RE.match(sha) else None


def archive_ref(owner: str, repo: str, commit: str) -> ArtifactRef:
    return ArtifactRef(
        source=GITHUB_SOURCE,
        repo_type=RepoType.MODEL,
        repo_id=f"{owner}/{repo}",
        commit=commit,
        path=ARCHIVE_PATH,
    )


def archive_meta() -> FileMeta:
    # GitHub publishes no digest for generated archives; the scan and the admin's approval pin the sha256.
    return FileMeta(path=ARCHIVE_PATH, size=-1)


def archive_repo_meta(owner: str, repo: str, commit: str) -> RepoMeta:
    return RepoMeta(repo_type=RepoType.MODEL, repo_id=f"{owner}/{repo}", commit=commit)


class GitHub:
    """The two GitHub hosts torch.hub talks to, behind configurable base URLs."""

    def __init__(self, session: aiohttp.ClientSession, *, web: str, api: str) -> None:
        self._session = session
        self._web = web.rstrip("/")
        self._api = api.rstrip("/")

    async def list_page(self, owner: str, repo: str, kind: str, page: int, per_page: int = PER_PAGE) -> list[Any]:
        """One page of `branches` or `tags` as the API returns it (a JSON list)."""
        if kind not in ("branches", "tags"):
            raise BadRequest(f"unknown listing {kind!r}")
        validate_repo(owner, repo)
        url = f"{self._api}/repos/{owner}/{repo}/{kind}"
        params = {"per_page": str(per_page), "page": str(page)}
        headers = {"Accept": "application/vnd.github+json", "User-Agent": "hubgate"}
        try:
            async with self._session.get(url, params=params, headers=headers) as resp:
                if resp.status == 404:
                    raise UpstreamStatus(
                        404,
                        f"GitHub repository {owner}/{repo} not found",
                        error_code="RepoNotFound",
                        headers={},
                    )
                if resp.status != 200:
                    raise UpstreamError(f"GitHub API answered {resp.status} listing {kind} of {owner}/{repo}")
                body = await resp.json(content_type=None)
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"GitHub API unreachable listing {kind} of {owner}/{repo}: {exc}") from exc
        except ValueError as exc:
            raise UpstreamError(f"GitHub API sent malformed JSON listing {kind} of {owner}/{repo}") from exc
        if not isinstance(body, list):
            raise UpstreamError(f"GitHub API sent a non-list listing {kind} of {owner}/{repo}")
        return body

    async def resolve(self, owner: str, repo: str, ref: str) -> str:
        """Pin `ref` to a commit sha the way torch validates it; a full sha not at any head is taken as is."""
        validate_ref(ref)
        for kind in ("branches", "tags"):
            for page in range(1, MAX_PAGES + 1):
                heads = await self.list_page(owner, repo, kind, page)
                if not heads:
                    break
                sha = match_ref(ref, heads)
                if sha is not None:
                    return sha
            else:
                raise UpstreamError(f"GitHub listing of {kind} of {owner}/{repo} has more than {MAX_PAGES} pages")
        if SHA_RE.match(ref):
            return ref
        raise UpstreamStatus(
            404,
            f"Cannot find {ref} in https://github.com/{owner}/{repo}: not a branch, tag or commit",
            error_code="RevisionNotFound",
            headers={},
        )

    async def tree_status(self, owner: str, repo: str, branch: str) -> int:
        """Status of `/{o}/{r}/tree/{branch}/` (torch probes `main` to pick main or master)."""
        validate_repo(owner, repo)
        validate_ref(branch)
        try:
            async with self._session.get(
                f"{self._web}/{owner}/{repo}/tree/{branch}/",
                allow_redirects=True,
                headers={"User-Agent": "hubgate"},
            ) as resp:
                return resp.status
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"GitHub unreachable for {owner}/{repo}: {exc}") from exc

    def archive(self, owner: str, repo: str, commit: str) -> HttpSource:
        """The zipball of a pinned commit (GitHub 302s to codeload; redirects are followed)."""
        validate_repo(owner, repo)
        if not SHA_RE.match(commit):
            raise BadRequest(f"archive needs a full commit sha, got {commit!r}")
        return HttpSource(
            self._session,
            f"{self._web}/{owner}/{repo}/zipball/{commit}",
            what=f"{owner}/{repo}@{commit[:12]}",
        )
