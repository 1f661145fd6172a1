"""Bundle manifest, signing, archive streaming and BOM: pure parts with real files (no Redis)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from proxy.bundle import signing
from proxy.bundle.archive import BundleRefused, BundleWriter, DirectorySinks, ExportIntegrityError
from proxy.bundle.archive import read_bundle as _read_bundle
from proxy.bundle.bom import build_bom, licenses_from_card
from proxy.bundle.manifest import (
    Manifest,
    ManifestError,
    Member,
    MemberKind,
    Snapshot,
    SnapshotMetadata,
    approval_from_verdict,
    blob_member_name,
    manifest_bytes,
    metadata_bytes,
    parse_manifest,
    parse_metadata,
)
from proxy.models import Finding, ScanReport, ScanVerdict, Severity, Verdict, VerdictStatus

COMMIT = "a" * 40


def _verdict(path: str, data: bytes, status: VerdictStatus = VerdictStatus.APPROVED) -> Verdict:
    return Verdict(
        artifact_id=hashlib.sha256(path.encode()).hexdigest()[:12],
        status=status,
        decided_by="admin:alice",
        admin_by="alice",
        admin_reason="reviewed",
        policy_hash="p" * 16,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        repo_id="org/model",
        commit=COMMIT,
        path=path,
        engines={"fickling": "0.1.3"},
    )


def _member(name: str, kind: MemberKind, data: bytes) -> Member:
    return Member(name=name, kind=kind, size=len(data), sha256=hashlib.sha256(data).hexdigest())


def _build(tmp_path: Path, files: dict[str, bytes]) -> tuple[Manifest, dict[str, Path], bytes]:
    """A one-snapshot manifest over real blob files; returns it, blob paths by member, metadata bytes."""
    verdicts = [_verdict(p, d) for p, d in files.items()]
    snap_files = [approval_from_verdict(v) for v in verdicts]
    meta = SnapshotMetadata(revisions={"main": COMMIT}, verdicts=verdicts)
    meta_raw = metadata_bytes(meta)
    members = [_member("snapshots/0/metadata.json", MemberKind.METADATA, meta_raw)]
    paths: dict[str, Path] = {}
    for data in files.values():
        sha = hashlib.sha256(data).hexdigest()
        if blob_member_name(sha) in paths:
            continue
        blob = tmp_path / "src" / sha
        blob.parent.mkdir(exist_ok=True)
        blob.write_bytes(data)
        paths[blob_member_name(sha)] = blob
        members.append(_member(blob_member_name(sha), MemberKind.BLOB, data))
    snap = Snapshot(
        repo_id="org/model",
        commit=COMMIT,
        revisions=["main"],
        files=snap_files,
        metadata="snapshots/0/metadata.json",
    )
    manifest = Manifest(key_id="k", snapshots=[snap], members=members)
    return manifest, paths, meta_raw


def _write(out: Path, manifest: Manifest, paths: dict[str, Path], meta_raw: bytes, key) -> None:
    raw = manifest_bytes(manifest)
    with out.open("wb") as fh, BundleWriter(fh, raw, signing.sign(key, raw)) as writer:
        for m in manifest.members:
            if m.kind is MemberKind.BLOB:
                writer.add_file(m, paths[m.name])
            else:
                writer.add_bytes(m, meta_raw)


def read_bundle(src, key, directory: Path, progress=lambda n: None):
    sinks = DirectorySinks(directory)
    try:
        return _read_bundle(src, key, sinks, progress), sinks.paths
    finally:
        sinks.close()


@pytest.fixture
def key():
    return signing.generate()


@pytest.fixture
def bundle(tmp_path: Path, key) -> tuple[Path, Manifest]:
    files = {"model.safetensors": b"\x00weights" * 5000, "config.json": b'{"a": 1}'}
    manifest, paths, meta_raw = _build(tmp_path, files)
    out = tmp_path / "b.tar"
    _write(out, manifest, paths, meta_raw, key)
    return out, manifest


def test_roundtrip_stages_every_member_verified(bundle, key, tmp_path: Path) -> None:
    out, manifest = bundle
    seen: list[int] = []
    with out.open("rb") as fh:
        verified, paths = read_bundle(fh, key.public_key(), tmp_path / "stage", seen.append)
    assert verified.manifest == manifest
    blobs = {m.name for m in manifest.members if m.kind is MemberKind.BLOB}
    assert set(paths) == blobs
    assert set(verified.small) == {m.name for m in manifest.members} - blobs
    for m in manifest.members:
        data = paths[m.name].read_bytes() if m.name in blobs else verified.small[m.name]
        assert hashlib.sha256(data).hexdigest() == m.sha256
    assert sum(seen) == manifest.total_bytes


def test_every_single_byte_flip_is_refused(bundle, key, tmp_path: Path) -> None:
    """One flipped byte anywhere that carries meaning (manifest, signature, metadata, blob) is refused."""
    out, _ = bundle
    raw = out.read_bytes()
    with tarfile.open(out) as tar:
        regions = {m.name: (m.offset_data, m.size) for m in tar.getmembers()}
    for name, (start, size) in regions.items():
        for pos in {start, start + size // 2, start + size - 1}:
            bad = bytearray(raw)
            bad[pos] ^= 0x01
            with pytest.raises(BundleRefused):
                read_bundle(io.BytesIO(bytes(bad)), key.public_key(), tmp_path / f"s{pos}")
            assert name  # every member region was exercised


def test_wrong_key_and_unsigned_are_refused(bundle, tmp_path: Path) -> None:
    out, manifest = bundle
    other = signing.generate().public_key()
    with pytest.raises(BundleRefused, match="bad signature"), out.open("rb") as fh:
        read_bundle(fh, other, tmp_path / "s1")
    # A bundle with the manifest but no signature member.
    unsigned = io.BytesIO()
    with tarfile.open(fileobj=unsigned, mode="w") as tar:
        raw = manifest_bytes(manifest)
        info = tarfile.TarInfo("manifest.json")
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(raw))
    unsigned.seek(0)
    with pytest.raises(BundleRefused, match=r"no manifest\.sig"):
        read_bundle(unsigned, other, tmp_path / "s2")


def test_truncated_bundle_is_refused_at_every_cut(bundle, key, tmp_path: Path) -> None:
    out, _ = bundle
    raw = out.read_bytes()
    with tarfile.open(out) as tar:
        last = tar.getmembers()[-1]
        end = last.offset_data + ((last.size + 511) // 512) * 512  # where the end-of-archive marker starts
    for cut in (0, 100, 512, 1500, len(raw) // 2, end - 1, end, end + 512, end + 1023):
        with pytest.raises(BundleRefused):
            read_bundle(io.BytesIO(raw[:cut]), key.public_key(), tmp_path / f"t{cut}")


def test_extra_member_is_refused(bundle, key, tmp_path: Path) -> None:
    out, _ = bundle
    raw = out.read_bytes()
    # Drop the end-of-archive blocks and append a member the manifest does not list.
    with tarfile.open(out) as tar:
        last = tar.getmembers()[-1]
        end = last.offset_data + ((last.size + 511) // 512) * 512
    extra = io.BytesIO()
    with tarfile.open(fileobj=extra, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("blobs/" + "f" * 64)
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(BundleRefused, match="does not list"):
        read_bundle(io.BytesIO(raw[:end] + extra.getvalue()), key.public_key(), tmp_path / "x")


def test_writer_refuses_a_blob_that_rotted_on_disk(tmp_path: Path, key) -> None:
    manifest, paths, meta_raw = _build(tmp_path, {"w.bin": b"x" * 4096})
    blob = next(iter(paths.values()))
    blob.write_bytes(b"y" * 4096)
    with pytest.raises(ExportIntegrityError, match="sha256 differs"):
        _write(tmp_path / "o.tar", manifest, paths, meta_raw, key)
    blob.write_bytes(b"x" * 100)
    with pytest.raises(ExportIntegrityError, match="shorter"):
        _write(tmp_path / "o.tar", manifest, paths, meta_raw, key)


@pytest.mark.parametrize("status", [s for s in VerdictStatus if s is not VerdictStatus.APPROVED])
def test_only_approved_verdicts_are_exportable(status: VerdictStatus) -> None:
    with pytest.raises(ManifestError, match="only approved content can be exported"):
        approval_from_verdict(_verdict("m.bin", b"x", status))


def test_manifest_checks(tmp_path: Path) -> None:
    manifest, _, _ = _build(tmp_path, {"m.bin": b"abc"})
    assert parse_manifest(manifest_bytes(manifest)) == manifest
    doc = manifest.model_dump(mode="json")
    cases = [
        (lambda d: d["members"][0].update(name="../etc/passwd"), "not allowed"),
        (lambda d: d["members"].append(d["members"][1]), "listed twice"),
        (lambda d: d["members"].pop(1), "no blob member"),
        (lambda d: d["snapshots"][0]["files"][0].update(status="blocked"), "approvals only"),
        (lambda d: d["snapshots"][0]["files"][0].update(size=4), "blob is 3"),
        (lambda d: d.update(version=2), "unsupported bundle version"),
        (lambda d: d.update(format="other"), "not a hubgate bundle"),
    ]
    for mutate, message in cases:
        bad = json.loads(json.dumps(doc))
        mutate(bad)
        with pytest.raises(ManifestError, match=message):
            parse_manifest(json.dumps(bad).encode())
    with pytest.raises(ManifestError, match="not valid JSON"):
        parse_manifest(b"{nope")


def test_metadata_is_confined_to_its_snapshot(tmp_path: Path) -> None:
    manifest, _, meta_raw = _build(tmp_path, {"m.bin": b"abc"})
    snap = manifest.snapshots[0]
    assert parse_metadata(meta_raw, snap).revisions == {"main": COMMIT}
    meta = json.loads(meta_raw)
    escaping = [
        {**meta, "docs": [{"kind": "info", "key": "model:other/repo:" + COMMIT, "value": {}}]},
        {**meta, "revisions": {"main": "b" * 40}},
        {**meta, "verdicts": [_verdict("other.bin", b"zz").model_dump(mode="json")]},
    ]
    for doc in escaping:
        with pytest.raises(ManifestError):
            parse_metadata(json.dumps(doc).encode(), snap)


def test_keys_roundtrip_pem_and_raw(tmp_path: Path) -> None:
    pub = signing.keygen(tmp_path / "k.key", tmp_path / "k.pub")
    assert (tmp_path / "k.key").stat().st_mode & 0o777 == 0o600
    priv = signing.load_private(tmp_path / "k.key")
    assert signing.key_id(priv.public_key()) == signing.key_id(pub)
    (tmp_path / "raw.pub").write_text(signing.public_b64(pub) + "\n")
    raw_pub = signing.load_public(tmp_path / "raw.pub")
    sig = signing.sign(priv, b"manifest")
    signing.verify(raw_pub, b"manifest", sig)
    signing.verify(signing.load_public(tmp_path / "k.pub"), b"manifest", sig)
    with pytest.raises(signing.SignatureError):
        signing.verify(raw_pub, b"manifesT", sig)
    with pytest.raises(signing.KeyFileError, match="already exists"):
        signing.keygen(tmp_path / "k.key", tmp_path / "k.pub")
    with pytest.raises(signing.KeyFileError, match="private key"):
        signing.load_public(tmp_path / "k.key")
    (tmp_path / "junk.pub").write_text("not a key")
    with pytest.raises(signing.KeyFileError):
        signing.load_public(tmp_path / "junk.pub")


def test_bom_carries_hashes_license_publisher_engines_findings(tmp_path: Path) -> None:
    manifest, _, _ = _build(tmp_path, {"model.safetensors": b"w" * 10, "config.json": b"{}"})
    snap = manifest.snapshots[0]
    sha = snap.files[0].sha256
    report = ScanReport(
        sha256=sha,
        size=10,
        verdict=ScanVerdict.CLEAN,
        engines={"modelscan": "0.8.1"},
        findings=[Finding(engine="modelscan", severity=Severity.LOW, rule="r1", message="odd header")],
    )
    text = build_bom(
        snap,
        card_data={"license": "apache-2.0"},
        tags=[],
        scans={sha: report},
        hubgate_version="0.1.0",
        created_at=0.0,
    )
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None  # valid against the official schema
    bom = json.loads(text)
    assert bom["specVersion"] == "1.6"
    subject = bom["metadata"]["component"]
    assert subject["type"] == "machine-learning-model"
    assert subject["publisher"] == "org"
    assert subject["licenses"][0]["license"]["id"] == "Apache-2.0"
    assert subject["purl"] == f"pkg:huggingface/org/model@{COMMIT}"
    comps = {c["name"]: c for c in bom["components"]}
    weights = comps["model.safetensors"]
    assert weights["type"] == "machine-learning-model"
    assert weights["hashes"] == [{"alg": "SHA-256", "content": sha}]
    props = {(p["name"], p["value"]) for p in weights["properties"]}
    assert ("hubgate:decided_by", "admin:alice") in props
    assert ("hubgate:finding", "modelscan low r1: odd header") in props
    assert ("hubgate:engine:modelscan", "0.8.1") in props
    tools = {t["name"] for t in bom["metadata"]["tools"]["components"]}
    assert {"hubgate", "modelscan", "fickling"} <= tools


def test_licenses_from_card() -> None:
    assert licenses_from_card({"license": ["mit", "apache-2.0"]}) == ["mit", "apache-2.0"]
    assert licenses_from_card(None, ["license:llama3", "pytorch"]) == ["llama3"]
    assert licenses_from_card({}, []) == []
