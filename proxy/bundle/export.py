"""Export: gather approved snapshots from Redis and the blob store, then stream a signed bundle.

Two steps, so the slow part never holds Redis state open:
1. `plan_export(store, selection, blob_path=...)` (async, reads Redis): resolves each `REPO[@REV]` to a
   commit, keeps the approved verdicts only, collects the metadata offline serving needs (revisions, info,
   tree, refs and paths-info documents, file metadata, scan reports), builds each snapshot's ML-BOM and the
   manifest. Anything not approved is listed in `plan.skipped`, never exported; nothing approved fails.
2. `write_bundle(plan, key, out)` (sync, streaming): signs the manifest and writes the tar to `<out>.partial`,
   verifying every blob's size and sha256 while copying, then renames it into place. A failure leaves no file.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from proxy.bundle import signing
from proxy.bundle.archive import BundleWriter, Progress
from proxy.bundle.bom import build_bom
from proxy.bundle.manifest import (
    COMMIT_RE,
    DocRecord,
    Manifest,
    Member,
    MemberKind,
    Snapshot,
    SnapshotMetadata,
    approval_from_verdict,
    blob_member_name,
    manifest_bytes,
    metadata_bytes,
)
from proxy.models import REPO_ID_RE, FileMeta, RepoType, ScanReport, Verdict, VerdictStatus
from proxy.verdicts import VerdictStore

TORCH_SOURCE = "torch"
TORCH_REPO_ID = "download.pytorch.org"
TORCH_COMMIT = "-"
MAX_TREE_PAGES = 10_000  # a loop guard for a corrupt `next` chain, far above any real repo
_TYPE_PREFIXES = {"models/": RepoType.MODEL, "datasets/": RepoType.DATASET, "spaces/": RepoType.SPACE}


class ExportError(Exception):
    """The selection cannot be exported (unknown repo or revision, nothing approved, missing bytes)."""


@dataclass(frozen=True)
class RepoSpec:
    repo_type: RepoType
    repo_id: str
    revision: str


def parse_repo_spec(text: str) -> RepoSpec:
    """`org/name`, `org/name@rev`, `datasets/org/name@rev` (a `models/` prefix is accepted too)."""
    repo_type = RepoType.MODEL
    for prefix, kind in _TYPE_PREFIXES.items():
        if text.startswith(prefix):
            repo_type, text = kind, text[len(prefix) :]
            break
    repo_id, _, revision = text.partition("@")
    if not REPO_ID_RE.match(repo_id):
        raise ExportError(f"{repo_id!r} is not a repo id (expected org/name, optionally @revision)")
    return RepoSpec(repo_type, repo_id, revision or "main")


def torch_path(name: str) -> str:
    """A torch weight name, `/models/...` path or download.pytorch.org URL → its artifact path."""
    rel = re.sub(r"^https?://[^/]+", "", name.strip()).lstrip("/")
    rel = rel.removeprefix("models/")
    if not rel or ".." in rel.split("/"):
        raise ExportError(f"{name!r} is not a torch weight name")
    return f"models/{rel}"


@dataclass(frozen=True)
class Selection:
    repos: list[RepoSpec] = field(default_factory=list)
    torch: list[str] = field(default_factory=list)
    all_approved: bool = False


@dataclass
class ExportPlan:
    manifest: Manifest
    small: dict[str, bytes]  # member name -> bytes (metadata, BOMs)
    blobs: dict[str, Path]  # member name -> file in the blob store
    skipped: list[Verdict] = field(default_factory=list)  # not approved: left out, reported


BlobPath = Callable[[str], Path | None]  # sha256 -> approved blob file, or None


async def plan_export(
    store: VerdictStore,
    selection: Selection,
    *,
    blob_path: BlobPath,
    key_id: str,
    hubgate_version: str = "",
    created_by: str | None = None,
) -> ExportPlan:
    created_at = time.time()
    groups, skipped = await _select(store, selection)
    if not groups:
        raise ExportError("nothing approved to export: vet the repos first (hubgate vet REPO) or approve them")
    snapshots: list[Snapshot] = []
    small: dict[str, bytes] = {}
    blobs: dict[str, Path] = {}
    members: list[Member] = []
    engines: dict[str, str] = {}
    policy_hashes: set[str] = set()
    for index, ((source, repo_type, repo_id, commit), verdicts) in enumerate(sorted(groups.items())):
        verdicts.sort(key=lambda v: v.path)
        approvals = [approval_from_verdict(v) for v in verdicts]
        meta = await _snapshot_metadata(store, source, repo_type, repo_id, commit, verdicts)
        revisions = sorted(r for r, c in meta.revisions.items() if r != commit)
        meta_name, bom_name = f"snapshots/{index}/metadata.json", f"snapshots/{index}/bom.cdx.json"
        snap = Snapshot(
            source=source,
            repo_type=repo_type,
            repo_id=repo_id,
            commit=commit,
            revisions=revisions,
            files=approvals,
            metadata=meta_name,
            bom=bom_name,
        )
        info = next((d.value for d in meta.docs if d.kind == "info" and isinstance(d.value, dict)), {})
        card = info.get("cardData") if isinstance(info.get("cardData"), dict) else None
        tags = [t for t in info.get("tags") or [] if isinstance(t, str)]
        scans = {r.sha256: r for r in meta.scans}
        small[meta_name] = metadata_bytes(meta)
        small[bom_name] = build_bom(
            snap, card_data=card, tags=tags, scans=scans, hubgate_version=hubgate_version, created_at=created_at
        ).encode()
        members.append(_small_member(meta_name, MemberKind.METADATA, small[meta_name]))
        members.append(_small_member(bom_name, MemberKind.BOM, small[bom_name]))
        for a in approvals:
            name = blob_member_name(a.sha256)
            if name in blobs:
                continue  # same content in two files or snapshots: carried once
            path = blob_path(a.sha256)
            if path is None:
                raise ExportError(
                    f"the approved bytes of {repo_id}@{commit[:12]}:{a.path} ({a.sha256[:12]}) are not in "
                    "the blob store; fetch them again through hubgate before exporting"
                )
            blobs[name] = path
            members.append(Member(name=name, kind=MemberKind.BLOB, size=a.size, sha256=a.sha256))
            engines.update(a.engines)
            policy_hashes.add(a.policy_hash)
        snapshots.append(snap)
    manifest = Manifest(
        created_at=created_at,
        created_by=created_by if created_by is not None else socket.gethostname(),
        hubgate_version=hubgate_version,
        key_id=key_id,
        policy_hashes=sorted(policy_hashes),
        engines=dict(sorted(engines.items())),
        snapshots=snapshots,
        members=members,
    )
    return ExportPlan(manifest=manifest, small=small, blobs=blobs, skipped=skipped)


def write_bundle(plan: ExportPlan, key: Ed25519PrivateKey, out: Path, progress: Progress | None = None) -> None:
    """Sign and stream the bundle to `out` (atomically: `<out>.partial`, then rename)."""
    raw = manifest_bytes(plan.manifest)
    partial = out.with_name(out.name + ".partial")
    try:
        with partial.open("wb") as fh:
            with BundleWriter(fh, raw, signing.sign(key, raw), progress) as writer:
                for member in plan.manifest.members:
                    if member.kind is MemberKind.BLOB:
                        writer.add_file(member, plan.blobs[member.name])
                    else:
                        writer.add_bytes(member, plan.small[member.name])
            fh.flush()
            os.fsync(fh.fileno())
        partial.replace(out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _small_member(name: str, kind: MemberKind, data: bytes) -> Member:
    return Member(name=name, kind=kind, size=len(data), sha256=hashlib.sha256(data).hexdigest())


Group = tuple[str, RepoType, str, str]


async def _select(store: VerdictStore, selection: Selection) -> tuple[dict[Group, list[Verdict]], list[Verdict]]:
    """Verdicts grouped by snapshot (approved only) and the skipped ones, for every selector."""
    chosen: dict[str, Verdict] = {}
    for spec in selection.repos:
        commit = await _resolve(store, spec)
        found = [
            v
            for v in await store.get_verdicts(sorted(await store.ids_by_repo(spec.repo_type.value, spec.repo_id)))
            if v.source == "hf" and v.repo_type is spec.repo_type and v.commit == commit
        ]
        if not found:
            raise ExportError(f"nothing of {spec.repo_id}@{commit[:12]} was vetted by this hubgate")
        chosen.update((v.artifact_id, v) for v in found)
    if selection.torch:
        torch_ids = await store.ids_by_repo(RepoType.MODEL.value, TORCH_REPO_ID)
        torch_verdicts = {v.path: v for v in await store.get_verdicts(sorted(torch_ids)) if v.source == "torch"}
        for name in selection.torch:
            verdict = torch_verdicts.get(torch_path(name))
            if verdict is None:
                raise ExportError(f"torch weight {name!r} was never vetted by this hubgate")
            chosen[verdict.artifact_id] = verdict
    if selection.all_approved:
        for v in await store.list_verdicts(VerdictStatus.APPROVED, limit=1_000_000):
            chosen[v.artifact_id] = v
    groups: dict[Group, list[Verdict]] = {}
    skipped: list[Verdict] = []
    for v in chosen.values():
        if v.status is VerdictStatus.APPROVED:
            groups.setdefault((v.source, v.repo_type, v.repo_id, v.commit), []).append(v)
        else:
            skipped.append(v)
    return groups, sorted(skipped, key=lambda v: (v.repo_id, v.path))


async def _resolve(store: VerdictStore, spec: RepoSpec) -> str:
    if COMMIT_RE.match(spec.revision):
        return spec.revision
    commit = await store.get_revision_offline(spec.repo_type.value, spec.repo_id, spec.revision)
    commit = commit or await store.get_revision(spec.repo_type.value, spec.repo_id, spec.revision)
    if commit is None:
        # a short commit: match it against the commits this hubgate knows for the repo
        known = set((await store.list_revisions(spec.repo_type.value, spec.repo_id)).values())
        matches = [c for c in known if c.startswith(spec.revision)] if len(spec.revision) >= 7 else []
        if len(matches) == 1:
            return matches[0]
        raise ExportError(
            f"revision {spec.revision!r} of {spec.repo_id} is unknown to this hubgate; vet it first "
            f"(hubgate vet {spec.repo_id} --revision {spec.revision})"
        )
    return commit


async def _snapshot_metadata(
    store: VerdictStore, source: str, repo_type: RepoType, repo_id: str, commit: str, verdicts: list[Verdict]
) -> SnapshotMetadata:
    rt = repo_type.value
    revisions: dict[str, str] = {}
    docs: list[DocRecord] = []
    if source == "hf":
        revisions = {r: c for r, c in (await store.list_revisions(rt, repo_id)).items() if c == commit}
        info = await store.get_doc("info", f"{rt}:{repo_id}:{commit}")
        if info is not None:
            docs.append(DocRecord(kind="info", key=f"{rt}:{repo_id}:{commit}", value=info))
        refs = await store.get_doc("refs", f"{rt}:{repo_id}")
        if refs is not None:
            docs.append(DocRecord(kind="refs", key=f"{rt}:{repo_id}", value=refs))
        docs.extend(await _tree_docs(store, rt, repo_id, commit, verdicts))
    files: list[FileMeta] = []
    scans: list[ScanReport] = []
    seen_scans: set[str] = set()
    for v in verdicts:
        meta = await store.get_file_meta(rt, repo_id, commit, v.path)
        if meta is not None:
            files.append(meta)
        if v.sha256 not in seen_scans:
            seen_scans.add(v.sha256)
            report = await store.get_scan(v.sha256)
            if report is not None:
                scans.append(report)
        key = f"{rt}:{repo_id}:{commit}:{v.path}"
        pathinfo = await store.get_doc("pathinfo", key)
        if pathinfo is not None:
            docs.append(DocRecord(kind="pathinfo", key=key, value=pathinfo))
    return SnapshotMetadata(revisions=revisions, docs=docs, files=files, verdicts=verdicts, scans=scans)


async def _tree_docs(
    store: VerdictStore, rt: str, repo_id: str, commit: str, verdicts: list[Verdict]
) -> list[DocRecord]:
    """Every cached tree page reachable from the root and the files' directories, following `next` cursors.

    Keys are `type:repo:commit:path:recursive:cursor` (proxy/web/hf.py); walking the chains finds each page
    without scanning Redis keys.
    """
    directories = {""}
    for v in verdicts:
        parts = v.path.split("/")[:-1]
        directories.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    docs: list[DocRecord] = []
    for directory in sorted(directories):
        for recursive in ("true", "false"):
            cursor = ""
            for _ in range(MAX_TREE_PAGES):
                key = f"{rt}:{repo_id}:{commit}:{directory}:{recursive}:{cursor}"
                page = await store.get_doc("tree", key)
                if not isinstance(page, dict):
                    break
                docs.append(DocRecord(kind="tree", key=key, value=page))
                cursor = _next_cursor(page)
                if not cursor:
                    break
    return docs


def _next_cursor(page: dict[str, Any]) -> str:
    nxt = page.get("next")
    if not isinstance(nxt, str) or not nxt:
        return ""
    return parse_qs(nxt).get("cursor", [""])[0]


def describe(manifest: Manifest) -> dict[str, Any]:
    """A short JSON-able summary for the CLI."""
    return {
        "snapshots": [
            {
                "repo": f"{s.repo_type.value}:{s.repo_id}",
                "commit": s.commit,
                "revisions": s.revisions,
                "files": len(s.files),
            }
            for s in manifest.snapshots
        ],
        "blobs": sum(1 for m in manifest.members if m.kind is MemberKind.BLOB),
        "bytes": manifest.total_bytes,
        "key_id": manifest.key_id,
    }
