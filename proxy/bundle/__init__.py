"""Signed export/import bundles for air-gapped hubgates.

manifest.py  the signed manifest (pure): members with size + sha256, approvals, policy hashes, engines
signing.py   Ed25519 keys (PEM or raw base64) and the manifest signature
archive.py   streaming tar writer/reader in constant memory; verification before anything is committed
bom.py       CycloneDX 1.6 ML-BOM per exported snapshot
export.py    plan (Redis → manifest) and write (blobs → signed tar)
importer.py  verify → vet with the inside engines and policy → commit → audit
"""
