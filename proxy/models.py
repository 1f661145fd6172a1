"""Frozen values shared by every layer: scan reports, decisions, verdicts, artifact references.

Nothing here does I/O; pydantic models are the contract between the scan workers, the policy engine,
the Redis store, the HTTP layer and the CLI (`--json` output is `model_dump(mode="json")` of these).
"""

from __future__ import annotations

import hashlib
import re
import time
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {
    Severity.INFO: 0,
    Severity.LOW: 1,
    Severity.MEDIUM: 2,
    Severity.HIGH: 3,
    Severity.CRITICAL: 4,
}


class ScanVerdict(StrEnum):
    """What the scanners concluded about the bytes alone (policy decides what to do with it)."""

    CLEAN = "clean"
    UNSAFE = "unsafe"
    ERROR = "error"  # an engine could not finish: indeterminate, never a pass


class FileFormat(StrEnum):
    """Formats identified by content (see proxy.scan.sniff); the extension is only a hint."""

    PICKLE = "pickle"
    TORCH_ZIP = "torch-zip"
    TORCH_LEGACY = "torch-legacy"
    TORCH_LEGACY_TAR = "torch-legacy-tar"
    TORCHSCRIPT = "torchscript"
    NUMPY = "numpy"
    NUMPY_NPZ = "numpy-npz"
    JOBLIB = "joblib"
    SAFETENSORS = "safetensors"
    GGUF = "gguf"
    HDF5 = "hdf5"
    KERAS = "keras"
    SAVED_MODEL = "tf-saved-model"
    ONNX = "onnx"
    ZIP = "zip"
    TAR = "tar"
    SEVEN_ZIP = "7z"
    GZIP = "gzip"
    ZLIB = "zlib"
    XZ = "xz"
    BZ2 = "bz2"
    JSON = "json"
    PYTHON = "python"
    SENTENCEPIECE = "sentencepiece"  # tokenizer.model (protobuf of pieces and scores): inert data
    MEDIA = "media"  # images, audio, PDF (README assets): inert data, recognised so they are not "unknown"
    TEXT = "text"
    EMPTY = "empty"
    UNKNOWN = "unknown"


class FormatFamily(StrEnum):
    """Coarse families that policy speaks about."""

    PICKLE = "pickle"
    TORCHSCRIPT = "torchscript"
    SAFETENSORS = "safetensors"
    GGUF = "gguf"
    ONNX = "onnx"
    KERAS = "keras"
    TENSORFLOW = "tensorflow"
    NUMPY = "numpy"
    ARCHIVE = "archive"
    CUSTOM_CODE = "custom-code"
    CONFIG = "config"
    TEXT = "text"
    UNKNOWN = "unknown"


class Finding(Frozen):
    engine: str
    severity: Severity
    rule: str
    message: str
    location: str = ""


class ScanReport(Frozen):
    """The scanners' findings about one content (keyed by sha256, reused across repos)."""

    sha256: str
    size: int
    path: str = ""
    format: FileFormat = FileFormat.UNKNOWN
    formats: list[FileFormat] = Field(default_factory=list)
    families: list[FormatFamily] = Field(default_factory=list)
    verdict: ScanVerdict
    findings: list[Finding] = Field(default_factory=list)
    engines: dict[str, str] = Field(default_factory=dict)  # engine name -> version
    duration_s: float = 0.0
    scanned_at: float = Field(default_factory=time.time)

    @property
    def max_severity(self) -> Severity | None:
        if not self.findings:
            return None
        return max((f.severity for f in self.findings), key=lambda s: s.rank)


class Action(StrEnum):
    ALLOW = "allow"
    QUARANTINE = "quarantine"
    BLOCK = "block"

    @property
    def rank(self) -> int:
        return {"allow": 0, "quarantine": 1, "block": 2}[self.value]


class Reason(Frozen):
    rule: str  # e.g. "license.deny", "scan.critical", "format.custom-code"
    action: Action
    message: str  # stands alone in a client error: "license cc-by-nc-4.0 is not allowed"


class Decision(Frozen):
    action: Action
    reasons: list[Reason] = Field(default_factory=list)
    policy_hash: str
    mode: str = "enforce"  # enforce | audit


class VerdictStatus(StrEnum):
    APPROVED = "approved"
    QUARANTINED = "quarantined"
    BLOCKED = "blocked"
    REJECTED = "rejected"  # an admin's reject: blocked whatever policy later says

    @property
    def servable(self) -> bool:
        return self is VerdictStatus.APPROVED


ACTION_TO_STATUS = {
    Action.ALLOW: VerdictStatus.APPROVED,
    Action.QUARANTINE: VerdictStatus.QUARANTINED,
    Action.BLOCK: VerdictStatus.BLOCKED,
}

