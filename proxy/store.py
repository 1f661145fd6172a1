"""Content-addressed blob storage: the only module that writes model files. It answers paths; it never serves.

Layout under the data dir:

    tmp/                         downloads in progress; deleted at start-up
    quarantine/<sha256>          fetched and verified, not approved: never served
    blobs/sha256/<aa>/<sha256>   approved: the only place bytes are served from
    pending-durable/<sha256>     marker (holds the size): the bytes under that digest are not yet known
                                 to be on disk

Every move is an atomic `rename` inside one file system, so a crash leaves either the old name or the new
one, never a half-moved file. Durability is made in the background (fsync of 1 GiB takes ~2.7 s on our disk,
longer than the transfer): before a file takes a digest name a marker is written *and fsynced*; a
background thread fsyncs the file and its directories and then drops the marker. At start-up every marked
file is re-verified (size, then the full sha256) and a torn one is deleted and reported, so a crash never
leaves a torn file to be scanned or served. Stale metadata is allowed, stale bytes never.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from proxy.errors import Unavailable

log = logging.getLogger(__name__)

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
WRITE_BUFFER = 4 * 1024 * 1024  # bytes gathered before one write+hash hop off the event loop
GIT_SHA1_STREAM_MAX = 512 * 1024 * 1024  # "auto": hash the git blob id while streaming up to this size
GIT_SHA1_REREAD_MAX = 64 * 1024 * 1024  # size unknown up front: re-read to get the git blob id up to this
READ_CHUNK = 8 * 1024 * 1024


def _storage_error(action: str, exc: OSError) -> Unavailable:
    return Unavailable(f"hubgate: storage is unavailable ({action}: {exc}); refusing to serve until it is fixed")


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (a directory makes its renames durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(READ_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def git_blob_sha1(path: Path, size: int) -> str:
    """`git hash-object` of a file: sha1 of `blob <size>\\0` + content."""
    digest = hashlib.sha1(b"blob %d\0" % size)
    with path.open("rb") as f:
        while block := f.read(READ_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _check_sha(sha256: str) -> str:
    if not SHA256_RE.fullmatch(sha256):
        raise ValueError(f"hubgate: {sha256!r} is not a lowercase hex sha256 digest")
    return sha256


@dataclass
class StartupReport:
    """What start-up found and did; `summary()` is the log line."""

    tmp_files_removed: int = 0
    tmp_bytes_removed: int = 0
    pending_verified: list[str] = field(default_factory=list)  # marked blobs that proved intact
    torn_removed: list[str] = field(default_factory=list)  # "<where>/<sha256>: <why>" deleted files
    stale_markers: int = 0  # markers whose file was gone

    def __str__(self) -> str:
        return self.summary()

    def summary(self) -> str:
        return (
            f"storage start-up: removed {self.tmp_files_removed} leftover download(s) "
            f"({self.tmp_bytes_removed} bytes) from tmp/; re-verified {len(self.pending_verified)} blob(s) "
            f"of unconfirmed durability; deleted {len(self.torn_removed)} torn file(s)"
            + (f": {', '.join(self.torn_removed)}" if self.torn_removed else "")
        )


class TmpWriter:
    """A download in progress under tmp/. Use as `async with store.open_tmp(size) as w:`; leaving the block
    without `store.quarantine(w)` deletes the file (a cut transfer leaves nothing)."""

    def __init__(self, tmp_dir: Path, expected_size: int | None, git_size_header: bool | None) -> None:
        self._tmp_dir = tmp_dir
        self.expected_size = expected_size
        # git_size_header: True always computes the git blob id, False never, None ("auto") for files that
        # could be git blobs: streamed when the size is known (<= 512 MiB), else re-read if <= 64 MiB.
        self._want_git = git_size_header
        stream_git = expected_size is not None and (
            git_size_header is True or (git_size_header is None and expected_size <= GIT_SHA1_STREAM_MAX)
        )
        self._sha256 = hashlib.sha256()
        self._sha1 = hashlib.sha1(b"blob %d\0" % expected_size) if stream_git and expected_size is not None else None
        self._buffer = bytearray()
        # At most one buffer is being written+hashed in a thread while the next one fills (double
        # buffering: the transfer does not wait for the disk chunk by chunk).
        self._inflight: asyncio.Future[None] | None = None
        self._fd: int | None = None
        self.path: Path = tmp_dir  # set on entry
        self.size = 0  # bytes received so far (buffered included)
        self._sha256_hex: str | None = None
        self._git_sha1_hex: str | None = None
        self._finished = False
        self.committed = False  # set by BlobStore.quarantine once the file has a digest name

    async def __aenter__(self) -> TmpWriter:
        try:
            fd, name = await asyncio.to_thread(tempfile.mkstemp, dir=self._tmp_dir, prefix="dl-")
        except OSError as exc:
            raise _storage_error(f"create a file in {self._tmp_dir}", exc) from exc
        self._fd, self.path = fd, Path(name)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            # Leaving early: the thread must be done with the fd before it is closed.
            try:
                await asyncio.wait([inflight])
            except asyncio.CancelledError:
                inflight.add_done_callback(lambda _: self._discard())
                raise
            if not inflight.cancelled():
                inflight.exception()  # retrieved: the error that matters is the one already raised
        self._discard()

    def _discard(self) -> None:
        self._close()
        if not self.committed:
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)

    async def write(self, chunk: bytes) -> None:
        if self._finished:
            raise RuntimeError("TmpWriter.write after finish()")
        self._buffer += chunk
        self.size += len(chunk)
        if len(self._buffer) >= WRITE_BUFFER:
            await self._settle()
            data, self._buffer = self._buffer, bytearray()
            self._inflight = asyncio.ensure_future(self._flush(data))

    async def finish(self) -> None:
        """Flush, close and finalize the digests. Idempotent; `quarantine` calls it too."""
        if self._finished:
            return
        await self._settle()
        if self._buffer:
            data, self._buffer = self._buffer, bytearray()
            await self._flush(data)
        self._close()
        self._finished = True
        self._sha256_hex = self._sha256.hexdigest()
        if self._sha1 is not None and self.size == self.expected_size:
            self._git_sha1_hex = self._sha1.hexdigest()
        elif self._want_git is True or (self._want_git is None and self.size <= GIT_SHA1_REREAD_MAX):
            # The header needs the size, which we only know now: re-read (small files only).
            try:
                self._git_sha1_hex = await asyncio.to_thread(git_blob_sha1, self.path, self.size)
            except OSError as exc:
                raise _storage_error(f"re-read {self.path}", exc) from exc

    @property
    def sha256(self) -> str:
        if self._sha256_hex is None:
            raise RuntimeError("TmpWriter.sha256 before finish()")
        return self._sha256_hex

    @property
    def git_sha1(self) -> str | None:
        """The git blob id of the content, or None when it was not computed (large, or size unknown)."""
        if not self._finished:
            raise RuntimeError("TmpWriter.git_sha1 before finish()")
        return self._git_sha1_hex

    async def _settle(self) -> None:
        """Wait for the buffer in flight (its error, e.g. a full disk, surfaces here)."""
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            await inflight

    async def _flush(self, data: bytearray) -> None:
        # One hop does both, hash then write, while the event loop receives the next buffer. Measured on
        # 2 cores (1 GiB over loopback): 1.2-1.3 s, against 1.6-2.9 s with hashing and writing in two threads
        # at once (more GIL hand-offs than parallelism).
        await asyncio.to_thread(self._hash_and_write, data)

    def _hash_and_write(self, data: bytearray) -> None:
        self._hash_sync(data)
        self._write_sync(data)

    def _write_sync(self, data: bytearray) -> None:
        assert self._fd is not None
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            raise _storage_error(f"write {self.path}", exc) from exc

    def _hash_sync(self, data: bytearray) -> None:
        self._sha256.update(data)
        if self._sha1 is not None:
            self._sha1.update(data)

    def _close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


class BlobStore:
    """tmp → quarantine → blobs, by sha256, atomically; durability in the background."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.tmp_dir = self.data_dir / "tmp"
        self.quarantine_dir = self.data_dir / "quarantine"
        self.blobs_dir = self.data_dir / "blobs" / "sha256"
        self.pending_dir = self.data_dir / "pending-durable"
        # sha256 -> the latest durability task for it (each awaits the previous one for the same digest).
        self._durability: dict[str, asyncio.Task[None]] = {}
        self._moving: dict[str, int] = {}  # sha256 -> moves between "marker written" and "pass queued"

    # -- start-up -----------------------------------------------------------------------------------

    def startup(self) -> StartupReport:
        """Create the layout, empty tmp/, and re-verify every file whose durability was never confirmed.
        Synchronous (run it before serving, or via `asyncio.to_thread`)."""
        report = StartupReport()
        try:
            for directory in (self.tmp_dir, self.quarantine_dir, self.blobs_dir, self.pending_dir):
                directory.mkdir(parents=True, exist_ok=True)
            for leftover in self.tmp_dir.iterdir():
                report.tmp_files_removed += 1
                if leftover.is_dir() and not leftover.is_symlink():
                    report.tmp_bytes_removed += sum(p.stat().st_size for p in leftover.rglob("*") if p.is_file())
                    shutil.rmtree(leftover)
                else:
                    report.tmp_bytes_removed += leftover.lstat().st_size
                    leftover.unlink()
            for marker in sorted(self.pending_dir.iterdir()):
                self._recheck(marker, report)
        except OSError as exc:
            raise _storage_error(f"start-up sweep of {self.data_dir}", exc) from exc
        log.info(report.summary())
        return report

    def _recheck(self, marker: Path, report: StartupReport) -> None:
        sha = marker.name
        if not SHA256_RE.fullmatch(sha):
            marker.unlink()
            return
        try:
            expected_size = int(marker.read_text().strip())
        except ValueError:
            expected_size = -1
        candidates = [p for p in (self._blob_file(sha), self._quarantine_file(sha)) if p.exists()]
        if not candidates:
            report.stale_markers += 1
        for path in candidates:
            where = path.parent.name if path.parent == self.quarantine_dir else "blobs"
            size = path.stat().st_size
            if expected_size >= 0 and size != expected_size:
                why = f"{size} bytes, expected {expected_size}"
            elif sha256_file(path) != sha:
                why = "content does not match its sha256"
            else:
                fsync_path(path)
                report.pending_verified.append(sha)
                continue
            log.error("deleting torn file %s (%s)", path, why)
            path.unlink()
            report.torn_removed.append(f"{where}/{sha}: {why}")
        for path in candidates:
            if path.exists():
                fsync_path(path.parent)
        marker.unlink()
        fsync_path(self.pending_dir)

    # -- writing ------------------------------------------------------------------------------------

    def open_tmp(self, expected_size: int | None = None, git_size_header: bool | None = None) -> TmpWriter:
        """A writer for one download: `async with store.open_tmp(size) as w: await w.write(chunk)`.
        `git_size_header`: also hash the git blob id (None: when the size is known and ≤ 512 MiB)."""
        return TmpWriter(self.tmp_dir, expected_size, git_size_header)

    async def quarantine(self, writer: TmpWriter) -> Path:
        """Give a finished download its digest name under quarantine/ (atomic rename). If that digest is
        already there with the same size, the new copy is just dropped."""
        await writer.finish()
        sha = writer.sha256
        target = self._quarantine_file(sha)
        try:
            existing = await asyncio.to_thread(_size_or_none, target)
            if existing == writer.size and sha not in self._durability:
                await asyncio.to_thread(writer.path.unlink)
            else:
                with self._move(sha):
                    await asyncio.to_thread(self._mark_pending, sha, writer.size)
                    await asyncio.to_thread(os.replace, writer.path, target)
                    self._make_durable(sha)
            writer.committed = True
        except OSError as exc:
            raise _storage_error(f"move {writer.path} to {target}", exc) from exc
        return target

    async def promote(self, sha256: str) -> Path:
        """Move quarantine/<sha> to blobs/sha256/<aa>/<sha> (atomic rename). Idempotent; returns the blob
        path. Durability follows in the background."""
        sha = _check_sha(sha256)
        blob, held = self._blob_file(sha), self._quarantine_file(sha)
        try:
            if await asyncio.to_thread(blob.exists):
                await asyncio.to_thread(held.unlink, missing_ok=True)  # a second copy is only clutter
                return blob
            size = await asyncio.to_thread(_size_or_none, held)
            if size is None:
                raise Unavailable(
                    f"hubgate: cannot approve {sha}: its bytes are not in quarantine (deleted or torn); fetch it again"
                )
            await asyncio.to_thread(blob.parent.mkdir, parents=True, exist_ok=True)
            # No new marker: a rename cannot tear data. Bytes not yet synced still carry the marker written
            # before they took their quarantine name (a pass in flight keeps it while `_move` is open).
            # Writing one here would fsync behind the data of the whole file (ext4 ordered mode: measured
            # 124 ms for 256 MiB) and stall the first client.
            with self._move(sha):
                try:
                    await asyncio.to_thread(os.replace, held, blob)
                except FileNotFoundError:
                    if not await asyncio.to_thread(blob.exists):
                        raise
                    # a concurrent promote of the same digest moved it first: same result
                self._make_durable(sha)
        except OSError as exc:
            raise _storage_error(f"move {held} to {blob}", exc) from exc
        return blob

    async def drop_quarantine(self, sha256: str) -> None:
        """Delete quarantine/<sha> (after a final reject or a failed verification). Idempotent."""
        sha = _check_sha(sha256)
        try:
            await asyncio.to_thread(self._quarantine_file(sha).unlink, missing_ok=True)
        except OSError as exc:
            raise _storage_error(f"delete quarantine/{sha}", exc) from exc

    # -- lookups (cheap stat calls; fine on the event loop) -------------------------------------------

    def blob_path(self, sha256: str) -> Path | None:
        """The servable file for this digest, or None (also None for anything that is not a digest)."""
        if not SHA256_RE.fullmatch(sha256):
            return None
        path = self._blob_file(sha256)
        return path if path.is_file() else None

    def quarantine_path(self, sha256: str) -> Path | None:
        if not SHA256_RE.fullmatch(sha256):
            return None
        path = self._quarantine_file(sha256)
        return path if path.is_file() else None

    def is_pending_durable(self, sha256: str) -> bool:
        return SHA256_RE.fullmatch(sha256) is not None and (self.pending_dir / sha256).exists()

    async def drain(self) -> None:
        """Wait for every background fsync to finish (shutdown, tests)."""
        while self._durability:
            await asyncio.gather(*self._durability.values(), return_exceptions=True)

    # -- internals ----------------------------------------------------------------------------------

    def _blob_file(self, sha: str) -> Path:
        return self.blobs_dir / sha[:2] / sha

    def _quarantine_file(self, sha: str) -> Path:
        return self.quarantine_dir / sha

    def _mark_pending(self, sha: str, size: int) -> None:
        """Durable marker *before* the rename: a crash after it is caught by start-up's re-verification."""
        marker = self.pending_dir / sha
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, str(size).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_path(self.pending_dir)

    def _make_durable(self, sha: str) -> None:
        previous = self._durability.get(sha)
        task = asyncio.create_task(self._durable(sha, previous), name=f"hubgate-fsync:{sha[:12]}")
        self._durability[sha] = task
        task.add_done_callback(lambda t: self._forget(sha, t))

    def _forget(self, sha: str, task: asyncio.Task[None]) -> None:
        if self._durability.get(sha) is task:
            del self._durability[sha]

    async def _durable(self, sha: str, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            with contextlib.suppress(Exception):
                await previous
        try:
            synced = await asyncio.to_thread(self._durable_sync, sha)
            # Drop the marker only if no later move of this digest is queued or under way (checked on the
            # loop, where moves are registered, so there is no race), and only after the data was synced.
            if synced and self._durability.get(sha) is asyncio.current_task() and not self._moving.get(sha):
                await asyncio.to_thread((self.pending_dir / sha).unlink, missing_ok=True)
        except OSError as exc:
            # The marker stays: start-up will re-verify. Nothing is served wrongly meanwhile.
            log.error("background fsync of %s failed: %s", sha, exc)

    def _durable_sync(self, sha: str) -> bool:
        """fsync the file under its current name and that name's directory; False if it was not found."""
        for path in (self._blob_file(sha), self._quarantine_file(sha)):
            try:
                fsync_path(path)
            except FileNotFoundError:
                continue  # moved meanwhile (the move queues its own pass) or never there
            fsync_path(path.parent)
            return True
        return False

    @contextlib.contextmanager
    def _move(self, sha: str) -> Iterator[None]:
        """Register a move under way, so a finishing background pass keeps the marker."""
        self._moving[sha] = self._moving.get(sha, 0) + 1
        try:
            yield
        finally:
            self._moving[sha] -= 1
            if not self._moving[sha]:
                del self._moving[sha]


def _size_or_none(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None
