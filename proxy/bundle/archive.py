"""Streaming tar I/O for bundles, in constant memory: no blob is ever held whole.

Writing: `BundleWriter` emits `manifest.json`, `manifest.sig`, then each member in manifest order, hashing
the bytes as they are copied and failing if they differ from what the manifest promised (a blob that rotted
on disk is never shipped under a signature that vouches for it).

Reading: `read_bundle` consumes the tar as a stream (a pipe works), checks the signature *before* touching
any data member, then copies each blob into a sink the caller provides (a TmpWriter under tmp/ on import),
hashing as it goes, and checks its name, order, size and sha256 against the signed manifest; anything
extra, missing, short or different raises `BundleRefused`. The caller commits what its sinks received only
after `read_bundle` returned, and discards it otherwise, so a refused bundle leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from proxy.bundle import signing
from proxy.bundle.manifest import (
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    SIGNATURE_NAME,
    Manifest,
    ManifestError,
    Member,
    MemberKind,
    parse_manifest,
)

CHUNK = 1024 * 1024
MAX_SMALL_MEMBER = 256 * 1024**2  # metadata and BOMs are held in memory; blobs never are
Progress = Callable[[int], None]


class BundleRefused(Exception):
    """The bundle cannot be trusted (signature, hash, size, truncation, layout): refused whole."""


class ExportIntegrityError(Exception):
    """A blob read for export does not match its recorded size or sha256."""


def _noop(_: int) -> None:
    return None


class _HashingReader:
    """File wrapper that hashes (and counts) what tarfile reads through it."""

    def __init__(self, raw: IO[bytes], progress: Progress) -> None:
        self._raw = raw
        self._progress = progress
        self.hasher = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.hasher.update(data)
        self.count += len(data)
        self._progress(len(data))
        return data


class BundleWriter:
    """Writes a bundle as an uncompressed PAX tar stream.

    Uncompressed because model weights do not compress; PAX because it has no 8 GiB member limit.
    """

    def __init__(self, out: IO[bytes], manifest: bytes, signature: bytes, progress: Progress | None = None) -> None:
        # Not a `with`: the writer outlives this call and closes (or aborts) the stream itself.
        # (typeshed lacks `copybufsize`, a documented TarFile argument.)
        self._tar = tarfile.open(  # type: ignore[call-overload]  # noqa: SIM115
            fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, copybufsize=CHUNK
        )
        self._progress = progress or _noop
        self._add(MANIFEST_NAME, manifest)
        self._add(SIGNATURE_NAME, signature)

    def _info(self, name: str, size: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = 0o644
        info.mtime = 0  # reproducible bytes: the manifest carries the real times
        return info

    def _add(self, name: str, data: bytes) -> None:
        self._tar.addfile(self._info(name, len(data)), io.BytesIO(data))

    def add_bytes(self, member: Member, data: bytes) -> None:
        """A small member (metadata, BOM) whose bytes were hashed into the manifest already."""
        if len(data) != member.size or hashlib.sha256(data).hexdigest() != member.sha256:
            raise ExportIntegrityError(f"{member.name}: bytes differ from the manifest entry")
        self._add(member.name, data)
        self._progress(len(data))

    def add_file(self, member: Member, path: Path) -> None:
        """Stream one file into the tar, verifying size and sha256 on the way."""
        with path.open("rb") as fh:
            reader = _HashingReader(fh, self._progress)
            try:
                self._tar.addfile(self._info(member.name, member.size), reader)
            except OSError as exc:  # tarfile: "unexpected end of data" when the file is short
                raise ExportIntegrityError(f"{path}: shorter than the recorded {member.size} bytes") from exc
            if fh.read(1):
                raise ExportIntegrityError(f"{path}: longer than the recorded {member.size} bytes")
        if reader.hasher.hexdigest() != member.sha256:
            raise ExportIntegrityError(f"{path}: sha256 differs from the approved {member.sha256}; not exported")

    def close(self) -> None:
        self._tar.close()

    def abort(self) -> None:
        """Give up without writing the end-of-archive marker (the caller deletes the partial file)."""
        # tarfile would otherwise flush its buffer on garbage collection, into a file we already closed.
        self._tar.closed = True
        self._tar.fileobj.closed = True

    def __enter__(self) -> BundleWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class Sink(Protocol):
    """Where one blob member's bytes go while they are verified (a file in a staging dir, a TmpWriter).
    `close()` is called once the member's bytes are all written (verified or not), so a bundle of many
    thousand files never holds more than one file open."""

    def write(self, chunk: bytes) -> None: ...

    def close(self) -> None: ...


SinkFactory = Callable[[int, Member], Sink]  # (member index, member) -> sink; called once per blob


@dataclass
class VerifiedBundle:
    """A bundle whose signature and every member hash checked out.

    Blob bytes went to the caller's sinks (nothing from the bundle ever names a path on disk); small members
    (metadata, BOMs) are kept here, bounded by MAX_SMALL_MEMBER each.
    """

    manifest: Manifest
    manifest_bytes: bytes
    small: dict[str, bytes] = field(default_factory=dict)


class DirectorySinks:
    """A SinkFactory writing blob members to `<dir>/<index>` (tests, `hubgate import --verify-only`)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.paths: dict[str, Path] = {}
        self._open: list[IO[bytes]] = []

    def __call__(self, index: int, member: Member) -> Sink:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{index:06d}"
        self.paths[member.name] = path
        fh = path.open("wb")
        self._open.append(fh)
        return fh  # type: ignore[return-value]

    def close(self) -> None:
        for fh in self._open:
            fh.close()
        self._open.clear()


