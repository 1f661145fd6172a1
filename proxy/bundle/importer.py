"""Import: verify a bundle whole, then vet its files with the inside engines and policy, then commit.

    read_bundle (thread) ── blobs ──► TmpWriter under tmp/   (untrusted until the stream ends verified)
        │ signature first, then every member's size + sha256, order, nothing extra, end marker present
        ▼ refused? every tmp file is deleted, nothing was written to Redis: the bundle left no trace
    metadata parsed and confined to its snapshot; artifact ids recomputed
    blobs → quarantine/<sha256>                              (never served from there)
    per file: scan report (inside re-scan by default; the bundle's with --trust-verdicts)
              → inside policy → verdict (an outside admin approval is honoured only with --trust-verdicts,
                and never over an inside block or an inside admin's decision)
    approved → promote to blobs/;  metadata (revisions, docs, file meta, scans, BOM) → Redis
    verdicts → Redis (event "import", with the bundle's key id and the outside decision in the detail)
    one "bundle-import" audit entry summarising the import

Bytes are committed before the verdicts that make them servable, so a crash mid-commit leaves at worst
unreferenced files in quarantine, never an approval without its bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from proxy.bundle import signing
from proxy.bundle.archive import BundleRefused, Progress, VerifiedBundle, read_bundle
from proxy.bundle.manifest import (
    Approval,
    ManifestError,
    Member,
    Snapshot,
    SnapshotMetadata,
    parse_metadata,
)
from proxy.hfmeta import repo_meta_from_info
from proxy.models import (
    ArtifactRef,
    Decision,
    RepoMeta,
    RepoType,
    ScanReport,
    ScanVerdict,
    Verdict,
    VerdictStatus,
)
from proxy.policy import Policy, base_models_of, decide, licenses_of
from proxy.scan.pool import report_is_current
from proxy.store import BlobStore, TmpWriter
from proxy.verdicts import VerdictStore

SCAN_CONCURRENCY = 4


class Scanner(Protocol):
    """The inside scan engines (proxy.scan.pool.ScanPool satisfies this). When it also has an
    `engine_versions` dict, a report this hubgate already holds from the same engines is reused."""

    async def scan(self, path: Path, *, display_name: str, known_sha256: str | None = None) -> ScanReport: ...


@dataclass(frozen=True)
class ImportedFile:
    artifact_id: str
    ref: str
    status: VerdictStatus
    decided_by: str
    outside_decided_by: str
    reasons: list[str]


@dataclass
class ImportResult:
    key_id: str
    manifest_sha256: str
    trusted_verdicts: bool
    files: list[ImportedFile] = field(default_factory=list)
    audit_id: str = ""

    def count(self, status: VerdictStatus) -> int:
        return sum(1 for f in self.files if f.status is status)


@dataclass
class _Plan:
    """What a verified bundle will write, fully computed before anything is written."""

    snapshot: Snapshot
    meta: SnapshotMetadata
    repo: RepoMeta
    bom: bytes | None


async def import_bundle(
    src: IO[bytes],
    *,
    trusted: Ed25519PublicKey,
    store: VerdictStore,
    blobs: BlobStore,
    policy: Policy,
    scanner: Scanner | None,
    trust_verdicts: bool = False,
    revision_ttl: int = 300,
    actor: str = "cli",
    source_name: str = "",
    progress: Progress | None = None,
) -> ImportResult:
    """Verify, vet and commit one bundle. Raises BundleRefused (nothing written) when it cannot be trusted."""
    if scanner is None and not trust_verdicts:
        raise BundleRefused("no scan engines available to re-scan the bundle; nothing was imported")
    loop = asyncio.get_running_loop()
    async with contextlib.AsyncExitStack() as stack:
        writers: dict[str, TmpWriter] = {}

        def open_sink(_: int, member: Member) -> _TmpSink:
            # Called from the reader thread: the writer lives on the loop, owned by the exit stack, so
            # leaving this block without quarantining it deletes its file (a refused bundle leaves nothing).
            enter = stack.enter_async_context(blobs.open_tmp(expected_size=member.size, git_size_header=False))
            writer = asyncio.run_coroutine_threadsafe(enter, loop).result()
            writers[member.name] = writer
            return _TmpSink(writer, loop)

        verified = await asyncio.to_thread(read_bundle, src, trusted, open_sink, progress or _noop)
        plans = await _plan(verified, store)
        for member in verified.manifest.members:
            writer = writers.get(member.name)
            if writer is None:
                continue
            await writer.finish()
            if writer.sha256 != member.sha256 or writer.size != member.size:  # the store's own hash agrees
                raise BundleRefused(f"member {member.name} changed on its way to disk; nothing was imported")
            await blobs.quarantine(writer)
    manifest_sha = hashlib.sha256(verified.manifest_bytes).hexdigest()
    result = ImportResult(key_id=signing.key_id(trusted), manifest_sha256=manifest_sha, trusted_verdicts=trust_verdicts)
    fresh_scans: set[str] = set()
    verdicts = await _vet_all(plans, store, blobs, policy, scanner, trust_verdicts, result, fresh_scans)
    for plan in plans:
        await _write_metadata(plan, store, revision_ttl, fresh_scans)
    for verdict, outside in verdicts:
        if verdict.status is VerdictStatus.APPROVED:
            await blobs.promote(verdict.sha256)
        detail = {
            "bundle": source_name,
            "key_id": result.key_id,
            "manifest_sha256": manifest_sha,
            "trusted_verdicts": trust_verdicts,
            "outside": outside.model_dump(mode="json"),
        }
        await store.put_verdict(verdict, event="import", actor=actor, detail=detail)
    result.audit_id = await store.append_audit(
        "bundle-import",
        actor,
        bundle=source_name,
        key_id=result.key_id,
        manifest_sha256=manifest_sha,
        created_by=verified.manifest.created_by,
        created_at=repr(verified.manifest.created_at),
        snapshots=str(len(plans)),
        files=str(len(result.files)),
        approved=str(result.count(VerdictStatus.APPROVED)),
        quarantined=str(result.count(VerdictStatus.QUARANTINED)),
        blocked=str(result.count(VerdictStatus.BLOCKED) + result.count(VerdictStatus.REJECTED)),
        trusted_verdicts=str(trust_verdicts).lower(),
    )
    return result


def _noop(_: int) -> None:
    return None


class _TmpSink:
    """Bridges the reader thread to an async TmpWriter on the event loop."""

    def __init__(self, writer: TmpWriter, loop: asyncio.AbstractEventLoop) -> None:
        self._writer = writer
        self._loop = loop

    def write(self, chunk: bytes) -> None:
        asyncio.run_coroutine_threadsafe(self._writer.write(chunk), self._loop).result()

    def close(self) -> None:
        # Flush and close the file now (keeps one descriptor open at a time); the digest is compared later.
        asyncio.run_coroutine_threadsafe(self._writer.finish(), self._loop).result()


async def _plan(verified: VerifiedBundle, store: VerdictStore) -> list[_Plan]:
    """Parse and check every snapshot's metadata; recompute artifact ids. Pure but for lineage lookups."""
    plans: list[_Plan] = []
    infos: dict[tuple[str, str], dict[str, Any]] = {}
    for snap in verified.manifest.snapshots:
        try:
            meta = parse_metadata(verified.small[snap.metadata], snap)
        except ManifestError as exc:
            raise BundleRefused(str(exc)) from exc
        _check_file_metas(snap, meta)
        for f in snap.files:
            ref = _ref(snap, f)
            if ref.artifact_id != f.artifact_id:
                raise BundleRefused(f"artifact id of {ref.human} does not match its reference")
        info = _info_doc(snap, meta)
        repo = _repo_meta(snap, info)
        if info is not None:
            infos[(snap.repo_type.value, snap.repo_id)] = info
        bom = verified.small.get(snap.bom) if snap.bom else None
        plans.append(_Plan(snapshot=snap, meta=meta, repo=repo, bom=bom))
    for plan in plans:
        plan.repo = await _with_lineage(plan.repo, infos, store)
    return plans


