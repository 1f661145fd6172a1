"""CycloneDX ML-BOM for one exported repo snapshot (cyclonedx-python-lib, spec 1.6).

The BOM's subject (`metadata.component`) is the repo at its commit, typed `machine-learning-model`, with its
publisher, license(s) from the model card and a `pkg:huggingface/...@<commit>` purl. Each exported file is
a component with its SHA-256, and `hubgate:*` properties carry the approving decision (status, decided_by,
admin, policy hash), the scan verdict and every finding. The scan engines are the BOM's tools.

Pure: values in, JSON text out; `export` puts the text in the bundle and signs its hash via the manifest.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.license import License
from cyclonedx.model.tool import ToolRepository
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from proxy.bundle.manifest import Approval, Snapshot
from proxy.models import ScanReport

_WEIGHT_SUFFIXES = (
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".gguf",
    ".onnx",
    ".h5",
    ".keras",
    ".pkl",
    ".joblib",
    ".msgpack",
)
_BOM_NAMESPACE = uuid.UUID("1f0c7f5e-8a47-4f0e-9d3b-6b1a2c3d4e5f")


def licenses_from_card(card_data: dict[str, Any] | None, tags: Iterable[str] = ()) -> list[str]:
    """License ids as the repo states them: card `license` (string or list), else `license:` tags."""
    found: list[str] = []
    raw = (card_data or {}).get("license")
    if isinstance(raw, str):
        found.append(raw)
    elif isinstance(raw, list):
        found.extend(str(x) for x in raw if isinstance(x, str))
    if not found:
        found.extend(t.split(":", 1)[1] for t in tags if t.startswith("license:"))
    return list(dict.fromkeys(x.strip() for x in found if x.strip()))


def _licenses(ids: list[str]) -> list[License]:
    factory = LicenseFactory()
    # The factory maps SPDX ids (apache-2.0 -> Apache-2.0) and keeps HF ids (llama3, other) as names.
    return [factory.make_from_string(x) for x in ids]


def _purl(snap: Snapshot) -> PackageURL | None:
    if snap.source != "hf":
        return None
    namespace, _, name = snap.repo_id.rpartition("/")
    qualifiers = {} if snap.repo_type.value == "model" else {"repo_type": snap.repo_type.value}
    return PackageURL(
        type="huggingface", namespace=namespace or None, name=name, version=snap.commit, qualifiers=qualifiers
    )


def _file_component(snap: Snapshot, f: Approval, report: ScanReport | None) -> Component:
    props = [
        Property(name="hubgate:artifact_id", value=f.artifact_id),
        Property(name="hubgate:path", value=f.path),
        Property(name="hubgate:size", value=str(f.size)),
        Property(name="hubgate:status", value=f.status.value),
        Property(name="hubgate:decided_by", value=f.decided_by),
        Property(name="hubgate:policy_hash", value=f.policy_hash),
        Property(name="hubgate:decided_at", value=datetime.fromtimestamp(f.decided_at, UTC).isoformat()),
    ]
    if f.admin_by:
        props.append(Property(name="hubgate:admin_by", value=f.admin_by))
    if f.admin_reason:
        props.append(Property(name="hubgate:admin_reason", value=f.admin_reason))
    props.extend(Property(name="hubgate:reason", value=r) for r in f.reasons)
    if report is not None:
        props.append(Property(name="hubgate:scan_verdict", value=report.verdict.value))
        props.append(Property(name="hubgate:format", value=report.format.value))
        for finding in report.findings:
            text = f"{finding.engine} {finding.severity.value} {finding.rule}: {finding.message}"
            props.append(Property(name="hubgate:finding", value=text))
    engines = report.engines if report is not None else f.engines
    props.extend(Property(name=f"hubgate:engine:{n}", value=v) for n, v in sorted(engines.items()))
    is_weights = f.path.lower().endswith(_WEIGHT_SUFFIXES)
    return Component(
        name=f.path,
        type=ComponentType.MACHINE_LEARNING_MODEL if is_weights else ComponentType.FILE,
        bom_ref=f"{snap.repo_id}@{snap.commit}:{f.path}",
        version=snap.commit,
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=f.sha256)],
        properties=props,
    )


def build_bom(
    snap: Snapshot,
    *,
    card_data: dict[str, Any] | None,
    tags: Iterable[str],
    scans: dict[str, ScanReport],
    hubgate_version: str,
    created_at: float,
) -> str:
    """The CycloneDX 1.6 JSON text of one snapshot's ML-BOM."""
    license_ids = licenses_from_card(card_data, tags)
    publisher = snap.repo_id.split("/", 1)[0] if "/" in snap.repo_id else ""
    subject = Component(
        name=snap.repo_id,
        type=ComponentType.MACHINE_LEARNING_MODEL,
        bom_ref=f"{snap.repo_id}@{snap.commit}",
        version=snap.commit,
        publisher=publisher or None,
        group=publisher or None,
        licenses=_licenses(license_ids),
        purl=_purl(snap),
        properties=[
            Property(name="hubgate:source", value=snap.source),
            Property(name="hubgate:repo_type", value=snap.repo_type.value),
            *(Property(name="hubgate:revision", value=r) for r in snap.revisions),
        ],
    )
    engines: dict[str, str] = {}
    for f in snap.files:
        report = scans.get(f.sha256)
        engines.update(report.engines if report is not None else f.engines)
    tools = ToolRepository(
        components=[
            Component(name="hubgate", type=ComponentType.APPLICATION, version=hubgate_version or None),
            *(Component(name=n, type=ComponentType.APPLICATION, version=v) for n, v in sorted(engines.items())),
        ]
    )
    bom = Bom(
        serial_number=uuid.uuid5(_BOM_NAMESPACE, f"{snap.source}:{snap.repo_type.value}:{snap.repo_id}@{snap.commit}"),
        metadata=BomMetaData(component=subject, tools=tools, timestamp=datetime.fromtimestamp(created_at, UTC)),
        components=[_file_component(snap, f, scans.get(f.sha256)) for f in snap.files],
    )
    bom.register_dependency(subject, bom.components)
    return JsonV1Dot6(bom).output_as_string(indent=None)