def read_bundle(
    src: IO[bytes], trusted: Ed25519PublicKey, sinks: SinkFactory, progress: Progress = _noop
) -> VerifiedBundle:
    """Verify a bundle stream, sending each blob to `sinks`; raise BundleRefused on anything that does not
    match. The caller must treat everything its sinks received as untrusted until this returns."""
    counted = _CountingReader(src)
    try:
        # Closed in the `finally` below (a `with` could not tell an unreadable stream from a bad bundle).
        tar = tarfile.open(fileobj=counted, mode="r|", copybufsize=CHUNK)  # type: ignore[call-overload]  # noqa: SIM115
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BundleRefused(f"not a readable bundle (an uncompressed tar is expected): {exc}") from exc
    try:
        verified = _read(tar, trusted, sinks, progress)
        _check_end(tar, counted)
        return verified
    except (tarfile.TarError, EOFError) as exc:
        raise BundleRefused(f"bundle is truncated or corrupt: {exc}") from exc
    finally:
        tar.close()


class _CountingReader:
    """Counts the bytes the tar stream consumed, to prove the end-of-archive marker was there."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.count += len(data)
        return data


def _check_end(tar: tarfile.TarFile, counted: _CountingReader) -> None:
    """After the last member, the two zero blocks that end a tar must be present (a cut there is a cut)."""
    marker_end = tar.offset + 2 * tarfile.BLOCKSIZE
    # Drain the record padding; a writer pads to 10 KiB, so much more than that is not ours.
    while counted.count < marker_end + 2 * tarfile.RECORDSIZE and counted.read(CHUNK):
        pass
    if counted.count < marker_end:
        raise BundleRefused("bundle is truncated: the end-of-archive marker is missing")


def _read(tar: tarfile.TarFile, trusted: Ed25519PublicKey, sinks: SinkFactory, progress: Progress) -> VerifiedBundle:
    manifest_raw = _small_member(tar, MANIFEST_NAME, MAX_MANIFEST_BYTES)
    signature_raw = _small_member(tar, SIGNATURE_NAME, signing.MAX_SIGNATURE_BYTES)
    try:
        signing.verify(trusted, manifest_raw, signature_raw)
    except signing.SignatureError as exc:
        raise BundleRefused(str(exc)) from exc
    try:
        manifest = parse_manifest(manifest_raw)
    except ManifestError as exc:  # signed but unusable (e.g. a newer format): still refused
        raise BundleRefused(f"manifest: {exc}") from exc
    verified = VerifiedBundle(manifest=manifest, manifest_bytes=manifest_raw)
    for index, expected in enumerate(manifest.members):
        info = tar.next()
        if info is None:
            raise BundleRefused(f"bundle is truncated: member {expected.name} (and any after it) is missing")
        _check_header(info, expected)
        if expected.kind is MemberKind.BLOB:
            sink = sinks(index, expected)
            try:
                _copy_verified(tar, info, expected, sink, progress)
            finally:
                sink.close()
        else:
            if expected.size > MAX_SMALL_MEMBER:
                raise BundleRefused(f"member {expected.name} is larger than {MAX_SMALL_MEMBER} bytes")
            buffer = _Buffer()
            _copy_verified(tar, info, expected, buffer, progress)
            verified.small[expected.name] = bytes(buffer.data)
    extra = tar.next()
    if extra is not None:
        raise BundleRefused(f"bundle holds a member the manifest does not list: {extra.name!r}")
    return verified


class _Buffer:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, chunk: bytes) -> None:
        self.data += chunk

    def close(self) -> None:
        return None


def _small_member(tar: tarfile.TarFile, name: str, limit: int) -> bytes:
    info = tar.next()
    if info is None:
        raise BundleRefused(f"bundle has no {name}; unsigned or empty bundles are refused")
    if info.name != name or not info.isreg():
        raise BundleRefused(f"bundle must start with {MANIFEST_NAME} then {SIGNATURE_NAME}; found {info.name!r}")
    if info.size > limit:
        raise BundleRefused(f"{name} is {info.size} bytes, more than {limit}")
    fh = tar.extractfile(info)
    assert fh is not None  # a regular file always has data
    data = fh.read()
    if len(data) != info.size:
        raise BundleRefused(f"bundle is truncated inside {name}")
    return data


def _check_header(info: tarfile.TarInfo, expected: Member) -> None:
    if info.name != expected.name:
        raise BundleRefused(f"member {info.name!r} found where the manifest lists {expected.name!r}")
    if not info.isreg():
        raise BundleRefused(f"member {info.name!r} is not a regular file")
    if info.size != expected.size:
        raise BundleRefused(f"member {info.name!r} is {info.size} bytes; the manifest says {expected.size}")


def _copy_verified(
    tar: tarfile.TarFile, info: tarfile.TarInfo, expected: Member, out: Sink, progress: Progress
) -> None:
    fh = tar.extractfile(info)
    assert fh is not None
    hasher = hashlib.sha256()
    copied = 0
    while chunk := fh.read(CHUNK):
        hasher.update(chunk)
        out.write(chunk)
        copied += len(chunk)
        progress(len(chunk))
    if copied != expected.size:
        raise BundleRefused(f"bundle is truncated inside {expected.name} ({copied} of {expected.size} bytes)")
    if hasher.hexdigest() != expected.sha256:
        raise BundleRefused(f"member {expected.name} does not match its sha256 in the signed manifest")


@contextmanager
def progress_bar(total: int, description: str, *, enabled: bool = True) -> Iterator[Progress]:
    """A rich progress bar over `total` bytes; yields the advance callback (a no-op when disabled)."""
    if not enabled:
        yield _noop
        return
    from rich.progress import BarColumn, DownloadColumn, TimeRemainingColumn, TransferSpeedColumn
    from rich.progress import Progress as RichProgress

    with RichProgress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