_REPO_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
REPO_ID_RE = re.compile(rf"^(?:{_REPO_PART}/)?{_REPO_PART}$")


class RepoType(StrEnum):
    MODEL = "model"
    DATASET = "dataset"
    SPACE = "space"


class ArtifactRef(Frozen):
    """One file of one repo at one commit, from one source (hf, torch, github)."""

    source: str = "hf"
    repo_type: RepoType = RepoType.MODEL
    repo_id: str
    commit: str
    path: str

    @property
    def artifact_id(self) -> str:
        key = "\0".join([self.source, self.repo_type.value, self.repo_id, self.commit, self.path])
        return hashlib.sha256(key.encode()).hexdigest()[:12]

    @property
    def human(self) -> str:
        prefix = "" if self.repo_type is RepoType.MODEL else f"{self.repo_type.value}s/"
        return f"{prefix}{self.repo_id}@{self.commit[:12]}:{self.path}"


class FileMeta(Frozen):
    """What the upstream says a file is; the download is verified against it."""

    path: str
    size: int  # -1 when the upstream does not say (then only the hashes that are known are checked)
    sha256: str | None = None  # LFS files: content sha256
    git_oid: str | None = None  # small files: git blob sha1 of the content
    lfs: bool = False
    sha256_prefix: str | None = None  # torch weights: the `-<hex>.` in the file name must prefix the sha256

    @property
    def etag(self) -> str:
        """The ETag huggingface_hub caches under: sha256 for LFS, git blob sha1 otherwise."""
        return self.sha256 if self.lfs and self.sha256 else (self.git_oid or self.sha256 or "")


class RepoMeta(BaseModel):
    """Repository facts the policy reads: card front matter, license tags, publisher."""

    model_config = ConfigDict(frozen=True)

    repo_type: RepoType = RepoType.MODEL
    repo_id: str
    commit: str = ""
    card_data: dict[str, Any] | None = None  # YAML front matter / API cardData; None when no card
    tags: list[str] = Field(default_factory=list)
    gated: bool | str = False
    base_model_licenses: dict[str, list[str]] = Field(default_factory=dict)  # lineage: base repo -> licenses

    @property
    def publisher(self) -> str:
        return self.repo_id.split("/", 1)[0] if "/" in self.repo_id else ""


class Verdict(BaseModel):
    """The recorded decision for one artifact. The admin decision sits beside the automated one."""

    artifact_id: str
    status: VerdictStatus
    reasons: list[str] = Field(default_factory=list)
    decided_by: str = "policy"  # policy | admin:<name>
    policy_hash: str = ""
    policy_status: VerdictStatus | None = None  # what policy alone decided
    admin_status: VerdictStatus | None = None
    admin_reason: str = ""
    admin_by: str = ""
    source: str = "hf"
    sha256: str
    size: int
    repo_type: RepoType = RepoType.MODEL
    repo_id: str
    commit: str
    path: str
    scan_verdict: ScanVerdict | None = None
    engines: dict[str, str] = Field(default_factory=dict)
    mode: str = "enforce"
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)

    @property
    def ref(self) -> ArtifactRef:
        return ArtifactRef(
            source=self.source, repo_type=self.repo_type, repo_id=self.repo_id, commit=self.commit, path=self.path
        )

    @classmethod
    def from_decision(
        cls,
        ref: ArtifactRef,
        *,
        sha256: str,
        size: int,
        report: ScanReport | None,
        decision: Decision,
        previous: Verdict | None = None,
    ) -> Verdict:
        """The verdict a policy decision yields; an admin decision already on record stands beside it."""
        policy_status = ACTION_TO_STATUS[decision.action]
        admin = previous if previous is not None and previous.admin_status is not None else None
        now = time.time()
        return cls(
            artifact_id=ref.artifact_id,
            status=admin.admin_status if admin and admin.admin_status else policy_status,
            reasons=[r.message for r in decision.reasons if r.action is not Action.ALLOW],
            decided_by=admin.decided_by if admin else "policy",
            policy_hash=decision.policy_hash,
            policy_status=policy_status,
            admin_status=admin.admin_status if admin else None,
            admin_reason=admin.admin_reason if admin else "",
            admin_by=admin.admin_by if admin else "",
            source=ref.source,
            sha256=sha256,
            size=size,
            repo_type=ref.repo_type,
            repo_id=ref.repo_id,
            commit=ref.commit,
            path=ref.path,
            scan_verdict=report.verdict if report else None,
            engines=report.engines if report else {},
            mode=decision.mode,
            created_at=previous.created_at if previous else now,
            updated_at=now,
        )
