"""safetensors and GGUF files: benign exports and hand-made hostile headers."""

from __future__ import annotations

import struct

import numpy as np

from proxy.models import Severity
from tests.corpus_formats import writers as w
from tests.corpus_formats.common import CHATML, LLAMA3, TOOLS, benign, hostile, ssti_template

# -- safetensors -----------------------------------------------------------------------------------------


def _st_benign(_: str) -> bytes:
    from safetensors.numpy import save

    tensors = {
        "embed.weight": np.arange(48, dtype=np.float32).reshape(12, 4),
        "norm.weight": np.ones(4, dtype=np.float16),
        "positions": np.arange(7, dtype=np.int64),
        "mask": np.array([True, False, True]),
        "complex": np.zeros(2, dtype=np.complex64),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }
    return save(tensors, metadata={"format": "pt", "note": "benign"})  # type: ignore[arg-type]


def _tensor(dtype: str, shape: list[int], begin: int, end: int) -> dict[str, object]:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def _pickle_tail(marker: str) -> bytes:
    return b"cos\nsystem\n(S'touch " + marker.encode() + b"'\ntR."


SAFETENSORS_CASES = [
    benign("st-benign", "model.safetensors", "safetensors", _st_benign),
    hostile(
        "st-header-huge",
        "model.safetensors",
        "safetensors",
        "safetensors.header-size",
        Severity.HIGH,
        lambda m: w.safetensors_raw({}, b"", header_len=2**40),
    ),
    hostile(
        "st-header-past-eof",
        "model.safetensors",
        "safetensors",
        "safetensors.header-size",
        Severity.HIGH,
        lambda m: w.safetensors_raw({}, b"", header_len=4096),
    ),
    hostile(
        "st-truncated",
        "model.safetensors",
        "safetensors",
        "safetensors.truncated",
        Severity.HIGH,
        lambda m: b"\x10\x00\x00",
    ),
    hostile(
        "st-not-json",
        "model.safetensors",
        "safetensors",
        "safetensors.header-json",
        Severity.HIGH,
        lambda m: w.safetensors_raw('{"a": [1, 2', b""),
    ),
    hostile(
        "st-not-utf8",
        "model.safetensors",
        "safetensors",
        "safetensors.header-encoding",
        Severity.HIGH,
        lambda m: w.safetensors_raw(b'{"\xff\xfe": 1}', b""),
    ),
    hostile(
        "st-out-of-range",
        "model.safetensors",
        "safetensors",
        "safetensors.out-of-range",
        Severity.CRITICAL,
        lambda m: w.safetensors_raw({"w": _tensor("F32", [262144], 0, 1 << 20)}, b"\0" * 16),
    ),
    hostile(
        "st-overlap",
        "model.safetensors",
        "safetensors",
        "safetensors.overlap",
        Severity.HIGH,
        lambda m: w.safetensors_raw({"a": _tensor("F32", [4], 0, 16), "b": _tensor("F32", [4], 8, 24)}, b"\0" * 24),
    ),
    hostile(
        "st-gap",
        "model.safetensors",
        "safetensors",
        "safetensors.gap",
        Severity.HIGH,
        lambda m: w.safetensors_raw({"a": _tensor("F32", [4], 0, 16), "b": _tensor("F32", [4], 32, 48)}, b"\0" * 48),
    ),
    hostile(
        "st-pickle-tail",
        "model.safetensors",
        "safetensors",
        "safetensors.trailing-bytes",
        Severity.HIGH,
        lambda m: w.safetensors_raw({"a": _tensor("F32", [4], 0, 16)}, b"\0" * 16 + _pickle_tail(m)),
    ),
    hostile(
        "st-bad-dtype",
        "model.safetensors",
        "safetensors",
        "safetensors.dtype",
        Severity.HIGH,
        lambda m: w.safetensors_raw({"a": _tensor("PICKLE", [4], 0, 16)}, b"\0" * 16),
    ),
    hostile(
        "st-bad-shape",
        "model.safetensors",
        "safetensors",
        "safetensors.shape",
        Severity.HIGH,
        lambda m: w.safetensors_raw({"a": _tensor("F32", [-4], 0, 16)}, b"\0" * 16),
    ),
    hostile(
        "st-size-mismatch",
        "model.safetensors",
        "safetensors",
        "safetensors.size-mismatch",
        Severity.HIGH,
        lambda m: w.safetensors_raw({"a": _tensor("F32", [4], 0, 8)}, b"\0" * 8),
    ),
    hostile(
        "st-metadata-object",
        "model.safetensors",
        "safetensors",
        "safetensors.metadata",
        Severity.HIGH,
        lambda m: w.safetensors_raw({"__metadata__": {"cmd": {"run": f"touch {m}"}}}, b""),
    ),
    hostile(
        "st-duplicate-key",
        "model.safetensors",
        "safetensors",
        "safetensors.duplicate-key",
        Severity.HIGH,
        lambda m: w.safetensors_raw(
            '{"a": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]}, '
            '"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}}',
            b"\0" * 4,
        ),
    ),
]

