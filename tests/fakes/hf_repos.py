"""The fake Hub's data: repos, commits, branches, tags and files, with the Hub's real hashes.

Pure Python, no I/O: `tests/fakes/hf_hub.py` serves it over HTTP. What it reproduces from the Hub
(see shared/protocol/hf.md §1.4):

- a small (git) file's `oid` is its git blob sha1, `sha1(b"blob <size>\\0" + content)`;
- an LFS file's `oid` is the git blob sha1 of its *pointer* text, its `lfs.oid` the sha256 of the content;
- a file is LFS when `.gitattributes` marks it `filter=lfs` or when it is larger than the threshold;
- commits are deterministic 40-hex shas (same inputs, same sha), so tests can compute expectations;
- a README.md with YAML front matter becomes `cardData`, and its `license` becomes a `license:<id>` tag.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

LFS_THRESHOLD = 10 * 1024 * 1024  # the Hub refuses plain git files above 10 MB
EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)

# The Hub's default .gitattributes for new model repos (abridged), plus the weight formats the brief lists.
_DEFAULT_LFS = (
    "*.7z *.arrow *.bin *.bz2 *.ckpt *.ftz *.gguf *.gz *.h5 *.joblib *.lfs.* *.mlmodel *.model *.msgpack "
    "*.npy *.npz *.onnx *.ot *.parquet *.pb *.pickle *.pkl *.pt *.pth *.rar *.safetensors saved_model/**/* "
    "*.tar.* *.tar *.tflite *.tgz *.wasm *.xz *.zip *.zst *tfevents*"
)
DEFAULT_LFS_PATTERNS = tuple(_DEFAULT_LFS.split())


def default_gitattributes() -> bytes:
    return "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in DEFAULT_LFS_PATTERNS).encode()


def git_blob_sha1(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def lfs_patterns(gitattributes: bytes) -> list[str]:
    """Patterns of the lines that carry `filter=lfs` (comments and other attributes ignored)."""
    patterns = []
    for line in gitattributes.decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) >= 2 and not parts[0].startswith("#") and "filter=lfs" in parts[1:]:
            patterns.append(parts[0])
    return patterns


def matches_gitattributes(path: str, pattern: str) -> bool:
    # git: a pattern without "/" matches the basename at any depth; with "/" it matches from the root.
    if "/" not in pattern:
        return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], pattern)
    return fnmatch.fnmatchcase(path, pattern.lstrip("/").replace("**/", "*"))


def parse_card(readme: bytes) -> dict[str, Any] | None:
    """The YAML front matter of a README.md, as the Hub serves it in `cardData` (None if absent)."""
    text = readme.decode("utf-8", "replace")
    if not text.startswith("---"):
        return None
    end = text.find("\n---", 3)
    if end < 0:
        return None
    data = yaml.safe_load(text[3:end])
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class RepoFile:
    """One file as stored at one commit."""

    path: str
    content: bytes
    is_lfs: bool
    sha256: str
    oid: str  # git blob sha1 of the content, or of the LFS pointer for LFS files
    pointer_size: int

    @classmethod
    def make(cls, path: str, content: bytes, is_lfs: bool) -> RepoFile:
        sha256 = hashlib.sha256(content).hexdigest()
        if is_lfs:
            pointer = lfs_pointer(sha256, len(content))
            return cls(path, content, True, sha256, git_blob_sha1(pointer), len(pointer))
        return cls(path, content, False, sha256, git_blob_sha1(content), 0)

    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def etag(self) -> str:
        """What the Hub puts in ETag / X-Linked-Etag (unquoted): sha256 for LFS, git sha1 otherwise."""
        return self.sha256 if self.is_lfs else self.oid

    @property
    def xet_hash(self) -> str:
        # Not a real Xet merkle hash: only its presence matters to clients and to the proxy's stripping.
        return hashlib.sha256(b"xet:" + self.content).hexdigest()


@dataclass(frozen=True)
class Commit:
    sha: str
    parent: str | None
    message: str
    date: dt.datetime
    files: Mapping[str, RepoFile]

    @property
    def iso_date(self) -> str:
        return self.date.strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class Repo:
    """A repo: commits by sha, branches and tags by name (values are commit shas)."""

    repo_type: str  # "model" | "dataset" | "space"
    repo_id: str
    private: bool = False
    gated: bool | str = False  # False | "auto" | "manual", as in the Hub's JSON
    lfs_threshold: int = LFS_THRESHOLD
    extra_tags: list[str] = field(default_factory=list)
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    created: dt.datetime = EPOCH

    @property
    def key(self) -> tuple[str, str]:
        return (self.repo_type, self.repo_id)

    # -- writing ------------------------------------------------------------------------------------------
    def commit(
        self,
        changes: Mapping[str, bytes | None],
        *,
        branch: str = "main",
        message: str | None = None,
        parent: str | None = None,
    ) -> str:
        """Apply `changes` (None deletes a path) on top of `branch` (or `parent`); returns the new sha."""
        parent = parent or self.branches.get(branch)
        contents: dict[str, bytes] = {}
        if parent is not None:
            contents = {p: f.content for p, f in self.commits[parent].files.items()}
        for path, content in changes.items():
            if content is None:
                contents.pop(path, None)
            else:
                contents[path.strip("/")] = content
        patterns = lfs_patterns(contents.get(".gitattributes", b""))
        files = {
            path: RepoFile.make(
                path,
                content,
                path != ".gitattributes"
                and (len(content) > self.lfs_threshold or any(matches_gitattributes(path, p) for p in patterns)),
            )
            for path, content in sorted(contents.items())
        }
        message = message or f"Upload {len(changes)} file(s)"
        digest = hashlib.sha1(f"{self.repo_type}/{self.repo_id}\n{parent}\n{message}\n".encode())
        for path, f in files.items():
            digest.update(f"{path}\0{f.oid}\n".encode())
        sha = digest.hexdigest()
        date = EPOCH + dt.timedelta(minutes=len(self.commits) + 1)
        self.commits[sha] = Commit(sha, parent, message, date, files)
        self.branches[branch] = sha
        return sha

    # -- reading ------------------------------------------------------------------------------------------
    def resolve(self, revision: str) -> str | None:
        """Commit sha for a branch, tag, `refs/heads/x`, `refs/tags/x`, full or short (>= 7) sha."""
        for prefix, table in (("refs/heads/", self.branches), ("refs/tags/", self.tags)):
            if revision.startswith(prefix) and revision[len(prefix) :] in table:
                return table[revision[len(prefix) :]]
        if revision in self.branches:
            return self.branches[revision]
        if revision in self.tags:
            return self.tags[revision]
        if revision in self.commits:
            return revision
        if 7 <= len(revision) < 40 and all(c in "0123456789abcdef" for c in revision):
            found = [sha for sha in self.commits if sha.startswith(revision)]
            if len(found) == 1:
                return found[0]
        return None

    def directories(self, sha: str) -> list[str]:
        dirs: set[str] = set()
        for path in self.commits[sha].files:
            parts = path.split("/")[:-1]
            dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        return sorted(dirs)

    def tree_oid(self, sha: str, directory: str) -> str:
        prefix = directory + "/"
        digest = hashlib.sha1(b"tree\0")
        for path, f in self.commits[sha].files.items():
            if path.startswith(prefix):
                digest.update(f"{path}\0{f.oid}\n".encode())
        return digest.hexdigest()

    def card(self, sha: str) -> dict[str, Any] | None:
        readme = self.commits[sha].files.get("README.md")
        return parse_card(readme.content) if readme else None

    def hub_tags(self, sha: str) -> list[str]:
        """The `tags` list of /api info: card tags, library, license:<id>, plus extra tags."""
        card = self.card(sha) or {}
        tags: list[str] = []
        if isinstance(card.get("library_name"), str):
            tags.append(card["library_name"])
        card_tags = card.get("tags")
        if isinstance(card_tags, list):
            tags += [str(t) for t in card_tags]
        if isinstance(card.get("pipeline_tag"), str):
            tags.append(card["pipeline_tag"])
        licenses = card.get("license")
        for lic in licenses if isinstance(licenses, list) else [licenses] if licenses else []:
            tags.append(f"license:{lic}")
        tags += self.extra_tags
        tags.append("region:us")
        return list(dict.fromkeys(tags))

    def author(self) -> str | None:
        return self.repo_id.split("/")[0] if "/" in self.repo_id else None
