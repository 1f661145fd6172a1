"""Parse Hugging Face URL paths (pure): which repo, revision and file a request names, and validate them.

The client percent-encodes the revision as one segment (`refs%2Fpr%2F1`) and keeps `/` in file paths, so
parsing works on the *raw* path: split on `/`, then decode each segment.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote

from proxy.errors import BadRequest
from proxy.models import REPO_ID_RE, RepoType

URL_PREFIX = {RepoType.MODEL: "", RepoType.DATASET: "datasets/", RepoType.SPACE: "spaces/"}
_PREFIX_TO_TYPE = {"datasets": RepoType.DATASET, "spaces": RepoType.SPACE}
API_TYPES = {"models": RepoType.MODEL, "datasets": RepoType.DATASET, "spaces": RepoType.SPACE}
API_ACTIONS = frozenset({"revision", "tree", "paths-info", "refs", "xet-read-token", "xet-write-token", "commits"})
MAX_PATH_LENGTH = 1024


@dataclass(frozen=True)
class ResolveTarget:
    repo_type: RepoType
    repo_id: str
    revision: str
    path: str


@dataclass(frozen=True)
class ApiTarget:
    repo_type: RepoType
    repo_id: str
    action: str  # "" (repo info), revision, tree, paths-info, refs, xet-read-token, ...
    revision: str | None
    path: str  # tree sub-path, "" otherwise


def _segments(raw_path: str) -> list[str]:
    parts = raw_path.strip("/").split("/")
    return [unquote(p) for p in parts]


def validate_repo_id(repo_id: str) -> str:
    if not REPO_ID_RE.match(repo_id) or ".." in repo_id or "--" in repo_id:
        raise BadRequest(
            f"hubgate: malformed repo id {repo_id!r}: expected 'org/name' of letters, digits, '-', '_', '.'"
        )
    return repo_id


def validate_revision(revision: str) -> str:
    bad = not revision or len(revision) > 256 or any(c in revision for c in "\0\\ ") or ".." in revision
    if bad:
        raise BadRequest(f"hubgate: malformed revision {revision!r}")
    return revision


def validate_file_path(path: str) -> str:
    """Refuse traversal and odd names before they reach the upstream, the cache or a log."""
    if not path or len(path) > MAX_PATH_LENGTH:
        raise BadRequest("hubgate: malformed file path: empty or longer than 1024 characters")
    if path.startswith("/") or "\\" in path or "\0" in path:
        raise BadRequest(f"hubgate: malformed file path {path!r}: absolute paths, backslashes and NUL are refused")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise BadRequest(f"hubgate: malformed file path {path!r}: empty, '.' and '..' segments are refused")
    return path


def parse_resolve(raw_path: str) -> ResolveTarget | None:
    """`/[datasets/]{repo}/resolve/{rev}/{path}` → target; None when the path is not a resolve URL."""
    segs = _segments(raw_path)
    repo_type = RepoType.MODEL
    if segs and segs[0] in _PREFIX_TO_TYPE and "resolve" in segs[1:4]:
        repo_type = _PREFIX_TO_TYPE[segs[0]]
        segs = segs[1:]
    if len(segs) >= 4 and segs[2] == "resolve":
        repo_id, rest = f"{segs[0]}/{segs[1]}", segs[3:]
    elif len(segs) >= 3 and segs[1] == "resolve":
        repo_id, rest = segs[0], segs[2:]
    else:
        return None
    if len(rest) < 2:
        raise BadRequest("hubgate: malformed resolve URL: expected /{repo}/resolve/{revision}/{path}")
    return ResolveTarget(
        repo_type=repo_type,
        repo_id=validate_repo_id(repo_id),
        revision=validate_revision(rest[0]),
        path=validate_file_path("/".join(rest[1:])),
    )


def parse_api(type_segment: str, raw_rest: str) -> ApiTarget:
    """`/api/{type}s/{repo}[/{action}[/{rev}[/{path}]]]` → target."""
    repo_type = API_TYPES.get(type_segment)
    if repo_type is None:
        raise BadRequest(f"hubgate: unknown repo type {type_segment!r}")
    segs = _segments(raw_rest)
    if len(segs) >= 3 and segs[2] in API_ACTIONS:
        repo_len = 2
    elif len(segs) >= 2 and segs[1] in API_ACTIONS:
        repo_len = 1
    elif len(segs) <= 2:
        repo_len = len(segs)
    else:
        raise BadRequest(f"hubgate: unsupported API path /api/{type_segment}/{raw_rest}")
    repo_id = validate_repo_id("/".join(segs[:repo_len]))
    rest = segs[repo_len:]
    action = rest[0] if rest else ""
    revision = validate_revision(rest[1]) if len(rest) >= 2 else None
    path = "/".join(rest[2:])
    if path:
        validate_file_path(path)
    return ApiTarget(repo_type=repo_type, repo_id=repo_id, action=action, revision=revision, path=path)


def resolve_url_path(repo_type: RepoType, repo_id: str, revision: str, path: str) -> str:
    """The upstream URL path for a file, encoded as huggingface_hub encodes it."""
    return f"/{URL_PREFIX[repo_type]}{repo_id}/resolve/{quote(revision, safe='')}/{quote(path)}"


def api_repo_path(repo_type: RepoType, repo_id: str) -> str:
    return f"/api/{repo_type.value}s/{repo_id}"
