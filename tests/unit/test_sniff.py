"""Format sniffing by content: every FileFormat from real bytes, names only as tie-breakers, polyglots found."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import pickle
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from proxy.models import FileFormat, FormatFamily, Severity
from proxy.scan.sniff import FAMILY, family_of, looks_like_pickle, sniff_file
from tests import corpus


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _safetensors() -> bytes:
    from safetensors.numpy import save

    return save({"w": np.zeros((2, 2), dtype=np.float32)})


def _sentencepiece() -> bytes:
    """The wire format of a sentencepiece ModelProto: pieces {piece, score, type}, then trainer spec."""
    out = b""
    for i, piece in enumerate(["<unk>", "<s>", "</s>", "\u2581the", "\u2581a"]):
        body = piece.encode()
        inner = b"\x0a" + bytes([len(body)]) + body + b"\x15" + struct.pack("<f", -float(i)) + b"\x18\x01"
        out += b"\x0a" + bytes([len(inner)]) + inner
    return out + b"\x12\x04\x0a\x02en"


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _h5(tmp_path: Path) -> bytes:
    import h5py

    p = tmp_path / "x.h5"
    with h5py.File(p, "w") as f:
        f["a"] = np.arange(3)
    return p.read_bytes()


def _torch_legacy_tar() -> bytes:
    return _tar({"sys_info": pickle.dumps({}), "pickle": pickle.dumps({}), "storages": b"", "tensors": b""})


EXPECT = {
    "torch zip": FileFormat.TORCH_ZIP,
    "torch legacy": FileFormat.TORCH_LEGACY,
    "torch legacy tar": FileFormat.TORCH_LEGACY_TAR,
    "torchscript": FileFormat.TORCHSCRIPT,
    "npy": FileFormat.NUMPY,
    "npz": FileFormat.NUMPY_NPZ,
    "joblib": FileFormat.JOBLIB,
    "safetensors": FileFormat.SAFETENSORS,
    "gguf": FileFormat.GGUF,
    "hdf5": FileFormat.HDF5,
    "keras": FileFormat.KERAS,
    "saved model": FileFormat.SAVED_MODEL,
    "onnx": FileFormat.ONNX,
    "zip": FileFormat.ZIP,
    "tar": FileFormat.TAR,
    "7z": FileFormat.SEVEN_ZIP,
    "gzip": FileFormat.GZIP,
    "zlib": FileFormat.ZLIB,
    "xz": FileFormat.XZ,
    "lzma": FileFormat.XZ,
    "bz2": FileFormat.BZ2,
    "json": FileFormat.JSON,
    "python": FileFormat.PYTHON,
    "python no hint": FileFormat.PYTHON,
    "text": FileFormat.TEXT,
    "markdown with imports": FileFormat.TEXT,
    "empty": FileFormat.EMPTY,
    "sentencepiece": FileFormat.SENTENCEPIECE,
    "png": FileFormat.MEDIA,
    "pdf": FileFormat.MEDIA,
    "unknown": FileFormat.UNKNOWN,
}


def _make(kind: str, tmp_path: Path) -> tuple[str, bytes]:
    import torch

    if kind == "torch zip":
        return "w.bin", corpus.torch_zip({"a": torch.zeros(2)})
    if kind == "torch legacy":
        return "w.bin", corpus.torch_legacy({"a": torch.zeros(2)})
    if kind == "torch legacy tar":
        return "w.tar", _torch_legacy_tar()
    if kind == "torchscript":
        import warnings

        warnings.simplefilter("ignore", DeprecationWarning)
        buf = io.BytesIO()
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), buf)
        return "m.pt", buf.getvalue()
    if kind == "npy":
        return "a.npy", corpus._npy(np.zeros(3))
    if kind == "npz":
        return "a.npz", corpus._npz(a=np.zeros(3))
    if kind == "joblib":
        return "a.pkl", corpus.joblib_bytes(np.arange(5))
    if kind == "safetensors":
        return "w.bin", _safetensors()
    if kind == "gguf":
        return "m.gguf", b"GGUF" + struct.pack("<IQQ", 3, 0, 0)
    if kind == "hdf5":
        return "m.bin", _h5(tmp_path)
    if kind == "keras":
        return "m.zip", corpus.zip_of({"config.json": b"{}", "metadata.json": b"{}", "model.weights.h5": b""})
    if kind == "saved model":
        return "saved_model.pb", b"\x08\x01\x12\x04\x0a\x02\x08\x01"
    if kind == "onnx":
        return "model.bin", b"\x08\x07\x12\x07pytorch\x1a\x032.0"
    if kind == "zip":
        return "a.zip", corpus.zip_of({"readme.txt": b"hello"})
    if kind == "tar":
        return "a.tar", _tar({"readme.txt": b"hello"})
    if kind == "7z":
        return "a.7z", b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(32)
    if kind == "gzip":
        return "a.gz", gzip.compress(b"hello")
    if kind == "zlib":
        return "a.z", zlib.compress(b"hello")
    if kind == "xz":
        return "a.xz", lzma.compress(b"hello")
    if kind == "lzma":
        return "a.lzma", lzma.compress(b"hello", format=lzma.FORMAT_ALONE)
    if kind == "bz2":
        return "a.bz2", bz2.compress(b"hello")
    if kind == "json":
        return "config", json.dumps({"model_type": "bert"}).encode()
    if kind == "python":
        return "modeling.py", b"x = 1\n"
    if kind == "python no hint":
        return "modeling", b"import os\n\n\ndef f():\n    return os.getcwd()\n"
    if kind == "text":
        return "README", "Hello, wörld.\nA model card.\n".encode()
    if kind == "markdown with imports":
        return "README.md", b"# Usage\n\n```python\nimport torch\nfrom x import y\n```\n"
    if kind == "sentencepiece":
        return "tokenizer.model", _sentencepiece()
    if kind == "png":
        return "logo.bin", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    if kind == "pdf":
        return "paper", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + bytes(range(256)) * 4
    if kind == "empty":
        return "e.bin", b""
    if kind == "unknown":
        return "w.bin", bytes(range(1, 256)) * 8
    raise AssertionError(kind)


@pytest.mark.parametrize("proto", range(6))
def test_pickle_every_protocol(tmp_path: Path, proto: int) -> None:
    p = _write(tmp_path, "weights.txt", pickle.dumps({"a": [1, 2.5, "x"], "b": None}, protocol=proto))
    sn = sniff_file(p)
    assert sn.format is FileFormat.PICKLE
    assert sn.findings == ()


@pytest.mark.parametrize("kind", sorted(EXPECT))
def test_formats_by_content(tmp_path: Path, kind: str) -> None:
    name, data = _make(kind, tmp_path)
    sn = sniff_file(_write(tmp_path, name, data))
    assert sn.format is EXPECT[kind], (kind, sn)


@pytest.mark.parametrize("proto", [2, 3, 4, 5])
def test_torch_legacy_in_any_pickle_protocol(tmp_path: Path, proto: int) -> None:
    import torch

    p = tmp_path / "legacy.bin"
    torch.save({"w": torch.ones(2)}, p, _use_new_zipfile_serialization=False, pickle_protocol=proto)
    assert sniff_file(p).format is FileFormat.TORCH_LEGACY


def test_unknown_binary_is_a_medium_finding(tmp_path: Path) -> None:
    sn = sniff_file(_write(tmp_path, "blob.safetensors", os.urandom(4096)))
    assert sn.format is FileFormat.UNKNOWN
    assert [(f.rule, f.severity) for f in sn.findings] == [("format.unknown", Severity.MEDIUM)]


def test_extension_never_decides(tmp_path: Path) -> None:
    assert sniff_file(_write(tmp_path, "notes.txt", corpus.builtin_alias_proto0(tmp_path / "m"))).format is (
        FileFormat.PICKLE
    )
    zipped = corpus.zip_of({"model.pkl": pickle.dumps(1)})
    assert sniff_file(_write(tmp_path, "model.safetensors", zipped)).format is FileFormat.ZIP
    assert sniff_file(_write(tmp_path, "model.pkl", _safetensors())).format is FileFormat.SAFETENSORS


def test_polyglot_pickle_with_zip_tail(tmp_path: Path) -> None:
    data = pickle.dumps({"a": 1}, protocol=2) + corpus.zip_of({"archive/data.pkl": pickle.dumps(1)})
    sn = sniff_file(_write(tmp_path, "p.bin", data))
    assert sn.format is FileFormat.PICKLE
    assert sn.formats == (FileFormat.PICKLE, FileFormat.TORCH_ZIP)
    assert [f.rule for f in sn.findings] == ["format.polyglot"]
    assert sn.findings[0].severity is Severity.HIGH


def test_safetensors_with_zip_appended_is_polyglot(tmp_path: Path) -> None:
    sn = sniff_file(_write(tmp_path, "m.safetensors", _safetensors() + corpus.zip_of({"x": b"y"})))
    assert sn.format is FileFormat.SAFETENSORS
    assert "format.polyglot" in [f.rule for f in sn.findings]


def test_text_is_not_mistaken_for_protocol0_pickle() -> None:
    for text in (b"hello world\n", b"I am text", b"(not a pickle)", b"]]]", b"}{", b"S'unterminated"):
        assert not looks_like_pickle(text, len(text)), text


def test_every_format_has_a_family() -> None:
    for fmt in FileFormat:
        assert isinstance(family_of(fmt), FormatFamily)
    assert set(FAMILY) == set(FileFormat)
    assert family_of(FileFormat.TORCH_ZIP) is FormatFamily.PICKLE
    assert family_of(FileFormat.PYTHON) is FormatFamily.CUSTOM_CODE


def test_sniff_reads_only_head_and_tail_of_large_files(tmp_path: Path) -> None:
    """A sparse 3 GB safetensors-shaped file sniffs instantly (no full read)."""
    import time

    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    p = tmp_path / "big.safetensors"
    with p.open("wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(3 * 1024**3)
    started = time.monotonic()
    assert sniff_file(p).format is FileFormat.SAFETENSORS
    assert time.monotonic() - started < 1.0


def test_safetensors_whose_header_length_reads_as_a_pickle_proto(tmp_path: Path) -> None:
    """A 0x0180-byte header starts `80 01`: a PROTO opcode. The safetensors shape wins; not a polyglot."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "pad": "x" * 300}).encode()
    header += b" " * (0x180 - len(header))
    data = struct.pack("<Q", len(header)) + header + bytes(4)
    assert data[:2] == b"\x80\x01" and looks_like_pickle(data, len(data))
    sn = sniff_file(_write(tmp_path, "w.bin", data))
    assert (sn.format, sn.formats, sn.findings) == (FileFormat.SAFETENSORS, (FileFormat.SAFETENSORS,), ())


