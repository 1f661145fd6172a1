"""Identify a file's format from its bytes (magic numbers and structure); the name is only a tie-breaker.

`sniff_file` reads the first 64 KiB, the last 64 KiB (for a zip end-of-central-directory) and, for zip/tar,
the member names. It returns the primary format plus every format the bytes also parse as: a file that is
two things at once (a pickle with a zip tail, a safetensors with a zip appended) is a polyglot finding, and
an unrecognised binary is a finding that policy can quarantine. Pure: no scanning, no decompression.

Order matters where shapes overlap: GGUF and safetensors are recognised before the pickle heuristics (a
safetensors header length like 0x0180 starts `80 01`, a PROTO opcode), and a file of either kind whose head
also walks as pickle opcodes to a STOP is reported as both, a polyglot. What the *name* claims is checked by
the dispatcher, which also hands a file to the scanner its name implies (`dispatch.NAMED_FORMATS`).
"""

from __future__ import annotations

import io
import re
import struct
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from proxy.models import FileFormat, Finding, FormatFamily, Severity
from proxy.scan.opcodes import BudgetExceeded, CountingReader, OpcodeError, iter_opcodes

ENGINE = "hubgate"
HEAD = 64 * 1024
TORCH_LEGACY_PREFIX = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19."
_HDF5 = b"\x89HDF\r\n\x1a\n"
_ZIP_STARTS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")

FAMILY: dict[FileFormat, FormatFamily] = {
    FileFormat.PICKLE: FormatFamily.PICKLE,
    FileFormat.TORCH_ZIP: FormatFamily.PICKLE,
    FileFormat.TORCH_LEGACY: FormatFamily.PICKLE,
    FileFormat.TORCH_LEGACY_TAR: FormatFamily.PICKLE,
    FileFormat.JOBLIB: FormatFamily.PICKLE,
    FileFormat.TORCHSCRIPT: FormatFamily.TORCHSCRIPT,
    FileFormat.NUMPY: FormatFamily.NUMPY,
    FileFormat.NUMPY_NPZ: FormatFamily.NUMPY,
    FileFormat.SAFETENSORS: FormatFamily.SAFETENSORS,
    FileFormat.GGUF: FormatFamily.GGUF,
    FileFormat.HDF5: FormatFamily.KERAS,
    FileFormat.KERAS: FormatFamily.KERAS,
    FileFormat.SAVED_MODEL: FormatFamily.TENSORFLOW,
    FileFormat.ONNX: FormatFamily.ONNX,
    FileFormat.ZIP: FormatFamily.ARCHIVE,
    FileFormat.TAR: FormatFamily.ARCHIVE,
    FileFormat.SEVEN_ZIP: FormatFamily.ARCHIVE,
    FileFormat.GZIP: FormatFamily.ARCHIVE,
    FileFormat.ZLIB: FormatFamily.ARCHIVE,
    FileFormat.XZ: FormatFamily.ARCHIVE,
    FileFormat.BZ2: FormatFamily.ARCHIVE,
    FileFormat.JSON: FormatFamily.CONFIG,
    FileFormat.PYTHON: FormatFamily.CUSTOM_CODE,
    FileFormat.SENTENCEPIECE: FormatFamily.CONFIG,  # tokenizer files are config in policy terms
    FileFormat.MEDIA: FormatFamily.TEXT,
    FileFormat.TEXT: FormatFamily.TEXT,
    FileFormat.EMPTY: FormatFamily.TEXT,
    FileFormat.UNKNOWN: FormatFamily.UNKNOWN,
}


def family_of(fmt: FileFormat) -> FormatFamily:
    return FAMILY[fmt]


@dataclass(frozen=True)
class Sniff:
    format: FileFormat
    formats: tuple[FileFormat, ...]
    findings: tuple[Finding, ...] = ()
    names: tuple[str, ...] = field(default=(), repr=False)  # zip/tar member names when relevant

    @property
    def families(self) -> list[FormatFamily]:
        return sorted({FAMILY[f] for f in self.formats}, key=list(FormatFamily).index)


def _finding(severity: Severity, rule: str, message: str, location: str = "") -> Finding:
    return Finding(engine=ENGINE, severity=severity, rule=rule, message=message, location=location)


# -- individual recognisers -------------------------------------------------------------------------------


