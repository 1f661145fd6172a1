"""Bundle streaming figures: export and import of one large blob, with peak RSS, time and throughput.

    .venv/bin/python bench/bundle_bench.py [--size-mb 400] [--json]

Runs against a private embedded Redis and temp data dirs. The import re-scan is skipped (`--trust-verdicts`
path, no engines): scans run in the scan pool's worker processes under their own memory cap, so this
measures the bundle I/O alone. Peak RSS is the process high-water mark (ru_maxrss) after each phase, minus
the mark before it: constant memory means the growth stays far below the blob size.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from proxy.bundle import signing
from proxy.bundle.export import Selection, parse_repo_spec, plan_export, write_bundle
from proxy.bundle.importer import import_bundle
from proxy.models import ArtifactRef, FileMeta, ScanReport, ScanVerdict, Verdict, VerdictStatus
from proxy.policy import default_policy
from proxy.redis_embedded import EmbeddedRedis
from proxy.store import BlobStore
from proxy.verdicts import VerdictStore

MIB = 1024 * 1024
COMMIT = "b" * 40
REPO = "bench/big-model"


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


async def _seed(store: VerdictStore, blobs: BlobStore, size_mb: int) -> str:
    block = os.urandom(MIB)
    hasher = hashlib.sha256()
    async with blobs.open_tmp(expected_size=size_mb * MIB, git_size_header=False) as writer:
        for i in range(size_mb):
            chunk = i.to_bytes(8, "big") + block[8:]
            hasher.update(chunk)
            await writer.write(chunk)
        await blobs.quarantine(writer)
    sha = hasher.hexdigest()
    await blobs.promote(sha)
    size = size_mb * MIB
    path = "model.safetensors"
    await store.set_revision("model", REPO, "main", COMMIT, 300)
    await store.set_doc(
        "info", f"model:{REPO}:{COMMIT}", {"id": REPO, "sha": COMMIT, "cardData": {"license": "apache-2.0"}}
    )
    await store.set_file_meta("model", REPO, COMMIT, FileMeta(path=path, size=size, sha256=sha, lfs=True))
    await store.set_scan(ScanReport(sha256=sha, size=size, path=path, verdict=ScanVerdict.CLEAN))
    ref = ArtifactRef(repo_id=REPO, commit=COMMIT, path=path)
    verdict = Verdict(
        artifact_id=ref.artifact_id,
        status=VerdictStatus.APPROVED,
        sha256=sha,
        size=size,
        repo_id=REPO,
        commit=COMMIT,
        path=path,
        policy_hash="bench",
        scan_verdict=ScanVerdict.CLEAN,
    )
    await store.put_verdict(verdict, event="decision", actor="bench")
    return sha


async def run(size_mb: int) -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="hgbench-", dir="/tmp"))
    figures: dict[str, float] = {"size_mib": size_mb}
    try:
        with EmbeddedRedis(root / "r") as redis_server:
            outside = await VerdictStore.connect(redis_server.url, prefix="out:")
            inside = await VerdictStore.connect(redis_server.url, prefix="in:")
            out_blobs, in_blobs = BlobStore(root / "a"), BlobStore(root / "b")
            out_blobs.startup()
            in_blobs.startup()
            await _seed(outside, out_blobs, size_mb)
            await out_blobs.drain()
            key = signing.generate()
            bundle = root / "bundle.tar"

            base = peak_mib()
            started = time.perf_counter()
            plan = await plan_export(
                outside, Selection(repos=[parse_repo_spec(REPO)]), blob_path=out_blobs.blob_path, key_id="bench"
            )
            await asyncio.to_thread(write_bundle, plan, key, bundle)
            figures["export_s"] = time.perf_counter() - started
            figures["export_rss_growth_mib"] = peak_mib() - base

            base = peak_mib()
            started = time.perf_counter()
            with bundle.open("rb") as fh:
                result = await import_bundle(
                    fh,
                    trusted=key.public_key(),
                    store=inside,
                    blobs=in_blobs,
                    policy=default_policy(),
                    scanner=None,
                    trust_verdicts=True,
                )
            await in_blobs.drain()
            figures["import_s"] = time.perf_counter() - started
            figures["import_rss_growth_mib"] = peak_mib() - base
            figures["imported_files"] = len(result.files)
            figures["export_mib_per_s"] = size_mb / figures["export_s"]
            figures["import_mib_per_s"] = size_mb / figures["import_s"]
            figures["peak_rss_mib"] = peak_mib()
            await outside.close()
            await inside.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=400)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = asyncio.run(run(args.size_mb))
    if args.json:
        print(json.dumps(figures))
    else:
        for name, value in figures.items():
            print(f"{name:>24}: {value:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