def _ref(snap: Snapshot, f: Approval) -> ArtifactRef:
    return ArtifactRef(
        source=snap.source, repo_type=snap.repo_type, repo_id=snap.repo_id, commit=snap.commit, path=f.path
    )


def _info_doc(snap: Snapshot, meta: SnapshotMetadata) -> dict[str, Any] | None:
    key = f"{snap.repo_type.value}:{snap.repo_id}:{snap.commit}"
    for doc in meta.docs:
        if doc.kind == "info" and doc.key == key and isinstance(doc.value, dict):
            return doc.value
    return None


def _repo_meta(snap: Snapshot, info: dict[str, Any] | None) -> RepoMeta:
    if info is None:
        return RepoMeta(repo_type=snap.repo_type, repo_id=snap.repo_id, commit=snap.commit)
    return repo_meta_from_info(snap.repo_type, snap.repo_id, snap.commit, info)


async def _with_lineage(repo: RepoMeta, infos: dict[tuple[str, str], dict[str, Any]], store: VerdictStore) -> RepoMeta:
    """Base models' licenses from the bundle, else from what this hubgate already knows (never upstream).
    A base found nowhere gets [] and the inside policy treats its license as missing (fail closed)."""
    bases = base_models_of(repo)
    if not bases:
        return repo
    lineage: dict[str, list[str]] = {}
    for base in bases[:4]:
        info = infos.get(("model", base))
        commit = ""
        if info is None:
            commit = await store.get_revision_offline("model", base, "main") or ""
            doc = await store.get_doc("info", f"model:{base}:{commit}") if commit else None
            info = doc if isinstance(doc, dict) else None
        lineage[base] = licenses_of(_repo_meta_for(base, commit, info)) if info is not None else []
    return repo.model_copy(update={"base_model_licenses": lineage})