def zip_names(path: Path, limit: int = 100_000) -> list[str] | None:
    """Member names if the file opens as a zip (central directory only), else None."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            return [i.filename for i in infos[:limit]]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, struct.error):
        return None


def classify_zip(names: list[str]) -> FileFormat:
    if any(re.search(r"(^|/)constants\.pkl$", n) for n in names) and any("/code/" in n for n in names):
        return FileFormat.TORCHSCRIPT
    if any(re.search(r"(^|/)data\.pkl$", n) for n in names):
        return FileFormat.TORCH_ZIP
    if "config.json" in names and "metadata.json" in names:
        return FileFormat.KERAS
    if names and all(n.endswith(".npy") for n in names):
        return FileFormat.NUMPY_NPZ
    return FileFormat.ZIP


def tar_names(path: Path, limit: int = 1000) -> list[str] | None:
    try:
        with tarfile.open(path, "r:") as tf:
            names = []
            for info in tf:
                names.append(info.name)
                if len(names) >= limit:
                    break
            return names
    except (tarfile.TarError, OSError, ValueError, EOFError, UnicodeDecodeError):
        return None


def looks_like_pickle(head: bytes, size: int) -> bool:
    """Protocol 2+ by its PROTO header; protocol 0/1 by walking the head to a STOP (or to its end)."""
    if len(head) >= 2 and head[0] == 0x80 and head[1] <= 5:
        return True
    if not head or head[0:1] not in b"(cI]}SVNLFdlpKJMGTUX\x8a\x8bq":
        return False
    return walks_as_pickle(head)


def walks_as_pickle(head: bytes) -> bool:
    """The head is a run of valid pickle opcodes to a STOP (or through a full head): a loader would unpickle it."""
    if not head:
        return False
    r = CountingReader(io.BytesIO(head), budget=len(head))
    ops = 0
    try:
        for _op, _arg, _pos in iter_opcodes(r, max_line=4096, max_str=len(head)):
            ops += 1
        return ops >= 2  # reached STOP
    except OpcodeError as exc:
        # a protocol 0 pickle longer than the head: parsed cleanly all the way to the cut
        return exc.eof and len(head) >= HEAD and ops >= 16
    except BudgetExceeded:
        return len(head) >= HEAD and ops >= 16


def _first_value_is_legacy_magic(head: bytes) -> bool:
    """torch's legacy format starts with a pickled magic number, in whatever protocol it was saved with."""
    if not (len(head) >= 2 and head[0] == 0x80) or len(head) < 12:
        return False
    from proxy.scan.limits import ScanLimits
    from proxy.scan.pickle import TORCH_LEGACY_MAGIC, scan_pickle_stream

    scan = scan_pickle_stream(io.BytesIO(head[:64]), location="", limits=ScanLimits(), max_pickles=1)
    return scan.pickles == 1 and scan.first_value == TORCH_LEGACY_MAGIC


def _is_safetensors(head: bytes, size: int) -> bool:
    """u64 LE header length, then the JSON header's `{`. A length past the end of the file still counts when
    the rest has the shape (top 16 bits clear, `{` then `"`, `}` or space): that is a safetensors header that
    lies about its size, which the safetensors scanner must see, not an unknown binary."""
    if len(head) < 10 or head[8:9] != b"{":
        return False
    n = struct.unpack("<Q", head[:8])[0]
    if 2 <= n <= size - 8:
        return True
    return n >= 2 and n >> 48 == 0 and head[9:10] in (b'"', b"}", b" ", b"\n", b"\r", b"\t")


def _is_zlib(head: bytes) -> bool:
    return (
        len(head) >= 2
        and head[0] == 0x78
        and head[1] in (0x01, 0x5E, 0x9C, 0xDA)
        and ((head[0] << 8) | head[1]) % 31 == 0
    )


_TF_OP = re.compile(rb"[A-Za-z_>][A-Za-z0-9_>./]{0,255}")  # TensorFlow's op and node name rules
_TF_NAME = re.compile(rb"[A-Za-z0-9._>][A-Za-z0-9_.\-/>]{0,1023}")


def _leading_fields(buf: bytes, limit: int = 8) -> list[tuple[int, int, bytes | int]]:
    """The first protobuf fields of `buf` that are complete (a message cut by the head just ends early)."""
    fields: list[tuple[int, int, bytes | int]] = []
    at = 0
    try:
        while at < len(buf) and len(fields) < limit:
            key, at = _varint(buf, at)
            number, wire = key >> 3, key & 7
            if number == 0:
                break
            if wire == 0:
                value, at = _varint(buf, at)
                fields.append((number, wire, value))
            elif wire == 2:
                length, at = _varint(buf, at)
                fields.append((number, wire, buf[at : at + length]))  # may be cut short by the head
                at += length
            else:
                break
    except ValueError:
        pass
    return fields


