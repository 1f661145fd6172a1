"""A bounded, streaming pickle opcode reader (a `pickletools.genops` that never trusts lengths).

`pickletools.genops` reads every argument into memory and `readline()`s without a bound, so a 2 GB
BINBYTES8 or a newline-free STRING costs 2 GB. This reader yields the same (opcode, arg, pos) triples but
skips large byte payloads (tensor data inside numpy pickles) by seeking, bounds every line, and counts
bytes against a budget. It never imports or calls anything named in the stream.
"""

from __future__ import annotations

import io
import pickletools
import struct
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

_CODE2OP = {op.code.encode("latin-1"): op for op in pickletools.opcodes}

# Byte payloads above this are skipped (seeked over) instead of read: they are data, never code.
SKIP_BYTES_OVER = 64 * 1024


class OpcodeError(Exception):
    """The stream is not a valid pickle at `pos` (bad opcode, bad argument, or end of data)."""

    def __init__(self, message: str, pos: int, *, eof: bool = False) -> None:
        super().__init__(message)
        self.pos = pos
        self.eof = eof


class BudgetExceeded(Exception):
    """The stream is longer than the caller allowed us to walk."""


@dataclass(frozen=True)
class Skipped:
    """Placeholder for a payload that was skipped rather than read (kind: bytes/str/long)."""

    kind: str
    size: int


class CountingReader:
    """Buffered reader over a binary stream: counts bytes consumed, enforces a budget, skips cheaply.

    Reads ahead in blocks (one Python call per opcode is the walker's main cost); the underlying stream's
    position is therefore ahead of `pos` and must not be used by others while walking.
    """

    BLOCK = 1 << 16

    def __init__(self, raw: BinaryIO, budget: int) -> None:
        self.raw = raw
        self.budget = budget
        self._buf = b""
        self._off = 0
        self._base = 0  # stream offset of _buf[0]
        try:
            self._seekable = raw.seekable()
        except (AttributeError, OSError, ValueError):
            self._seekable = False

    @property
    def pos(self) -> int:
        return self._base + self._off

    def _fill(self, need: int) -> None:
        """Make at least `need` bytes available from _off (fewer only at end of stream)."""
        rest = self._buf[self._off :]
        self._base += self._off
        chunks = [rest]
        have = len(rest)
        while have < need:
            chunk = self.raw.read(max(need - have, self.BLOCK))
            if not chunk:
                break
            chunks.append(chunk)
            have += len(chunk)
        self._buf = b"".join(chunks)
        self._off = 0

    def read(self, n: int) -> bytes:
        end = self._off + n
        if self._base + end > self.budget:
            raise BudgetExceeded(f"pickle stream exceeds {self.budget} bytes")
        if end > len(self._buf):
            self._fill(n)
            end = min(n, len(self._buf))
        data = self._buf[self._off : end]
        self._off = end
        return data

    def readline(self, limit: int) -> bytes:
        nl = self._buf.find(b"\n", self._off, self._off + limit)
        if nl < 0 and len(self._buf) - self._off < limit:
            self._fill(limit)
            nl = self._buf.find(b"\n", self._off, self._off + limit)
        end = nl + 1 if nl >= 0 else min(self._off + limit, len(self._buf))
        if self._base + end > self.budget:
            raise BudgetExceeded(f"pickle stream exceeds {self.budget} bytes")
        line = self._buf[self._off : end]
        self._off = end
        return line

    def skip(self, n: int) -> int:
        """Skip n bytes; returns how many were actually available."""
        if self.pos + n > self.budget:
            raise BudgetExceeded(f"pickle stream exceeds {self.budget} bytes")
        buffered = len(self._buf) - self._off
        if n <= buffered:
            self._off += n
            return n
        want = n - buffered
        self._base += len(self._buf)
        self._buf, self._off = b"", 0
        got = 0
        if self._seekable:
            start = self.raw.tell()
            end = self.raw.seek(0, io.SEEK_END)
            got = min(want, max(end - start, 0))
            self.raw.seek(start + got)
        else:
            while got < want:
                chunk = self.raw.read(min(1 << 20, want - got))
                if not chunk:
                    break
                got += len(chunk)
        self._base += got
        return buffered + got

    def peek1(self) -> bytes:
        """One byte ahead without consuming it (used to detect a following pickle)."""
        if self._off >= len(self._buf):
            self._fill(1)
        return self._buf[self._off : self._off + 1]


