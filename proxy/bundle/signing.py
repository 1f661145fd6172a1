"""Ed25519 keys and signatures for bundles (the `cryptography` library; nothing hand-rolled).

Key files, as `hubgate keygen` writes them and `--trust-key` / the export key accept them:
- private key: PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), written with mode 0600; or the raw 32-byte
  seed in base64 on one line.
- public key: SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`), or the raw 32 bytes in base64 on one
  line (what `keygen` prints, handy to paste into a config on the air-gapped side).

What is signed: `b"hubgate-bundle-v1\\0" + manifest bytes` (the prefix keeps a bundle signature from ever
being valid for some other message signed with the same key). The signature member is JSON:
`{"alg": "ed25519", "key_id": "<16 hex>", "signature": "<base64 of 64 bytes>"}`; `key_id` is the first
16 hex digits of sha256(raw public key), informative only: verification always uses the trusted key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIGNATURE_CONTEXT = b"hubgate-bundle-v1\0"
ALG = "ed25519"
MAX_SIGNATURE_BYTES = 4096


class KeyFileError(ValueError):
    """A key file cannot be read as an Ed25519 key."""


class SignatureError(ValueError):
    """A signature is missing, malformed, from another key, or does not verify."""


def raw_public(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public: Ed25519PublicKey) -> str:
    return hashlib.sha256(raw_public(public)).hexdigest()[:16]


def generate() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def keygen(private_path: Path, public_path: Path, *, overwrite: bool = False) -> Ed25519PublicKey:
    """Write a new key pair (private PEM with mode 0600, public PEM) and return the public key."""
    for path in (private_path, public_path):
        if path.exists() and not overwrite:
            raise KeyFileError(f"{path} already exists; refusing to overwrite a key (remove it first)")
    private = generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    private_path.parent.mkdir(parents=True, exist_ok=True)
    # Created 0600 from the start, so the private key is never readable by others, not even briefly.
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(private_path, flags, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public = private.public_key()
    public_path.write_bytes(
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return public


def public_b64(public: Ed25519PublicKey) -> str:
    return base64.b64encode(raw_public(public)).decode()


def load_private(path: Path) -> Ed25519PrivateKey:
    data = _read_key_file(path)
    if b"-----BEGIN" in data:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise KeyFileError(f"{path}: not an unencrypted PEM private key ({exc})") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{path}: a {type(key).__name__}, not an Ed25519 private key")
        return key
    return Ed25519PrivateKey.from_private_bytes(_raw_b64(data, path))


def load_public(path: Path) -> Ed25519PublicKey:
    data = _read_key_file(path)
    if b"PRIVATE" in data:
        raise KeyFileError(f"{path}: this is a private key; pass the public key")
    if b"-----BEGIN" in data:
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as exc:
            raise KeyFileError(f"{path}: not a PEM public key ({exc})") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFileError(f"{path}: a {type(key).__name__}, not an Ed25519 public key")
        return key
    return Ed25519PublicKey.from_public_bytes(_raw_b64(data, path))


def sign(private: Ed25519PrivateKey, manifest: bytes) -> bytes:
    """The signature member's bytes for these manifest bytes."""
    signature = private.sign(SIGNATURE_CONTEXT + manifest)
    doc = {
        "alg": ALG,
        "key_id": key_id(private.public_key()),
        "signature": base64.b64encode(signature).decode(),
    }
    return json.dumps(doc, sort_keys=True).encode()


def verify(public: Ed25519PublicKey, manifest: bytes, signature_member: bytes) -> None:
    """Raise SignatureError unless `signature_member` is a valid signature of `manifest` by `public`."""
    if len(signature_member) > MAX_SIGNATURE_BYTES:
        raise SignatureError("signature member is too large to be an Ed25519 signature")
    try:
        doc = json.loads(signature_member)
        alg, sig_b64 = doc["alg"], doc["signature"]
        signature = base64.b64decode(sig_b64, validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise SignatureError(f"signature member is malformed: {exc}") from exc
    if alg != ALG:
        raise SignatureError(f"signature algorithm {alg!r} is not accepted (only {ALG})")
    try:
        public.verify(signature, SIGNATURE_CONTEXT + manifest)
    except InvalidSignature as exc:
        claimed = doc.get("key_id", "?")
        raise SignatureError(
            f"bad signature: the manifest was not signed by the trusted key {key_id(public)} "
            f"(bundle claims key {claimed}) or it was altered after signing"
        ) from exc


def _read_key_file(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from exc
    if len(data) > 64 * 1024:
        raise KeyFileError(f"{path} is too large to be a key file")
    return data.strip()


def _raw_b64(data: bytes, path: Path) -> bytes:
    try:
        raw = base64.b64decode(data, validate=True)
    except binascii.Error as exc:
        raise KeyFileError(f"{path}: neither PEM nor base64 ({exc})") from exc
    if len(raw) != 32:
        raise KeyFileError(f"{path}: a raw Ed25519 key is 32 bytes, this one is {len(raw)}")
    return raw
