"""Containers: zip, tar, 7z and compressed streams (gzip, zlib, xz/lzma, bz2), scanned member by member.

Each member is copied (streaming, bounded) to the scan's temp space and handed back to the dispatcher, which
sniffs it by content like any file. Limits are charged per scan across all levels: nesting depth, member
count, total inflated bytes and per-member compression ratio; a bomb is a finding, never a hang or an OOM.
Member names that escape the extraction root (`..`, absolute paths, drive letters) and links are findings.
"""

from __future__ import annotations

import bz2
import lzma
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO, Protocol

from proxy.models import FileFormat, Severity
from proxy.scan.state import ScanState

CHUNK = 1 << 20
RATIO_FLOOR = 1 << 20  # below 1 MiB inflated, a high ratio is just a small file of zeros

Recurse = Callable[[Path, str, str, int], None]  # (file, location, name hint, depth)


class _Decompressor(Protocol):
    def decompress(self, data: bytes, max_length: int = ...) -> bytes: ...


class Bomb(Exception):
    pass


def unsafe_member_name(name: str) -> str | None:
    """Why a member name would escape the extraction directory, or None."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        return "absolute path"
    if ".." in PurePosixPath(norm).parts:
        return "path traversal (..)"
    if "\x00" in name:
        return "NUL in name"
    return None


def flag_unsafe_member_name(state: ScanState, name: str, where: str) -> None:
    """Record a high finding when a member name would escape the extraction directory (zip, tar, torch zip)."""
    why = unsafe_member_name(name)
    if why:
        state.add(Severity.HIGH, "archive.path-traversal", f"member name {name!r}: {why}", where)


def open_zip(path: Path, state: ScanState, location: str, rule: str, what: str) -> zipfile.ZipFile | None:
    """The zip at `path`, or None after giving up under `rule` ("<what> cannot be read: ...") when it will not open."""
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        state.give_up(rule, f"{what} cannot be read: {exc}", location)
        return None


def _copy_limited(src: IO[bytes], dst: Path, state: ScanState, compressed_size: int | None, what: str) -> None:
    """Copy a member stream, charging the scan-wide inflate budget and checking the ratio as bytes arrive."""
    limits = state.limits
    written = 0
    with dst.open("wb") as out:
        while True:
            chunk = src.read(CHUNK)
            if not chunk:
                break
            written += len(chunk)
            state.inflated += len(chunk)
            if written > limits.max_member_bytes or state.inflated > limits.max_uncompressed_bytes:
                raise Bomb(f"{what} inflates past the size limit")
            ratio_cap = None if compressed_size is None else max(compressed_size, 1) * limits.max_compression_ratio
            if ratio_cap is not None and written > RATIO_FLOOR and written > ratio_cap:
                raise Bomb(f"{what} compression ratio exceeds {limits.max_compression_ratio:.0f}:1")
            out.write(chunk)


class _StreamReader:
    """File-like view of a compressed stream through an incremental decompressor (bounded output chunks).

    Output already inflated is returned before a corruption error surfaces (a loader would have read it
    too). Concatenated members (gzip, xz, bz2) are followed; zlib stops at its end marker.
    """

    def __init__(self, raw: BinaryIO, fmt: FileFormat) -> None:
        self.raw = raw
        self.fmt = fmt
        self.dec = _stream_decompressor(fmt)
        self._pending = b""  # zlib input not yet expanded (max_length reached)
        self._feed = b""  # input left over after one member ended

    def read(self, n: int) -> bytes:
        while True:
            dec = self.dec
            if self._pending:
                out = dec.decompress(self._pending, n)
                self._pending = getattr(dec, "unconsumed_tail", b"")
                if out:
                    return out
                continue
            if getattr(dec, "eof", False):
                rest = getattr(dec, "unused_data", b"")
                if not rest or self.fmt is FileFormat.ZLIB:
                    return b""
                self.dec = _stream_decompressor(self.fmt)  # next concatenated member
                self._feed = rest
                continue
            if getattr(dec, "needs_input", True) is False:  # lzma/bz2 hold expanded output back
                out = dec.decompress(b"", n)
                if out:
                    return out
            data, self._feed = (self._feed, b"") if self._feed else (self.raw.read(CHUNK), b"")
            if not data:
                tail = dec.flush() if hasattr(dec, "flush") else b""
                if tail:
                    return tail
                if not getattr(dec, "eof", True):
                    raise EOFError("compressed stream ends before its end marker")
                return b""
            out = dec.decompress(data, n)
            self._pending = getattr(dec, "unconsumed_tail", b"")
            if out:
                return out


def _stream_decompressor(fmt: FileFormat) -> _Decompressor:
    if fmt is FileFormat.GZIP:
        return zlib.decompressobj(wbits=31)
    if fmt is FileFormat.ZLIB:
        return zlib.decompressobj()
    if fmt is FileFormat.XZ:
        return lzma.LZMADecompressor(lzma.FORMAT_AUTO)
    return bz2.BZ2Decompressor()


def _strip_suffix(hint: str) -> str:
    for suffix in (".gz", ".z", ".xz", ".lzma", ".bz2", ".zlib", ".gzip"):
        if hint.lower().endswith(suffix):
            return hint[: -len(suffix)]
    return hint


def scan_stream(
    path: Path, fmt: FileFormat, state: ScanState, location: str, hint: str, depth: int, recurse: Recurse
) -> None:
    """A single compressed stream (gzip/zlib/xz/bz2) holding one file."""
    dst = state.tmpfile()
    compressed = path.stat().st_size
    try:
        with path.open("rb") as raw:
            reader = _StreamReader(raw, fmt)
            _copy_limited(reader, dst, state, compressed, f"{fmt.value} stream")  # type: ignore[arg-type]
    except Bomb as exc:
        state.add(Severity.HIGH, "archive.bomb", str(exc), location)
        dst.unlink(missing_ok=True)
        return
    except (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError) as exc:
        # whatever inflated before the break is still scanned: a loader would have read it too
        state.add(Severity.MEDIUM, "archive.corrupt", f"{fmt.value} stream broken: {exc}", location)
    try:
        recurse(dst, f"{location}|{fmt.value}", _strip_suffix(hint), depth + 1)
    finally:
        dst.unlink(missing_ok=True)


def _count_member(state: ScanState, location: str) -> bool:
    state.members += 1
    if state.members > state.limits.max_archive_members:
        state.give_up("archive.limit", f"more than {state.limits.max_archive_members} archive members", location)
        return False
    return True


def scan_zip(
    path: Path,
    state: ScanState,
    location: str,
    depth: int,
    recurse: Recurse,
    skip: Callable[[str], bool] = lambda _n: False,
) -> None:
    zf = open_zip(path, state, location, "archive.corrupt", "zip")
    if zf is None:
        return
    with zf:
        for info in zf.infolist():
            where = f"{location}!{info.filename}"
            flag_unsafe_member_name(state, info.filename, where)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                state.add(Severity.HIGH, "archive.symlink", f"member {info.filename!r} is a symlink", where)
                continue
            if info.is_dir() or skip(info.filename):
                continue
            if not _count_member(state, location):
                return
            if info.flag_bits & 0x1:
                state.give_up("archive.encrypted", f"member {info.filename!r} is encrypted", where)
                continue
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > RATIO_FLOOR and ratio > state.limits.max_compression_ratio:
                state.add(Severity.HIGH, "archive.bomb", f"declared compression ratio {ratio:.0f}:1", where)
                continue
            dst = state.tmpfile()
            try:
                with zf.open(info) as src:
                    _copy_limited(src, dst, state, info.compress_size, f"member {info.filename!r}")
            except Bomb as exc:
                state.add(Severity.HIGH, "archive.bomb", str(exc), where)
                dst.unlink(missing_ok=True)
                continue
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError, ValueError) as exc:
                state.give_up("archive.corrupt", f"member {info.filename!r} cannot be read: {exc}", where)
                dst.unlink(missing_ok=True)
                continue
            try:
                recurse(dst, where, info.filename, depth + 1)
            finally:
                dst.unlink(missing_ok=True)


def scan_tar(path: Path, state: ScanState, location: str, depth: int, recurse: Recurse) -> None:
    try:
        tf = tarfile.open(path, "r:*")  # noqa: SIM115 - the open is guarded separately from the walk
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        state.give_up("archive.corrupt", f"tar cannot be read: {exc}", location)
        return
    with tf:
        try:
            for info in tf:
                where = f"{location}!{info.name}"
                flag_unsafe_member_name(state, info.name, where)
                if info.issym() or info.islnk():
                    state.add(
                        Severity.HIGH, "archive.symlink", f"member {info.name!r} links to {info.linkname!r}", where
                    )
                    continue
                if info.isdev():
                    state.add(Severity.HIGH, "archive.device", f"member {info.name!r} is a device node", where)
                    continue
                if not info.isfile():
                    continue
                if not _count_member(state, location):
                    return
                src = tf.extractfile(info)
                if src is None:
                    continue
                dst = state.tmpfile()
                try:
                    _copy_limited(src, dst, state, None, f"member {info.name!r}")
                except Bomb as exc:
                    state.add(Severity.HIGH, "archive.bomb", str(exc), where)
                    dst.unlink(missing_ok=True)
                    continue
                try:
                    recurse(dst, where, info.name, depth + 1)
                finally:
                    dst.unlink(missing_ok=True)
        except (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError, ValueError) as exc:
            state.give_up("archive.corrupt", f"tar broken mid-way: {exc}", location)


def scan_archive(
    path: Path, fmt: FileFormat, state: ScanState, *, location: str, hint: str, depth: int, recurse: Recurse
) -> None:
    """Scan a container's members with `recurse`; depth counts archive levels."""
    if depth >= state.limits.max_archive_depth:
        state.give_up("archive.depth", f"archives nested deeper than {state.limits.max_archive_depth}", location)
        return
    if fmt in (FileFormat.ZIP, FileFormat.NUMPY_NPZ, FileFormat.KERAS):
        scan_zip(path, state, location, depth, recurse)
    elif fmt in (FileFormat.TAR, FileFormat.TORCH_LEGACY_TAR):
        scan_tar(path, state, location, depth, recurse)
    elif fmt in (FileFormat.GZIP, FileFormat.ZLIB, FileFormat.XZ, FileFormat.BZ2):
        scan_stream(path, fmt, state, location, hint, depth, recurse)
    elif fmt is FileFormat.SEVEN_ZIP:
        state.give_up("archive.unsupported", "7z archives cannot be opened by this scanner", location)
    else:  # pragma: no cover - dispatcher only sends containers
        state.give_up("archive.unsupported", f"{fmt.value} is not a container", location)