def _repo_meta_for(repo_id: str, commit: str, info: dict[str, Any]) -> RepoMeta:
    return repo_meta_from_info(RepoType.MODEL, repo_id, commit or str(info.get("sha", "")), info)


async def _vet_all(
    plans: list[_Plan],
    store: VerdictStore,
    blobs: BlobStore,
    policy: Policy,
    scanner: Scanner | None,
    trust_verdicts: bool,
    result: ImportResult,
    fresh_scans: set[str],
) -> list[tuple[Verdict, Approval]]:
    # Bounds the scans and the Redis calls alike (a bundle may hold thousands of files).
    gate = asyncio.Semaphore(SCAN_CONCURRENCY)
    outside_by_plan = [{r.sha256: r for r in plan.meta.scans} for plan in plans]
    reports: dict[str, ScanReport] = {}
    locks: dict[str, asyncio.Lock] = {}

    async def report_for(sha: str, path: str, outside: dict[str, ScanReport]) -> ScanReport:
        async with locks.setdefault(sha, asyncio.Lock()):
            if sha not in reports:
                report, fresh = await _scan_report(sha, path, outside, store, blobs, scanner, trust_verdicts)
                reports[sha] = report
                if fresh:
                    fresh_scans.add(sha)
            return reports[sha]

    async def one(index: int, f: Approval) -> tuple[Verdict, Approval]:
        plan = plans[index]
        async with gate:
            report = await report_for(f.sha256, f.path, outside_by_plan[index])
            ref = _ref(plan.snapshot, f)
            decision = decide(report, ref, plan.repo, policy)
            previous = await store.get_verdict(ref.artifact_id)
        verdict = build_verdict(ref, f, report, decision, previous, trust_verdicts, result.key_id)
        return verdict, f

    jobs = [one(index, f) for index, plan in enumerate(plans) for f in plan.snapshot.files]
    done = await asyncio.gather(*jobs)
    for verdict, f in done:
        result.files.append(
            ImportedFile(
                artifact_id=verdict.artifact_id,
                ref=verdict.ref.human,
                status=verdict.status,
                decided_by=verdict.decided_by,
                outside_decided_by=f.decided_by,
                reasons=verdict.reasons,
            )
        )
    # Remember which report each content was judged on (written with the metadata).
    for plan in plans:
        plan.meta = plan.meta.model_copy(
            update={"scans": [reports[s] for s in dict.fromkeys(f.sha256 for f in plan.snapshot.files)]}
        )
    return list(done)