def test_safetensors_header_that_lies_about_its_length_is_still_safetensors(tmp_path: Path) -> None:
    for length in (4096, 2**40):  # past the end of the file: the safetensors scanner reports it
        data = struct.pack("<Q", length) + b'{"a": 1}'
        assert sniff_file(_write(tmp_path, "w.bin", data)).format is FileFormat.SAFETENSORS
    # eight spaces and `{"`: indented JSON text, not a safetensors length
    assert sniff_file(_write(tmp_path, "c", b'        {"a": 1}\n')).format is FileFormat.JSON


def test_graph_protobufs_by_content_without_a_name(tmp_path: Path) -> None:
    from tests.corpus_formats import writers as w

    frozen = w.tf_graph([w.tf_node("x", "Placeholder"), w.tf_node("y", "Relu", ["x"])])
    metadata = w.keras_metadata([("root", '{"class_name": "Sequential"}')])
    saved = w.tf_saved_model(w.tf_graph([w.tf_node("x", "Placeholder")]), ["Placeholder"])
    for data in (frozen, metadata, saved):
        assert sniff_file(_write(tmp_path, "blob", data)).format is FileFormat.SAVED_MODEL, data[:32]
    assert sniff_file(_write(tmp_path, "tokenizer.model", _sentencepiece())).format is FileFormat.SENTENCEPIECE