def _is_tf_graph(head: bytes) -> bool:
    """A frozen GraphDef (1: NodeDef {1: name, 2: op}) or a `keras_metadata.pb` (1: SavedObject with a
    `_tf_keras*` identifier in field 4): both start with a length-delimited field 1, like sentencepiece, and
    are told apart by what that first message holds."""
    outer = _leading_fields(head, limit=1)
    if not outer or outer[0][:2] != (1, 2) or not isinstance(outer[0][2], bytes):
        return False
    inner = _leading_fields(outer[0][2])
    strings = {n: v for n, w, v in inner if w == 2 and isinstance(v, bytes)}
    if strings.get(4, b"").startswith(b"_tf_keras"):
        return True
    if len(inner) < 2 or inner[0][:2] != (1, 2) or inner[1][:2] != (2, 2):
        return False
    name, op = strings.get(1, b""), strings.get(2, b"")
    return _TF_NAME.fullmatch(name) is not None and _TF_OP.fullmatch(op) is not None


def _is_protobuf_model(head: bytes, hint: str) -> FileFormat | None:
    """ONNX ModelProto and TF SavedModel both start with field 1 varint (0x08); a SavedModel's field 2 is a
    MetaGraphDef (starting with its own field 1), ONNX's is a producer name."""
    lower = hint.lower()
    if lower.endswith("saved_model.pb") or (lower.endswith(".pb") and head[:3] == b"\x08\x01\x12"):
        return FileFormat.SAVED_MODEL
    if head[:3] == b"\x08\x01\x12":
        second = _leading_fields(head, limit=2)
        if len(second) == 2 and isinstance(second[1][2], bytes) and second[1][2][:1] == b"\x0a":
            return FileFormat.SAVED_MODEL
    if _is_tf_graph(head):
        return FileFormat.SAVED_MODEL
    onnx_tags = (0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42)
    if len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] <= 20 and (lower.endswith(".onnx") or head[2] in onnx_tags):
        return FileFormat.ONNX
    return None


_MEDIA_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"%PDF-", b"fLaC", b"OggS", b"ID3")


def _is_media(head: bytes) -> bool:
    if head.startswith(_MEDIA_MAGIC):
        return True
    return head[:4] == b"RIFF" and head[8:12] in (b"WEBP", b"WAVE", b"AVI ")


