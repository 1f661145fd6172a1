"""Export from one hubgate's state, import into another's: real Redis (two key spaces), real BlobStores,
the real scanner and the real default policy. No HTTP: the bundle commands work on Redis + the data dir."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import resource
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from proxy.bundle import signing
from proxy.bundle.archive import BundleRefused
from proxy.bundle.export import ExportError, Selection, parse_repo_spec, plan_export, write_bundle
from proxy.bundle.importer import ImportResult, import_bundle
from proxy.models import ArtifactRef, Verdict, VerdictStatus
from proxy.policy import default_policy
from tests.integration.bundle_seed import Side, ThreadScanner, make_side, seed, weights

COMMIT = "c" * 40
NC_COMMIT = "d" * 40


@pytest.fixture
async def sides(redis_url: str, redis_prefix: str, tmp_path: Path):
    outside = await make_side(redis_url, tmp_path / "outside", redis_prefix + "out:")
    inside = await make_side(redis_url, tmp_path / "inside", redis_prefix + "in:")
    yield outside, inside
    for side in (outside, inside):
        await side.blobs.drain()
        await side.store.close()


async def _export(side: Side, tmp_path: Path, key, *specs: str, all_approved: bool = False) -> Path:
    selection = Selection(repos=[parse_repo_spec(s) for s in specs], all_approved=all_approved)
    plan = await plan_export(
        side.store, selection, blob_path=side.blobs.blob_path, key_id=signing.key_id(key.public_key())
    )
    out = tmp_path / "bundle.tar"
    await asyncio.to_thread(write_bundle, plan, key, out)
    return out


async def _keys(redis_url: str, prefix: str) -> list[str]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return [k async for k in client.scan_iter(match=f"{prefix}*")]
    finally:
        await client.aclose()


async def _import(
    inside: Side, bundle: Path | bytes, trusted: Ed25519PublicKey, *, scanner: ThreadScanner | None, **options: Any
) -> ImportResult:
    """`import_bundle` of a bundle file (or its raw bytes) into `inside`, under the default policy."""
    with io.BytesIO(bundle) if isinstance(bundle, bytes) else bundle.open("rb") as src:
        return await import_bundle(
            src,
            trusted=trusted,
            store=inside.store,
            blobs=inside.blobs,
            policy=default_policy(),
            scanner=scanner,
            **options,
        )


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and "redis" not in p.parts]


async def test_export_then_import_rescans_applies_inside_policy_and_audits(sides, tmp_path: Path) -> None:
    outside, inside = sides
    key = signing.generate()
    files = {"config.json": b'{"model_type": "bert"}', "model.safetensors": weights(), "extra.bin": b"xx"}
    await seed(outside, "org/model", COMMIT, files, license="apache-2.0", quarantined={"extra.bin"})
    await seed(
        outside,
        "org/nc-model",
        NC_COMMIT,
        {"model.safetensors": weights() + b""},
        license="cc-by-nc-4.0",
        admin={"model.safetensors"},
    )
    bundle = await _export(outside, tmp_path, key, "org/model", "org/nc-model@main")

    started = time.time()
    result = await _import(inside, bundle, key.public_key(), scanner=ThreadScanner(), source_name="bundle.tar")
    statuses = {(f.ref.split("@")[0], f.ref.rsplit(":", 1)[1]): f.status for f in result.files}
    assert statuses == {  # extra.bin was quarantined outside: never exported
        ("org/model", "config.json"): VerdictStatus.APPROVED,
        ("org/model", "model.safetensors"): VerdictStatus.APPROVED,
        # approved by an outside admin over a non-commercial license: the inside policy blocks it
        ("org/nc-model", "model.safetensors"): VerdictStatus.BLOCKED,
    }
    store = inside.store
    # approved bytes are servable inside; the blocked one is held in quarantine, never in blobs/
    weights_sha = hashlib.sha256(weights()).hexdigest()
    assert inside.blobs.blob_path(weights_sha) is not None
    nc = (await store.find_verdicts("org/nc-model", "model.safetensors"))[0]
    assert nc.status is VerdictStatus.BLOCKED and "cc-by-nc-4.0" in " ".join(nc.reasons)
    assert nc.policy_hash == default_policy().hash
    # rescanned with the inside engines, recorded
    ok = (await store.find_verdicts("org/model", "model.safetensors"))[0]
    fresh = await store.get_scan(weights_sha)
    assert fresh is not None and fresh.scanned_at >= started  # scanned here, not copied from outside
    assert ok.engines == fresh.engines and ok.decided_by == "policy"
    # metadata for offline serving
    assert await store.get_revision_offline("model", "org/model", "main") == COMMIT
    assert (await store.get_doc("info", f"model:org/model:{COMMIT}"))["sha"] == COMMIT
    page2 = await store.get_doc("tree", f"model:org/model:{COMMIT}::true:p2")
    assert page2["items"][0]["path"] == "model.safetensors"
    meta = await store.get_file_meta("model", "org/model", COMMIT, "config.json")
    assert meta is not None and meta.sha256 == hashlib.sha256(files["config.json"]).hexdigest()
    assert await store.get_file_meta("model", "org/model", COMMIT, "extra.bin") is None
    bom = await store.get_doc("bom", f"model:org/model:{COMMIT}")
    assert bom["metadata"]["component"]["name"] == "org/model"
    # the audit stream records the import and each verdict
    audit = await store.read_audit()
    summary = [e for e in audit if e["event"] == "bundle-import"]
    assert len(summary) == 1 and summary[0]["approved"] == "2" and summary[0]["blocked"] == "1"
    assert summary[0]["key_id"] == signing.key_id(key.public_key())
    imports = [e for e in audit if e["event"] == "import"]
    assert len(imports) == 3
    assert json.loads(imports[0]["detail"])["trusted_verdicts"] is False


async def test_trust_verdicts_honours_outside_admin_but_not_over_an_inside_block(sides, tmp_path: Path) -> None:
    outside, inside = sides
    key = signing.generate()
    # custom code: the default policy quarantines it; an outside admin approved it
    await seed(outside, "org/coder", COMMIT, {"modeling.py": b"import torch\n"}, license="mit", admin={"modeling.py"})
    bundle = await _export(outside, tmp_path, key, f"org/coder@{COMMIT}")
    plain = await _import(inside, bundle, key.public_key(), scanner=ThreadScanner())
    assert [f.status for f in plain.files] == [VerdictStatus.QUARANTINED]
    trusted = await _import(inside, bundle, key.public_key(), scanner=None, trust_verdicts=True)
    [f] = trusted.files
    assert f.status is VerdictStatus.APPROVED
    kid = signing.key_id(key.public_key())
    assert f.decided_by == f"admin:alice@bundle:{kid}"
    verdict = await inside.store.get_verdict(f.artifact_id)
    assert verdict is not None and verdict.policy_status is VerdictStatus.QUARANTINED
    assert "trusted on import" in verdict.admin_reason
    assert inside.blobs.blob_path(verdict.sha256) is not None


@pytest.mark.parametrize("where", ["manifest", "signature", "metadata", "blob", "truncate", "wrong-key"])
async def test_a_bad_bundle_is_refused_whole_and_leaves_nothing(sides, tmp_path: Path, redis_url, where) -> None:
    outside, inside = sides
    key = signing.generate()
    await seed(
        outside, "org/model", COMMIT, {"model.safetensors": weights(), "config.json": b"{}"}, license="apache-2.0"
    )
    bundle = await _export(outside, tmp_path, key, "org/model")
    raw = bytearray(bundle.read_bytes())
    with tarfile.open(bundle) as tar:
        members = {m.name: m for m in tar.getmembers()}
    trusted = key.public_key()
    if where == "truncate":
        raw = raw[: len(raw) // 2]
    elif where == "wrong-key":
        trusted = signing.generate().public_key()
    else:
        name = {
            "manifest": "manifest.json",
            "signature": "manifest.sig",
            "metadata": "snapshots/0/metadata.json",
            "blob": next(n for n in members if n.startswith("blobs/")),
        }[where]
        m = members[name]
        raw[m.offset_data + m.size // 2] ^= 0x20
    before = await _keys(redis_url, inside.prefix)
    with pytest.raises(BundleRefused):
        await _import(inside, bytes(raw), trusted, scanner=ThreadScanner())
    assert await _keys(redis_url, inside.prefix) == before == []
    assert _files_under(tmp_path / "inside") == []


async def test_only_approved_content_is_exported(sides, tmp_path: Path) -> None:
    outside, _ = sides
    key = signing.generate()
    await seed(outside, "org/held", COMMIT, {"a.bin": b"a"}, license="mit", quarantined={"a.bin"})
    with pytest.raises(ExportError, match="nothing approved"):
        await _export(outside, tmp_path, key, "org/held")
    with pytest.raises(ExportError, match="unknown to this hubgate"):
        await _export(outside, tmp_path, key, "org/held@v9")
    assert not (tmp_path / "bundle.tar").exists()
    # a blob that rotted on disk after approval is not shipped under a signature
    await seed(outside, "org/rot", COMMIT, {"w.safetensors": weights()}, license="mit")
    blob = outside.blobs.blob_path(hashlib.sha256(weights()).hexdigest())
    blob.write_bytes(b"\0" * blob.stat().st_size)
    with pytest.raises(Exception, match="sha256 differs"):
        await _export(outside, tmp_path, key, "org/rot")
    assert list(tmp_path.glob("bundle.tar*")) == []


async def test_torch_weights_travel_by_name(sides, tmp_path: Path) -> None:
    """`--torch NAME`: a vetted download.pytorch.org weight exports and imports like a repo file."""
    outside, inside = sides
    key = signing.generate()
    data = weights()
    sha = hashlib.sha256(data).hexdigest()
    async with outside.blobs.open_tmp(expected_size=len(data)) as writer:
        await writer.write(data)
        await outside.blobs.quarantine(writer)
    await outside.blobs.promote(sha)
    ref = ArtifactRef(source="torch", repo_id="download.pytorch.org", commit="-", path="models/tiny-0123abcd.pth")
    verdict = Verdict(
        artifact_id=ref.artifact_id,
        status=VerdictStatus.APPROVED,
        sha256=sha,
        size=len(data),
        source="torch",
        repo_id=ref.repo_id,
        commit="-",
        path=ref.path,
        policy_hash="outside",
        decided_by="admin:bob",
        admin_status=VerdictStatus.APPROVED,
        admin_by="bob",
    )
    await outside.store.put_verdict(verdict, event="decision", actor="admin:bob")
    with pytest.raises(ExportError, match="never vetted"):
        await plan_export(
            outside.store, Selection(torch=["nope-00000000.pth"]), blob_path=outside.blobs.blob_path, key_id="k"
        )
    plan = await plan_export(
        outside.store,
        Selection(torch=["https://download.pytorch.org/models/tiny-0123abcd.pth"]),
        blob_path=outside.blobs.blob_path,
        key_id="k",
    )
    [snap] = plan.manifest.snapshots
    assert (snap.source, snap.commit, snap.files[0].decided_by) == ("torch", "-", "admin:bob")
    out = tmp_path / "torch.tar"
    await asyncio.to_thread(write_bundle, plan, key, out)
    result = await _import(inside, out, key.public_key(), scanner=ThreadScanner())
    [f] = result.files
    inside_verdict = await inside.store.get_verdict(ref.artifact_id)
    assert inside_verdict is not None and inside_verdict.source == "torch" and f.artifact_id == ref.artifact_id
    # the inside policy decided on the inside scan (the outside admin is not trusted without the flag)
    assert inside_verdict.decided_by == "policy" and inside_verdict.scan_verdict is not None


async def test_many_files_import_with_few_descriptors(sides, tmp_path: Path) -> None:
    """One descriptor per blob at a time: 300 files import with only 100 descriptors to spare."""
    outside, inside = sides
    key = signing.generate()
    files = {f"shards/part-{i:04d}.json": b'{"i": %d}' % i for i in range(300)}
    await seed(outside, "org/many", COMMIT, files, license="mit")
    bundle = await _export(outside, tmp_path, key, "org/many")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = len(os.listdir("/proc/self/fd"))  # whatever this test process already holds (other tests too)
    resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 100, hard))
    try:
        result = await _import(inside, bundle, key.public_key(), scanner=None, trust_verdicts=True)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert len(result.files) == 300
    assert result.count(VerdictStatus.APPROVED) == 300
