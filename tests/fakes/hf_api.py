"""JSON bodies of the fake Hub's `/api/...` answers, built from a `Repo` (pure, no HTTP).

Shapes follow what huggingface_hub 2.4 parses (`ModelInfo`, `DatasetInfo`, `RepoFile`, `RepoFolder`,
`GitRefs`) and what the real Hub sends (shared/protocol/hf.md §2-§3).
"""

from __future__ import annotations

import hashlib
from typing import Any

from tests.fakes.hf_repos import Repo, RepoFile


def _object_id(repo: Repo) -> str:
    # The Hub's `_id` is a Mongo ObjectId: 24 hex digits.
    return hashlib.sha1(f"{repo.repo_type}/{repo.repo_id}".encode()).hexdigest()[:24]


def sibling(f: RepoFile, *, blobs: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"rfilename": f.path}
    if blobs:
        entry["size"] = f.size
        entry["blobId"] = f.oid
        if f.is_lfs:
            entry["lfs"] = {"size": f.size, "sha256": f.sha256, "pointerSize": f.pointer_size}
    return entry


def repo_info(repo: Repo, sha: str, *, blobs: bool = False, expand: list[str] | None = None) -> dict[str, Any]:
    """`GET /api/{type}s/{repo}[/revision/{rev}]`: with `expand`, only `_id`, `id` and those keys."""
    commit = repo.commits[sha]
    card = repo.card(sha)
    info: dict[str, Any] = {
        "_id": _object_id(repo),
        "id": repo.repo_id,
        "author": repo.author(),
        "sha": sha,
        "lastModified": commit.iso_date,
        "createdAt": repo.created.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "private": repo.private,
        "gated": repo.gated,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": repo.hub_tags(sha),
        "siblings": [sibling(f, blobs=blobs) for f in commit.files.values()],
        "usedStorage": sum(f.size for f in commit.files.values()),
    }
    if repo.repo_type == "model":
        info["modelId"] = repo.repo_id
        info["spaces"] = []
        if card:
            for key in ("library_name", "pipeline_tag"):
                if isinstance(card.get(key), str):
                    info[key] = card[key]
    elif repo.repo_type == "dataset":
        info["description"] = ""
    if card is not None:
        info["cardData"] = card
    if expand:
        return {"_id": info["_id"], "id": info["id"], **{k: info[k] for k in expand if k in info}}
    return info


def file_entry(repo: Repo, sha: str, f: RepoFile, *, expand: bool, xet: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "file", "oid": f.oid, "size": f.size, "path": f.path}
    if f.is_lfs:
        entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
        if xet:
            entry["xetHash"] = f.xet_hash
    if expand:
        commit = repo.commits[sha]
        entry["lastCommit"] = {"id": sha, "title": commit.message, "date": commit.iso_date}
        entry["securityFileStatus"] = {
            "status": "safe",
            "avScan": {"status": "safe"},
            "pickleImportScan": {"status": "unscanned", "imports": []},
        }
    return entry


def folder_entry(repo: Repo, sha: str, path: str, *, expand: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "directory", "oid": repo.tree_oid(sha, path), "size": 0, "path": path}
    if expand:
        commit = repo.commits[sha]
        entry["lastCommit"] = {"id": sha, "title": commit.message, "date": commit.iso_date}
    return entry


def tree(repo: Repo, sha: str, path: str, *, recursive: bool, expand: bool, xet: bool) -> list[dict[str, Any]] | None:
    """Entries under `path` ("" = root), directories first then files, or None if `path` is no directory."""
    files = repo.commits[sha].files
    dirs = repo.directories(sha)
    if path and path not in dirs:
        return None
    prefix = f"{path}/" if path else ""

    def wanted(p: str) -> bool:
        return p.startswith(prefix) and (recursive or "/" not in p[len(prefix) :])

    entries = [folder_entry(repo, sha, d, expand=expand) for d in dirs if wanted(d)]
    entries += [file_entry(repo, sha, f, expand=expand, xet=xet) for p, f in files.items() if wanted(p)]
    return entries


def paths_info(repo: Repo, sha: str, paths: list[str], *, expand: bool, xet: bool) -> list[dict[str, Any]]:
    """`POST /paths-info/{rev}`: one entry per existing path, missing paths simply absent."""
    files = repo.commits[sha].files
    dirs = set(repo.directories(sha))
    out = []
    for raw in paths:
        p = raw.strip("/")
        if p in files:
            out.append(file_entry(repo, sha, files[p], expand=expand, xet=xet))
        elif p in dirs:
            out.append(folder_entry(repo, sha, p, expand=expand))
    return out


def refs(repo: Repo, *, include_prs: bool) -> dict[str, Any]:
    """`GET /refs`: branches named `refs/convert/x` are converts, `refs/pr/N` pull requests."""
    branches, converts, prs = [], [], []
    for name, target in sorted(repo.branches.items()):
        if name.startswith("refs/convert/"):
            converts.append({"name": name.removeprefix("refs/convert/"), "ref": name, "targetCommit": target})
        elif name.startswith("refs/pr/"):
            prs.append({"name": name.removeprefix("refs/"), "ref": name, "targetCommit": target})
        else:
            branches.append({"name": name, "ref": f"refs/heads/{name}", "targetCommit": target})
    tags = [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": t} for n, t in sorted(repo.tags.items())]
    out: dict[str, Any] = {"branches": branches, "tags": tags, "converts": converts}
    if include_prs:
        out["pullRequests"] = prs
    return out
