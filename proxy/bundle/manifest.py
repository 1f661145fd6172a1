"""The bundle manifest: what a bundle holds, who approved it, and the hash of every member.

Pure: pydantic models, canonical serialisation and the checks that decide whether a manifest can be
trusted to drive an import. No I/O here; `archive` streams members, `signing` signs the canonical bytes.

A bundle is a tar whose first member is `manifest.json` and second `manifest.sig`; every other member
is listed in `Manifest.members` with its size and sha256, in the order it appears. The signature covers
the manifest bytes, the manifest covers every member, so one signature authenticates the whole bundle.

Member names (no directories are extracted: names are validated, data is written by hash):
    blobs/<sha256>                 the approved bytes of one content
    snapshots/<n>/metadata.json    SnapshotMetadata: revisions, API docs, file metadata, verdicts, scans
    snapshots/<n>/bom.cdx.json     the CycloneDX ML-BOM of that snapshot
"""

from __future__ import annotations

import json
import re
import time
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, ValidationError

from proxy.models import FileMeta, Frozen, RepoType, ScanReport, Verdict, VerdictStatus

FORMAT = "hubgate-bundle"
VERSION = 1
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
MAX_MANIFEST_BYTES = 64 * 1024**2  # a manifest is metadata; anything bigger is not one of ours

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_MEMBER_RE = re.compile(r"^(?:blobs/[0-9a-f]{64}|snapshots/[0-9]{1,6}/(?:metadata\.json|bom\.cdx\.json))$")


class ManifestError(ValueError):
    """The manifest is malformed or inconsistent: the bundle is refused whole."""


class MemberKind(StrEnum):
    BLOB = "blob"
    METADATA = "metadata"
    BOM = "bom"


class Member(Frozen):
    """One tar member after the manifest and signature, with the hash its bytes must have."""

    name: str
    kind: MemberKind
    size: int = Field(ge=0)
    sha256: str


class Approval(Frozen):
    """Who approved one file, under which policy and engines: the trust the bundle carries."""

    artifact_id: str
    path: str
    sha256: str
    size: int = Field(ge=0)
    status: VerdictStatus
    decided_by: str  # policy | admin:<name>
    policy_hash: str
    policy_status: VerdictStatus | None = None
    admin_by: str = ""
    admin_reason: str = ""
    reasons: list[str] = Field(default_factory=list)
    engines: dict[str, str] = Field(default_factory=dict)
    decided_at: float


class Snapshot(Frozen):
    """One repo at one commit (or one torch source), the files of it that were approved, and its members."""

    source: str = "hf"
    repo_type: RepoType = RepoType.MODEL
    repo_id: str
    commit: str
    revisions: list[str] = Field(default_factory=list)  # branch/tag names that resolved to `commit`
    files: list[Approval]
    metadata: str  # member name of the SnapshotMetadata document
    bom: str | None = None  # member name of the CycloneDX BOM


class Manifest(Frozen):
    format: Literal["hubgate-bundle"] = "hubgate-bundle"
    version: Literal[1] = 1
    created_at: float = Field(default_factory=time.time)
    created_by: str = ""  # exporting host / operator, informational
    hubgate_version: str = ""
    key_id: str  # fingerprint of the signing key (see signing.key_id)
    policy_hashes: list[str] = Field(default_factory=list)
    engines: dict[str, str] = Field(default_factory=dict)  # union of the scan engines behind the approvals
    snapshots: list[Snapshot]
    members: list[Member]

    @property
    def total_bytes(self) -> int:
        return sum(m.size for m in self.members)


class DocRecord(Frozen):
    """One cached API document (`VerdictStore.get_doc(kind, key)`) as exported."""

    kind: str
    key: str
    value: Any


class SnapshotMetadata(Frozen):
    """Everything offline serving needs about a snapshot, beside the bytes."""

    revisions: dict[str, str] = Field(default_factory=dict)  # revision name -> commit
    docs: list[DocRecord] = Field(default_factory=list)
    files: list[FileMeta] = Field(default_factory=list)
    verdicts: list[Verdict] = Field(default_factory=list)
    scans: list[ScanReport] = Field(default_factory=list)