def _varint(buf: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while at < len(buf) and shift < 64:
        b = buf[at]
        value |= (b & 0x7F) << shift
        at += 1
        if not b & 0x80:
            return value, at
        shift += 7
    raise ValueError("truncated varint")


def _is_sentencepiece(head: bytes) -> bool:
    """sentencepiece ModelProto: repeated `pieces` (field 1), each {1: piece string, 2: float score, 3: type}."""
    at = records = 0
    try:
        while records < 3 and at < len(head):
            if head[at] != 0x0A:
                return False
            length, at = _varint(head, at + 1)
            inner = head[at : at + length]
            if len(inner) < length and records == 0:
                return False
            if not inner or inner[0] != 0x0A:
                return False
            plen, p = _varint(inner, 1)
            inner[p : p + plen].decode("utf-8")
            if p + plen < len(inner) and inner[p + plen] not in (0x15, 0x18):
                return False
            at += length
            records += 1
    except (ValueError, UnicodeDecodeError, IndexError):
        return False
    return records >= 3


def _text(head: bytes, size: int) -> str | None:
    if b"\x00" in head:
        return None
    data = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if size > len(head) and exc.start >= len(data) - 4:  # a multibyte char cut by the head
            text = data[: exc.start].decode("utf-8", "replace")
        else:
            return None
    printable = sum(1 for c in text if c.isprintable() or c in "\r\n\t\f\v")
    return text if not text or printable / len(text) > 0.95 else None


_PY_LINE = re.compile(r"^(import \w|from [\w.]+ import |def \w+\(|class \w+[(:]|if __name__ == )", re.M)


def _is_python(text: str, hint: str, complete: bool) -> bool:
    lower = hint.lower()
    if lower.endswith((".py", ".pyw", ".pyi")):
        return True
    if lower.endswith((".md", ".txt", ".rst", ".json", ".yaml", ".yml", ".cfg", ".toml", ".ini")):
        return False
    if text.startswith("#!") and "python" in text.split("\n", 1)[0]:
        return True
    if not _PY_LINE.search(text):
        return False
    if not complete:
        return True
    import ast

    try:
        ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def _is_json_start(text: str) -> bool:
    """An object or array opening as JSON does: `{{`, `{%` (a Jinja template) or `[INST]` (prose) do not."""
    stripped = text.lstrip()
    if stripped[:1] not in ("{", "["):
        return False
    rest = stripped[1:].lstrip()
    if not rest:
        return True
    allowed = '"}' if stripped[0] == "{" else '{["]-0123456789tfn'
    return rest[0] in allowed


# -- the sniffer ------------------------------------------------------------------------------------------


def _primary(path: Path, head: bytes, size: int, hint: str) -> tuple[FileFormat, tuple[str, ...]]:
    if size == 0:
        return FileFormat.EMPTY, ()
    if head.startswith(_ZIP_STARTS):
        names = zip_names(path)
        if names is not None:
            return classify_zip(names), tuple(names)
    # Magic-number formats before the pickle heuristics: a safetensors header length can read as a PROTO
    # opcode (0x80 0x01...). A file that also walks as a pickle is reported as a polyglot by sniff_file.
    if head.startswith(b"GGUF"):
        return FileFormat.GGUF, ()
    if _is_safetensors(head, size):
        return FileFormat.SAFETENSORS, ()
    if head.startswith(TORCH_LEGACY_PREFIX) or _first_value_is_legacy_magic(head):
        return FileFormat.TORCH_LEGACY, ()
    if looks_like_pickle(head, size):
        if b"joblib.numpy_pickle" in head[:4096] or b"NumpyArrayWrapper" in head[:4096]:
            return FileFormat.JOBLIB, ()
        return FileFormat.PICKLE, ()
    if head.startswith(b"\x93NUMPY"):
        return FileFormat.NUMPY, ()
    if any(head[off : off + 8] == _HDF5 for off in (0, 512, 1024, 2048)):
        return FileFormat.HDF5, ()
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return FileFormat.SEVEN_ZIP, ()
    if head.startswith(b"\x1f\x8b"):
        return FileFormat.GZIP, ()
    if head.startswith(b"\xfd7zXZ\x00") or head.startswith(b"\x5d\x00\x00"):
        return FileFormat.XZ, ()  # xz and lzma-alone (joblib's lzma) share one decoder
    if re.match(rb"BZh[1-9]1AY&SY", head[:10]):
        return FileFormat.BZ2, ()
    if _is_zlib(head):
        return FileFormat.ZLIB, ()
    if len(head) >= 262 and head[257:262] == b"ustar":
        names = tar_names(path)
        if names is not None:
            base = {n.split("/")[-1] for n in names}
            if {"sys_info", "pickle", "storages", "tensors"} <= base:
                return FileFormat.TORCH_LEGACY_TAR, tuple(names)
            return FileFormat.TAR, tuple(names)
    proto = _is_protobuf_model(head, hint)
    if proto is not None:
        return proto, ()
    if _is_sentencepiece(head):
        return FileFormat.SENTENCEPIECE, ()
    if _is_media(head):
        return FileFormat.MEDIA, ()
    text = _text(head, size)
    if text is not None:
        if _is_json_start(text):
            return FileFormat.JSON, ()
        if _is_python(text, hint, complete=size <= len(head)):
            return FileFormat.PYTHON, ()
        return FileFormat.TEXT, ()
    return FileFormat.UNKNOWN, ()


def sniff_file(path: Path, *, name_hint: str = "") -> Sniff:
    """Sniff one regular file. Never raises for content; an unreadable file is an OSError to the caller."""
    hint = name_hint or path.name
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(HEAD)
    fmt, names = _primary(path, head, size, hint)
    formats = [fmt]
    findings: list[Finding] = []
    if fmt is FileFormat.UNKNOWN:
        findings.append(_finding(Severity.MEDIUM, "format.unknown", f"unrecognised binary format ({size} bytes)"))
    # Checked ahead of the pickle heuristics, so prove they are not a pickle too: torch.load would run it.
    if fmt in (FileFormat.SAFETENSORS, FileFormat.GGUF) and walks_as_pickle(head):
        formats.append(FileFormat.PICKLE)
        findings.append(
            _finding(Severity.HIGH, "format.polyglot", f"file parses as {fmt.value} and as a pickle (opcodes to STOP)")
        )
    # A zip directory at the end of a file that does not start as a zip: a polyglot (e.g. pickle + zip,
    # where torch.load runs the pickle and a zip-only scanner reads the zip) or a prefixed archive.
    if fmt not in (FileFormat.EMPTY,) and not head.startswith(_ZIP_STARTS) and size >= 22:
        tail_names = zip_names(path)
        if tail_names:  # an empty directory carries nothing, and random tensor bytes can mimic one
            formats.append(classify_zip(tail_names))
            names = names or tuple(tail_names)
            findings.append(
                _finding(
                    Severity.HIGH,
                    "format.polyglot",
                    f"file parses as {fmt.value} and as {formats[-1].value} (zip directory at the end)",
                )
            )
    return Sniff(format=fmt, formats=tuple(formats), findings=tuple(findings), names=names)
