"""The TORCH_HOME mirror: approved weights and hub repos laid out exactly as torch.hub reads them.

Layout (protocol/torch.md §2-3, 7b):

    DIR/hub/checkpoints/<upstream basename>      load_state_dict_from_url(<original URL>) finds it, no network
    DIR/hub/<owner>_<repo>_<ref>/...            torch.hub.load('owner/repo:ref') finds it, no network
    DIR/hub/trusted_list                        `owner_repo` lines, so read-only mounts never prompt
    DIR/hubgate-torch-mirror.json               sidecar manifest: sha256, artifact id, commit, file hashes

torch never re-hashes a cached file (a wrong file under a hash-named cache entry loads silently), so this
module does it: every write lands in a temporary file in the same directory, is hashed while written,
compared with the sha256 hubgate's verdict recorded, fsynced and renamed into place. `verify_mirror`
re-hashes everything later and reports any difference, any file the manifest does not know, and any artifact
whose verdict is no longer approved. This module does no network I/O: its callers hand it streams of
approved bytes (see proxy.torch_command).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from pydantic import BaseModel, Field

from proxy.errors import BadRequest, HubgateError, IntegrityError
from proxy.models import Frozen, VerdictStatus
from proxy.store import fsync_path, sha256_file
from proxy.upstreams.github import HubSpec
from proxy.upstreams.torch import WeightName, torch_hash_prefix

MANIFEST_NAME = "hubgate-torch-mirror.json"
CHUNK = 1024 * 1024
_TMP_PREFIX = ".hubgate-tmp-"


class MirrorError(HubgateError):
    """The mirror cannot be written as asked (bad archive shape, name clash); nothing half-written is left."""


class CheckpointEntry(Frozen):
    basename: str
    path: str  # upstream path under /models/
    sha256: str
    size: int
    artifact_id: str


class HubEntry(Frozen):
    spec: str  # owner/repo:ref as the user pins it
    dir_name: str
    owner: str
    repo: str
    ref: str
    commit: str
    archive_sha256: str
    artifact_id: str
    files: dict[str, str] = Field(default_factory=dict)  # path relative to the repo dir -> sha256


class MirrorManifest(BaseModel):
    version: int = 1
    server: str = ""
    checkpoints: dict[str, CheckpointEntry] = Field(default_factory=dict)  # by basename
    hub: dict[str, HubEntry] = Field(default_factory=dict)  # by dir name
    updated_at: float = 0.0

    @property
    def trusted(self) -> list[str]:
        return sorted({f"{e.owner}_{e.repo}" for e in self.hub.values()})


class CurrentVerdict(Frozen):
    """What hubgate says today about an artifact the mirror holds."""

    status: VerdictStatus
    sha256: str


class Problem(Frozen):
    kind: str  # missing | modified | unmanaged | not-approved | verdict-changed | lookup-failed | manifest
    path: str
    message: str


# A mirror entry -> hubgate's current verdict on it (None: unknown to hubgate).
Lookup = Callable[[CheckpointEntry | HubEntry], CurrentVerdict | None]


@contextlib.contextmanager
def _tmp_file(directory: Path, hint: str) -> Iterator[Path]:
    tmp = directory / f"{_TMP_PREFIX}{hint}.{uuid.uuid4().hex}.partial"
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def _copy_hashed(stream: BinaryIO, dst: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with dst.open("wb") as out:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest(), size


def _atomic_text(path: Path, text: str) -> None:
    with _tmp_file(path.parent, path.name) as tmp:
        tmp.write_text(text)
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    fsync_path(path.parent)


class Mirror:
    """One TORCH_HOME directory and its manifest. Writes are atomic; the manifest is saved after each item."""

    def __init__(self, root: Path, *, server: str = "") -> None:
        self.root = root
        self.hub_dir = root / "hub"
        self.checkpoints_dir = self.hub_dir / "checkpoints"
        self.manifest_path = root / MANIFEST_NAME
        self.manifest = load_manifest(root) if self.manifest_path.exists() else MirrorManifest()
        if server:
            self.manifest.server = server

    def add_checkpoint(self, name: WeightName, stream: BinaryIO, *, sha256: str, artifact_id: str) -> CheckpointEntry:
        """Write `checkpoints/<basename>` from `stream`, which must hash to the approved `sha256`."""
        existing = self.manifest.checkpoints.get(name.basename)
        if existing is not None and existing.path != name.path:
            raise MirrorError(
                f"{name.path} and {existing.path} share the cache name {name.basename}"
                " (torch flattens paths); mirror them into different directories"
            )
        if name.hash_prefix and not sha256.startswith(name.hash_prefix):
            raise IntegrityError(f"{name.path}: approved sha256 {sha256} does not start with {name.hash_prefix}")
        self.checkpoints_dir.mkdir(parents=True, exist_ok=True)
        target = self.checkpoints_dir / name.basename
        with _tmp_file(self.checkpoints_dir, name.basename) as tmp:
            got, size = _copy_hashed(stream, tmp)
            if got != sha256:
                raise IntegrityError(f"{name.path}: received sha256 {got}, hubgate approved {sha256}; not written")
            tmp.chmod(0o644)
            os.replace(tmp, target)
        fsync_path(self.checkpoints_dir)
        entry = CheckpointEntry(
            basename=name.basename, path=name.path, sha256=sha256, size=size, artifact_id=artifact_id
        )
        self.manifest.checkpoints[name.basename] = entry
        self.save()
        return entry

    def add_hub_repo(self, spec: HubSpec, stream: BinaryIO, *, sha256: str, commit: str, artifact_id: str) -> HubEntry:
        """Extract an approved zipball's top folder to `hub/<owner>_<repo>_<ref>` and trust the repo."""
        self.hub_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=self.hub_dir))
        try:
            archive = work / "archive.zip"
            got, _ = _copy_hashed(stream, archive)
            if got != sha256:
                raise IntegrityError(f"{spec}: received archive sha256 {got}, hubgate approved {sha256}; not written")
            tree = work / "tree"
            files = extract_top_folder(archive, tree)
            archive.unlink()
            _swap_dir(tree, self.hub_dir / spec.dir_name, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        entry = HubEntry(
            spec=str(spec),
            dir_name=spec.dir_name,
            owner=spec.owner,
            repo=spec.repo,
            ref=spec.ref,
            commit=commit,
            archive_sha256=sha256,
            artifact_id=artifact_id,
            files=files,
        )
        self.manifest.hub[spec.dir_name] = entry
        self.save()
        return entry

    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.hub_dir.mkdir(parents=True, exist_ok=True)
        # trusted_list first: a repo dir is only ever visible together with its trust line (and no prompt).
        _atomic_text(self.hub_dir / "trusted_list", "".join(f"{t}\n" for t in self.manifest.trusted))
        self.manifest.updated_at = time.time()
        _atomic_text(self.manifest_path, self.manifest.model_dump_json(indent=2) + "\n")


def load_manifest(root: Path) -> MirrorManifest:
    path = root / MANIFEST_NAME
    try:
        return MirrorManifest.model_validate_json(path.read_text())
    except FileNotFoundError:
        raise BadRequest(f"{root} has no {MANIFEST_NAME}: not a hubgate torch mirror") from None
    except ValueError as exc:
        raise MirrorError(f"{path} is not a valid mirror manifest: {exc}") from exc


def _swap_dir(new: Path, target: Path, work: Path) -> None:
    """Put `new` at `target`; an older version is moved aside first and removed after (two renames)."""
    if target.exists():
        os.replace(target, work / "old")
    os.replace(new, target)
    fsync_path(target.parent)


def extract_top_folder(archive: Path, dest: Path) -> dict[str, str]:
    """Extract the zip's first entry (torch's top folder) contents into `dest`; returns relpath -> sha256.

    Stricter than torch: any entry outside the top folder, absolute, with `..`, or a symlink refuses the whole
    archive (MirrorError) rather than being skipped.
    """
    hashes: dict[str, str] = {}
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        if not infos or not infos[0].is_dir() or infos[0].filename.count("/") != 1:
            raise MirrorError(f"{archive.name}: first entry is not a top-level folder as torch expects")
        top = infos[0].filename
        dest.mkdir(parents=True)
        for info in infos[1:]:
            name = info.filename
            rel = name[len(top) :] if name.startswith(top) else None
            parts = PurePosixPath(rel).parts if rel else ()
            if rel is None or name.startswith("/") or "\\" in name or ".." in parts or not parts:
                raise MirrorError(f"archive entry {name!r} is outside the top folder {top!r} or unsafe")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise MirrorError(f"archive entry {name!r} is a symlink; refusing to extract")
            out = dest.joinpath(*parts)
            if info.is_dir():
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src:
                got, _ = _copy_hashed(src, out)  # type: ignore[arg-type]
            out.chmod(0o644)
            hashes["/".join(parts)] = got
    return hashes


def verify_mirror(root: Path, lookup: Lookup | None) -> list[Problem]:
    """Re-hash the mirror against its manifest and (when `lookup` is given) against hubgate's verdicts."""
    manifest = load_manifest(root)
    problems: list[Problem] = []
    hub = root / "hub"
    checkpoints = hub / "checkpoints"
    for entry in manifest.checkpoints.values():
        path = checkpoints / entry.basename
        rel = f"hub/checkpoints/{entry.basename}"
        problems += _check_file(path, rel, entry.sha256)
        prefix = torch_hash_prefix(entry.basename)
        if prefix and not entry.sha256.startswith(prefix):
            problems.append(Problem(kind="manifest", path=rel, message=f"manifest sha256 does not match {prefix}"))
        problems += _check_verdict(lookup, entry, entry.sha256, rel)
    if checkpoints.is_dir():
        for child in sorted(checkpoints.iterdir()):
            if child.name not in manifest.checkpoints:
                problems.append(
                    Problem(kind="unmanaged", path=f"hub/checkpoints/{child.name}", message="not in the manifest")
                )
    for hub_entry in manifest.hub.values():
        repo_dir = hub / hub_entry.dir_name
        rel_dir = f"hub/{hub_entry.dir_name}"
        for rel, sha in sorted(hub_entry.files.items()):
            problems += _check_file(repo_dir / rel, f"{rel_dir}/{rel}", sha)
        if repo_dir.is_dir():
            for path in sorted(repo_dir.rglob("*")):
                rel = path.relative_to(repo_dir).as_posix()
                if rel not in hub_entry.files and not (path.is_dir() and not path.is_symlink()):
                    problems.append(Problem(kind="unmanaged", path=f"{rel_dir}/{rel}", message="not in the manifest"))
        problems += _check_verdict(lookup, hub_entry, hub_entry.archive_sha256, rel_dir)
    if hub.is_dir():
        for child in sorted(hub.iterdir()):
            if child.name in ("checkpoints", "trusted_list") or child.name in manifest.hub:
                continue
            problems.append(
                Problem(
                    kind="unmanaged",
                    path=f"hub/{child.name}",
                    message="not in the manifest (torch trusts it)",
                )
            )
    trusted = hub / "trusted_list"
    lines = [ln.strip() for ln in trusted.read_text().splitlines() if ln.strip()] if trusted.is_file() else []
    for line in sorted(set(lines) - set(manifest.trusted)):
        problems.append(Problem(kind="unmanaged", path="hub/trusted_list", message=f"unexpected trusted repo {line}"))
    return problems


def _check_file(path: Path, rel: str, sha256: str) -> list[Problem]:
    if path.is_symlink() or not path.is_file():
        what = "a symlink" if path.is_symlink() else "missing"
        return [Problem(kind="missing" if not path.is_symlink() else "modified", path=rel, message=f"is {what}")]
    got = sha256_file(path)
    if got != sha256:
        return [Problem(kind="modified", path=rel, message=f"sha256 is {got}, the approved content is {sha256}")]
    return []


def _check_verdict(lookup: Lookup | None, entry: CheckpointEntry | HubEntry, sha256: str, rel: str) -> list[Problem]:
    if lookup is None:
        return []
    artifact_id = entry.artifact_id
    try:
        current = lookup(entry)
    except HubgateError as exc:
        return [Problem(kind="lookup-failed", path=rel, message=f"artifact {artifact_id}: {exc.message}")]
    if current is None:
        return [Problem(kind="not-approved", path=rel, message=f"artifact {artifact_id} is unknown to hubgate")]
    if current.status is not VerdictStatus.APPROVED:
        return [Problem(kind="not-approved", path=rel, message=f"artifact {artifact_id} is now {current.status}")]
    if current.sha256 != sha256:
        return [
            Problem(
                kind="verdict-changed",
                path=rel,
                message=f"artifact {artifact_id} was approved as {current.sha256}, the mirror holds {sha256}",
            )
        ]
    return []
