"""Helpers for the bundle tests: one hubgate's Redis key space + blob store, seeded as if it had vetted
a repo (revision, info, two tree pages, file metadata, real scan reports, verdicts, approved bytes)."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save as save_safetensors

from proxy.models import ArtifactRef, FileMeta, ScanReport, Verdict, VerdictStatus
from proxy.scan.engines import engine_versions
from proxy.scan.scanner import hubgate_version, scan_path
from proxy.store import BlobStore
from proxy.verdicts import VerdictStore


class ThreadScanner:
    """The real scanner, run in a thread (the server uses the process pool around the same scan_path)."""

    @property
    def engine_versions(self) -> dict[str, str]:
        return {"hubgate": hubgate_version(), **engine_versions()}

    async def scan(self, path: Path, *, display_name: str, known_sha256: str | None = None) -> ScanReport:
        return await asyncio.to_thread(scan_path, path, display_name=display_name, known_sha256=known_sha256)


@dataclass
class Side:
    store: VerdictStore
    blobs: BlobStore
    prefix: str


async def make_side(redis_url: str, root: Path, prefix: str) -> Side:
    blobs = BlobStore(root)
    blobs.startup()
    return Side(await VerdictStore.connect(redis_url, prefix=prefix), blobs, prefix)


def weights() -> bytes:
    return save_safetensors({"w": np.arange(64, dtype=np.float32).reshape(8, 8)})


async def seed(
    side: Side,
    repo_id: str,
    commit: str,
    files: dict[str, bytes],
    *,
    license: str,
    admin: set[str] = frozenset(),  # paths an outside admin approved over the policy
    quarantined: set[str] = frozenset(),
) -> dict[str, Verdict]:
    """What an outside hubgate holds after vetting a repo: revision, info, tree pages, file meta, scans,
    verdicts, and approved bytes in blobs/."""
    store, blobs = side.store, side.blobs
    await store.set_revision("model", repo_id, "main", commit, 300)
    siblings = [{"rfilename": p} for p in files]
    info = {
        "id": repo_id,
        "sha": commit,
        "cardData": {"license": license},
        "tags": [f"license:{license}"],
        "siblings": siblings,
    }
    await store.set_doc("info", f"model:{repo_id}:{commit}", info)
    items = [{"type": "file", "path": p, "size": len(d), "oid": "0" * 40} for p, d in files.items()]
    await store.set_doc(
        "tree", f"model:{repo_id}:{commit}::true:", {"items": items[:1], "next": "recursive=true&cursor=p2"}
    )
    await store.set_doc("tree", f"model:{repo_id}:{commit}::true:p2", {"items": items[1:], "next": None})
    verdicts = {}
    for path, data in files.items():
        async with blobs.open_tmp(expected_size=len(data)) as writer:
            await writer.write(data)
            await blobs.quarantine(writer)
        sha = hashlib.sha256(data).hexdigest()
        report = scan_path(blobs.quarantine_path(sha), display_name=path, known_sha256=sha)
        await store.set_scan(report)
        await store.set_file_meta("model", repo_id, commit, FileMeta(path=path, size=len(data), sha256=sha, lfs=True))
        ref = ArtifactRef(repo_id=repo_id, commit=commit, path=path)
        status = VerdictStatus.QUARANTINED if path in quarantined else VerdictStatus.APPROVED
        by_admin = path in admin
        verdict = Verdict(
            artifact_id=ref.artifact_id,
            status=status,
            sha256=sha,
            size=len(data),
            repo_id=repo_id,
            commit=commit,
            path=path,
            policy_hash="outside-policy",
            scan_verdict=report.verdict,
            engines=report.engines,
            decided_by="admin:alice" if by_admin else "policy",
            admin_status=VerdictStatus.APPROVED if by_admin else None,
            admin_by="alice" if by_admin else "",
            admin_reason="reviewed by hand" if by_admin else "",
        )
        if status is VerdictStatus.APPROVED:
            await blobs.promote(sha)
        await store.put_verdict(verdict, event="decision", actor="policy")
        verdicts[path] = verdict
    return verdicts