# -- GGUF ------------------------------------------------------------------------------------------------


def _gguf_kvs(template: str | None = CHATML) -> list[tuple[str, int, object]]:
    tokens = [f"tok{i}" for i in range(500)] + ["<|im_start|>", "<|im_end|>"]
    kvs: list[tuple[str, int, object]] = [
        ("general.architecture", w.GGUF_STRING, "llama"),
        ("general.name", w.GGUF_STRING, "tiny"),
        ("llama.context_length", w.GGUF_U32, 2048),
        ("tokenizer.ggml.model", w.GGUF_STRING, "gpt2"),
        ("tokenizer.ggml.tokens", w.GGUF_ARRAY, (w.GGUF_STRING, tokens)),
        ("tokenizer.ggml.scores", w.GGUF_ARRAY, (w.GGUF_F32, [0.0] * len(tokens))),
        ("tokenizer.ggml.add_bos_token", w.GGUF_BOOL, True),
    ]
    if template is not None:
        kvs.append(("tokenizer.chat_template", w.GGUF_STRING, template))
    return kvs


_GGUF_TENSORS = [
    ("token_embd.weight", [4, 8], 0, b"\0" * 128),  # F32
    ("blk.0.attn_q.weight", [32, 2], 8, b"\0" * 68),  # Q8_0: 2 blocks of 34 bytes
    ("output_norm.weight", [4], 1, b"\0" * 8),  # F16
]


def _gguf(kvs: list[tuple[str, int, object]] | None = None, **kwargs: object) -> bytes:
    return w.gguf_bytes(_gguf_kvs() if kvs is None else kvs, _GGUF_TENSORS, **kwargs)  # type: ignore[arg-type]