async def _scan_report(
    sha: str,
    path: str,
    outside: dict[str, ScanReport],
    store: VerdictStore,
    blobs: BlobStore,
    scanner: Scanner | None,
    trust_verdicts: bool,
) -> tuple[ScanReport, bool]:
    """The report this content is judged on, and whether it is a fresh inside scan."""
    if trust_verdicts and sha in outside:
        return outside[sha], False
    if scanner is not None:
        inside = await store.get_scan(sha)
        versions = getattr(scanner, "engine_versions", None)
        if inside is not None and versions is not None and report_is_current(inside, versions):
            return inside, False  # already scanned here by the same engines
        held = blobs.quarantine_path(sha) or blobs.blob_path(sha)
        if held is not None:
            return await scanner.scan(held, display_name=path, known_sha256=sha), True
    # Trusted import without an outside report and no engines: indeterminate, which never passes.
    return ScanReport(sha256=sha, size=0, path=path, verdict=ScanVerdict.ERROR, engines={}), False


def build_verdict(
    ref: ArtifactRef,
    outside: Approval,
    report: ScanReport,
    decision: Decision,
    previous: Verdict | None,
    trust_verdicts: bool,
    key_id: str,
) -> Verdict:
    """The inside verdict for one imported file (pure).

    The inside policy decides. An inside admin's decision on the same artifact stands. With
    `trust_verdicts`, an outside *admin* approval lifts an inside quarantine (recorded as that admin, via
    the bundle's key) but never an inside block.
    """
    verdict = Verdict.from_decision(
        ref, sha256=outside.sha256, size=outside.size, report=report, decision=decision, previous=previous
    )
    inside_admin = previous is not None and previous.admin_status is not None
    if (
        not inside_admin
        and trust_verdicts
        and verdict.policy_status is VerdictStatus.QUARANTINED
        and outside.decided_by.startswith("admin:")
        and outside.status is VerdictStatus.APPROVED
    ):
        admin_by = f"{outside.admin_by or outside.decided_by.removeprefix('admin:')}@bundle:{key_id}"
        verdict = verdict.model_copy(
            update={
                "status": VerdictStatus.APPROVED,
                "decided_by": f"admin:{admin_by}",
                "admin_status": VerdictStatus.APPROVED,
                "admin_by": admin_by,
                "admin_reason": f"approved outside ({outside.admin_reason or 'no reason given'}); trusted on import",
            }
        )
    return verdict


async def _write_metadata(plan: _Plan, store: VerdictStore, revision_ttl: int, fresh_scans: set[str]) -> None:
    snap, meta = plan.snapshot, plan.meta
    rt = snap.repo_type.value
    if snap.source == "hf":
        for revision in meta.revisions:
            ttl = None if revision == snap.commit else revision_ttl
            await store.set_revision(rt, snap.repo_id, revision, snap.commit, ttl)
        await store.set_revision(rt, snap.repo_id, snap.commit, snap.commit, None)
    for doc in meta.docs:
        if isinstance(doc.value, dict | list):
            await store.set_doc(doc.kind, doc.key, doc.value)
    for file_meta in meta.files:
        await store.set_file_meta(rt, snap.repo_id, snap.commit, file_meta)
    for report in meta.scans:
        # An inside report is never replaced by an outside one (--trust-verdicts keeps both worlds apart).
        if report.sha256 in fresh_scans or await store.get_scan(report.sha256) is None:
            await store.set_scan(report)
    if plan.bom is not None:
        await store.set_doc("bom", f"{rt}:{snap.repo_id}:{snap.commit}", json.loads(plan.bom))


def _check_file_metas(snap: Snapshot, meta: SnapshotMetadata) -> None:
    """File metadata must agree with the signed approval for the same path (sha256 and size)."""
    approved = {f.path: f for f in snap.files}
    for file_meta in meta.files:
        f = approved.get(file_meta.path)
        if f is None:
            raise BundleRefused(f"file metadata for {file_meta.path!r}, which the snapshot does not hold")
        if file_meta.sha256 not in (None, f.sha256) or file_meta.size not in (-1, f.size):
            raise BundleRefused(f"file metadata of {file_meta.path} disagrees with its approved sha256/size")