_FIXED = {"uint1": "<B", "uint2": "<H", "uint4": "<I", "uint8": "<Q", "int4": "<i", "float8": ">d"}
_LEN_PREFIX = {
    "bytes1": ("<B", "bytes"),
    "string1": ("<B", "str1"),
    "unicodestring1": ("<B", "unicode"),
    "long1": ("<B", "long"),
    "bytes4": ("<I", "bytes"),
    "string4": ("<i", "str1"),
    "unicodestring4": ("<I", "unicode"),
    "long4": ("<i", "long"),
    "bytes8": ("<Q", "bytes"),
    "bytearray8": ("<Q", "bytes"),
    "unicodestring8": ("<Q", "unicode"),
}
_NL_READERS: dict[str, Callable[[io.BytesIO], object]] = {
    "stringnl": pickletools.read_stringnl,
    "stringnl_noescape": pickletools.read_stringnl_noescape,
    "stringnl_noescape_pair": pickletools.read_stringnl_noescape_pair,
    "decimalnl_short": pickletools.read_decimalnl_short,
    "decimalnl_long": pickletools.read_decimalnl_long,
    "floatnl": pickletools.read_floatnl,
    "unicodestringnl": pickletools.read_unicodestringnl,
}


def _read_exact(r: CountingReader, n: int, what: str) -> bytes:
    start = r.pos
    data = r.read(n)
    if len(data) != n:
        raise OpcodeError(f"end of data inside {what}", start, eof=True)
    return data


def _read_arg(r: CountingReader, argname: str, max_line: int, max_str: int) -> object:
    start = r.pos
    if argname in _FIXED:
        fmt = _FIXED[argname]
        return struct.unpack(fmt, _read_exact(r, struct.calcsize(fmt), argname))[0]
    if argname in _LEN_PREFIX:
        fmt, kind = _LEN_PREFIX[argname]
        n = struct.unpack(fmt, _read_exact(r, struct.calcsize(fmt), argname))[0]
        if n < 0:
            raise OpcodeError(f"negative length {n} in {argname}", start)
        limit = max_str if kind == "unicode" else SKIP_BYTES_OVER
        if n > limit:
            if r.skip(n) != n:
                raise OpcodeError(f"end of data inside {argname} ({n} bytes)", start, eof=True)
            return Skipped(kind, n)
        data = _read_exact(r, n, argname)
        if kind == "bytes":
            return data
        if kind == "unicode":
            try:
                return data.decode("utf-8", "surrogatepass")
            except UnicodeDecodeError as exc:
                raise OpcodeError(f"invalid UTF-8 in {argname}", start) from exc
        if kind == "long":
            return int.from_bytes(data, "little", signed=True)  # pickle's decode_long
        return data.decode("latin-1")  # protocol 0/1 8-bit strings
    if argname in _NL_READERS:
        lines = 2 if argname == "stringnl_noescape_pair" else 1
        buf = b""
        for _ in range(lines):
            line = r.readline(max_line)
            if not line.endswith(b"\n"):
                eof = len(line) < max_line
                raise OpcodeError(f"unterminated or overlong line in {argname}", start, eof=eof)
            buf += line
        try:
            with warnings.catch_warnings():  # escape_decode warns on odd escapes in hostile STRINGs
                warnings.simplefilter("ignore")
                return _NL_READERS[argname](io.BytesIO(buf))
        except (ValueError, UnicodeDecodeError) as exc:
            raise OpcodeError(f"bad {argname} argument: {exc}", start) from exc
    raise OpcodeError(f"unsupported argument type {argname}", start)


def iter_opcodes(
    r: CountingReader, *, max_line: int = 1 << 20, max_str: int = 10 << 20
) -> Iterator[tuple[pickletools.OpcodeInfo, object, int]]:
    """Yield (opcode, arg, pos) until and including STOP. Raises OpcodeError on bad data or EOF."""
    while True:
        pos = r.pos
        code = r.read(1)
        if not code:
            raise OpcodeError("end of data before STOP", pos, eof=True)
        op = _CODE2OP.get(code)
        if op is None:
            raise OpcodeError(f"invalid opcode byte {code!r}", pos)
        arg = None if op.arg is None else _read_arg(r, op.arg.name, max_line, max_str)
        yield op, arg, pos
        if op.name == "STOP":
            return