def test_templates_and_prose_in_brackets_are_text_not_json(tmp_path: Path) -> None:
    for text in ("{% for m in messages %}{{ m }}{% endfor %}", "{{ bos_token }}", "{# c #}", "[INST] hi [/INST]"):
        assert sniff_file(_write(tmp_path, "t", text.encode())).format is FileFormat.TEXT, text
    for text in ('{\n  "a": 1\n}', "{}", "[1, 2]", '[{"a": null}]', "[]"):
        assert sniff_file(_write(tmp_path, "j", text.encode())).format is FileFormat.JSON, text


def test_gguf_or_safetensors_that_also_walk_as_a_pickle_are_polyglots(tmp_path: Path) -> None:
    walk = b"()0X" + struct.pack("<I", 9) + b'{"a": {}}' + b"0" + pickle.dumps(1, protocol=2)[2:]
    sn = sniff_file(_write(tmp_path, "w.bin", walk))
    assert sn.formats == (FileFormat.SAFETENSORS, FileFormat.PICKLE)
    assert [(f.rule, f.severity) for f in sn.findings] == [("format.polyglot", Severity.HIGH)]
    gguf = b"GGUF" + struct.pack("<I", 3) + b"N." + bytes(16)  # BINFLOAT `G` eats "GUF", the version and `N`; `.` STOP
    assert sniff_file(_write(tmp_path, "m.gguf", gguf)).formats == (FileFormat.GGUF, FileFormat.PICKLE)
    real = b"GGUF" + struct.pack("<IQQ", 3, 0, 0)
    assert sniff_file(_write(tmp_path, "m.gguf", real)).formats == (FileFormat.GGUF,)