def canonical_json(value: Any) -> bytes:
    """The one serialisation that gets signed and hashed: sorted keys, no whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def manifest_bytes(manifest: Manifest) -> bytes:
    return canonical_json(manifest.model_dump(mode="json"))


def metadata_bytes(meta: SnapshotMetadata) -> bytes:
    return canonical_json(meta.model_dump(mode="json"))


def blob_member_name(sha256: str) -> str:
    return f"blobs/{sha256}"


def approval_from_verdict(verdict: Verdict) -> Approval:
    """The export gate: only an approved verdict becomes an Approval."""
    if verdict.status is not VerdictStatus.APPROVED:
        raise ManifestError(
            f"artifact {verdict.artifact_id} ({verdict.repo_id}@{verdict.commit[:12]}:{verdict.path}) is "
            f"{verdict.status.value}, not approved; only approved content can be exported"
        )
    return Approval(
        artifact_id=verdict.artifact_id,
        path=verdict.path,
        sha256=verdict.sha256,
        size=verdict.size,
        status=verdict.status,
        decided_by=verdict.decided_by,
        policy_hash=verdict.policy_hash,
        policy_status=verdict.policy_status,
        admin_by=verdict.admin_by,
        admin_reason=verdict.admin_reason,
        reasons=list(verdict.reasons),
        engines=dict(verdict.engines),
        decided_at=verdict.updated_at,
    )


def parse_manifest(data: bytes) -> Manifest:
    """Parse and check a manifest; raise ManifestError with the reason on anything off."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"manifest is {len(data)} bytes, more than the {MAX_MANIFEST_BYTES} allowed")
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"manifest is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ManifestError("not a hubgate bundle manifest (missing format: hubgate-bundle)")
    if raw.get("version") != VERSION:
        raise ManifestError(f"unsupported bundle version {raw.get('version')!r}; this hubgate reads {VERSION}")
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        raise ManifestError(f"manifest does not match the schema: {exc}") from exc
    check_manifest(manifest)
    return manifest


def check_manifest(manifest: Manifest) -> None:
    """Internal consistency: safe unique names, well-formed hashes, every approval backed by a blob member."""
    by_name: dict[str, Member] = {}
    for member in manifest.members:
        if not _MEMBER_RE.match(member.name):
            raise ManifestError(f"member name {member.name!r} is not allowed in a bundle")
        if member.name in by_name:
            raise ManifestError(f"member {member.name!r} is listed twice")
        if not SHA256_RE.match(member.sha256):
            raise ManifestError(f"member {member.name!r} has a malformed sha256")
        expected_kind = _kind_of(member.name)
        if member.kind is not expected_kind:
            raise ManifestError(f"member {member.name!r} is declared {member.kind.value}, not {expected_kind}")
        if member.kind is MemberKind.BLOB and member.name != blob_member_name(member.sha256):
            raise ManifestError(f"blob member {member.name!r} is not named by its sha256")
        by_name[member.name] = member
    if not manifest.snapshots:
        raise ManifestError("manifest lists no snapshots")
    for snap in manifest.snapshots:
        where = f"{snap.repo_id}@{snap.commit[:12]}"
        if snap.source == "hf" and not COMMIT_RE.match(snap.commit):
            raise ManifestError(f"snapshot {where}: commit is not a 40-hex sha")
        if by_name.get(snap.metadata) is None or by_name[snap.metadata].kind is not MemberKind.METADATA:
            raise ManifestError(f"snapshot {where}: metadata member {snap.metadata!r} is missing")
        if snap.bom is not None and snap.bom not in by_name:
            raise ManifestError(f"snapshot {where}: BOM member {snap.bom!r} is missing")
        if not snap.files:
            raise ManifestError(f"snapshot {where} lists no files")
        for f in snap.files:
            if f.status is not VerdictStatus.APPROVED:
                raise ManifestError(f"snapshot {where}: {f.path} is {f.status.value}; bundles carry approvals only")
            blob = by_name.get(blob_member_name(f.sha256))
            if blob is None:
                raise ManifestError(f"snapshot {where}: no blob member for {f.path} ({f.sha256[:12]})")
            if blob.size != f.size:
                raise ManifestError(f"snapshot {where}: {f.path} is {f.size} bytes but its blob is {blob.size}")


def _kind_of(name: str) -> MemberKind:
    if name.startswith("blobs/"):
        return MemberKind.BLOB
    if name.endswith("/bom.cdx.json"):
        return MemberKind.BOM
    return MemberKind.METADATA


def parse_metadata(data: bytes, snap: Snapshot) -> SnapshotMetadata:
    """Parse a snapshot's metadata member and confine it to that snapshot (no cross-repo writes)."""
    try:
        meta = SnapshotMetadata.model_validate_json(data)
    except ValidationError as exc:
        raise ManifestError(f"metadata of {snap.repo_id}: does not match the schema: {exc}") from exc
    where = f"{snap.repo_id}@{snap.commit[:12]}"
    prefix = f"{snap.repo_type.value}:{snap.repo_id}"
    for doc in meta.docs:
        if doc.key != prefix and not doc.key.startswith(prefix + ":"):
            raise ManifestError(f"metadata of {where}: document key {doc.key!r} is outside the snapshot")
    for name, commit in meta.revisions.items():
        if commit != snap.commit:
            raise ManifestError(f"metadata of {where}: revision {name!r} points to another commit")
    approved = {(f.path, f.sha256) for f in snap.files}
    for v in meta.verdicts:
        same_repo = (v.source, v.repo_type, v.repo_id, v.commit) == (
            snap.source,
            snap.repo_type,
            snap.repo_id,
            snap.commit,
        )
        if not same_repo or (v.path, v.sha256) not in approved:
            raise ManifestError(f"metadata of {where}: verdict for {v.path!r} is not one of the snapshot's files")
    shas = {f.sha256 for f in snap.files}
    for report in meta.scans:
        if report.sha256 not in shas:
            raise ManifestError(f"metadata of {where}: scan report for a content the snapshot does not hold")
    return meta