def _patch(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


GGUF_CASES = [
    benign("gguf-benign", "model.gguf", "gguf", lambda m: _gguf()),
    benign("gguf-benign-v2", "model.gguf", "gguf", lambda m: _gguf(version=2)),
    benign("gguf-benign-v1", "model.gguf", "gguf", lambda m: _gguf(version=1)),
    benign("gguf-benign-big-endian", "model.gguf", "gguf", lambda m: _gguf(endian=">")),
    benign(
        "gguf-benign-tools-template",
        "model.gguf",
        "gguf",
        lambda m: w.gguf_bytes(
            [*_gguf_kvs(LLAMA3), ("tokenizer.chat_template.tool_use", w.GGUF_STRING, TOOLS)], _GGUF_TENSORS
        ),
    ),
    benign(
        "gguf-benign-alignment",
        "model.gguf",
        "gguf",
        lambda m: w.gguf_bytes([*_gguf_kvs(), ("general.alignment", w.GGUF_U32, 64)], _GGUF_TENSORS, alignment=64),
    ),
    hostile(
        "gguf-ssti",
        "model.gguf",
        "gguf",
        "template.dunder-access",
        Severity.CRITICAL,
        lambda m: w.gguf_bytes(_gguf_kvs(ssti_template(m)), _GGUF_TENSORS),
    ),
    hostile(
        "gguf-ssti-named-template",
        "model.gguf",
        "gguf",
        "template.global-escape",
        Severity.CRITICAL,
        lambda m: w.gguf_bytes(
            [
                *_gguf_kvs(),
                (
                    "tokenizer.chat_template.rag",
                    w.GGUF_STRING,
                    f"{{{{ cycler.__init__.__globals__.os.popen('touch {m}') }}}}",
                ),
            ],
            _GGUF_TENSORS,
        ),
    ),
    hostile(
        "gguf-template-not-string",
        "model.gguf",
        "gguf",
        "gguf.template-type",
        Severity.MEDIUM,
        lambda m: w.gguf_bytes([*_gguf_kvs(None), ("tokenizer.chat_template", w.GGUF_U32, 7)], _GGUF_TENSORS),
    ),
    hostile("gguf-bad-magic", "model.gguf", "gguf", "gguf.malformed", Severity.HIGH, lambda m: b"GGUX" + _gguf()[4:]),
    hostile(
        "gguf-bad-version",
        "model.gguf",
        "gguf",
        "gguf.malformed",
        Severity.HIGH,
        lambda m: _patch(_gguf(), 4, struct.pack("<I", 99)),
    ),
    hostile(
        "gguf-huge-kv-count",
        "model.gguf",
        "gguf",
        "gguf.malformed",
        Severity.HIGH,
        lambda m: _patch(_gguf(), 16, struct.pack("<Q", 2**40)),
    ),
    hostile(
        "gguf-huge-string",
        "model.gguf",
        "gguf",
        "gguf.truncated",
        Severity.HIGH,
        # the first key's value ("llama") length, rewritten to 2**62
        lambda m: _patch(_gguf(), 24 + 8 + len("general.architecture") + 4, struct.pack("<Q", 2**62)),
    ),
    hostile(
        "gguf-huge-array",
        "model.gguf",
        "gguf",
        "gguf.truncated",
        Severity.HIGH,
        lambda m: w.gguf_bytes([("tokenizer.ggml.tokens", w.GGUF_ARRAY, (w.GGUF_STRING, ["a"]))], []).replace(
            struct.pack("<IQ", w.GGUF_STRING, 1), struct.pack("<IQ", w.GGUF_STRING, 2**61), 1
        ),
    ),
    hostile(
        "gguf-too-many-dims",
        "model.gguf",
        "gguf",
        "gguf.malformed",
        Severity.HIGH,
        lambda m: w.gguf_bytes(_gguf_kvs(), [("t", [1] * 9, 0, b"\0" * 4)]),
    ),
    hostile(
        "gguf-tensor-out-of-range",
        "model.gguf",
        "gguf",
        "gguf.out-of-range",
        Severity.CRITICAL,
        lambda m: w.gguf_bytes(_gguf_kvs(), _GGUF_TENSORS, offsets=[0, 2**30, 224]),
    ),
    hostile(
        "gguf-tensor-overlap",
        "model.gguf",
        "gguf",
        "gguf.overlap",
        Severity.HIGH,
        lambda m: w.gguf_bytes(_gguf_kvs(), _GGUF_TENSORS, offsets=[0, 96, 224]),
    ),
    hostile(
        "gguf-duplicate-key",
        "model.gguf",
        "gguf",
        "gguf.duplicate-key",
        Severity.HIGH,
        lambda m: w.gguf_bytes([*_gguf_kvs(), ("general.name", w.GGUF_STRING, "again")], _GGUF_TENSORS),
    ),
    hostile(
        "gguf-bad-alignment",
        "model.gguf",
        "gguf",
        "gguf.malformed",
        Severity.HIGH,
        lambda m: w.gguf_bytes([*_gguf_kvs(), ("general.alignment", w.GGUF_U32, 3)], _GGUF_TENSORS),
    ),
    hostile("gguf-truncated", "model.gguf", "gguf", "gguf.truncated", Severity.HIGH, lambda m: _gguf()[:200]),
]
