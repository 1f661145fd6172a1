"""GGUF metadata parsing: the corpus, template extraction, hostile counts, limits and cost."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest

from proxy.models import Severity
from proxy.scan import gguf
from proxy.scan.limits import DEFAULT_LIMITS, ScanLimits
from tests.corpus_formats import cases_for
from tests.corpus_formats.common import CHATML, Case, assert_case, scan_case
from tests.corpus_formats.writers import GGUF_ARRAY, GGUF_STRING, GGUF_U32, gguf_bytes


@pytest.mark.parametrize("case", cases_for("gguf", hostile=True), ids=lambda c: c.name)
def test_hostile_corpus(case: Case, tmp_path: Path) -> None:
    assert_case(case, scan_case(case, tmp_path))


@pytest.mark.parametrize("case", cases_for("gguf", hostile=False), ids=lambda c: c.name)
def test_benign_corpus_is_silent(case: Case, tmp_path: Path) -> None:
    assert scan_case(case, tmp_path) == []


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "m.gguf"
    path.write_bytes(data)
    return path


def test_template_findings_say_which_key(tmp_path: Path) -> None:
    template = "{{ x }}\n{{ ''.__class__ }}"
    path = _write(tmp_path, gguf_bytes([("tokenizer.chat_template.rag", GGUF_STRING, template)]))
    (finding,) = [f for f in gguf.scan(path, DEFAULT_LIMITS) if f.rule == "template.dunder-access"]
    assert finding.location == "gguf:tokenizer.chat_template.rag line 2"


def test_only_chat_template_keys_are_templates(tmp_path: Path) -> None:
    kvs = [("general.description", GGUF_STRING, "{{ ''.__class__ }}"), ("tokenizer.chat_template", GGUF_STRING, CHATML)]
    assert gguf.scan(_write(tmp_path, gguf_bytes(kvs)), DEFAULT_LIMITS) == []


def test_hostile_string_length_allocates_nothing(tmp_path: Path) -> None:
    data = gguf_bytes([("tokenizer.chat_template", GGUF_STRING, "x")])
    at = 24 + 8 + len("tokenizer.chat_template") + 4  # header, key, value type: the template's length field
    data = data[:at] + struct.pack("<Q", 2**63) + data[at + 8 :]
    (finding,) = gguf.scan(_write(tmp_path, data), DEFAULT_LIMITS)
    assert (finding.rule, finding.severity) == ("gguf.truncated", Severity.HIGH)
    assert "remain" in finding.message


def test_nested_arrays_are_bounded(tmp_path: Path) -> None:
    nested: object = (GGUF_U32, [1])
    for _ in range(6):
        nested = (GGUF_ARRAY, [nested])
    (finding,) = gguf.scan(_write(tmp_path, gguf_bytes([("deep", GGUF_ARRAY, nested)])), DEFAULT_LIMITS)
    assert finding.rule == "gguf.malformed"
    assert "nested deeper" in finding.message


def test_metadata_over_the_header_limit_is_a_limit_finding(tmp_path: Path) -> None:
    tokens = [f"token-{i}" for i in range(2000)]
    path = _write(tmp_path, gguf_bytes([("tokenizer.ggml.tokens", GGUF_ARRAY, (GGUF_STRING, tokens))]))
    assert gguf.scan(path, DEFAULT_LIMITS) == []
    (finding,) = gguf.scan(path, ScanLimits(max_header_bytes=4096))
    assert (finding.rule, finding.severity) == ("gguf.limit", Severity.MEDIUM)


def test_unknown_tensor_type_is_low(tmp_path: Path) -> None:
    path = _write(tmp_path, gguf_bytes([], [("t", [256], 23, b"\0" * 136)]))  # IQ4_XS: layout not tabled
    (finding,) = gguf.scan(path, DEFAULT_LIMITS)
    assert (finding.rule, finding.severity) == ("gguf.unknown-tensor-type", Severity.LOW)


def test_invalid_tensor_type_and_partial_blocks(tmp_path: Path) -> None:
    invalid = gguf.scan(_write(tmp_path, gguf_bytes([], [("t", [4], 500, b"\0" * 16)])), DEFAULT_LIMITS)
    assert [f.rule for f in invalid] == ["gguf.malformed"]
    partial = gguf.scan(_write(tmp_path, gguf_bytes([], [("q", [33], 8, b"\0" * 68)])), DEFAULT_LIMITS)
    assert "not whole Q8_0 blocks" in partial[0].message


def test_real_sized_vocabulary_is_fast(tmp_path: Path) -> None:
    tokens = [f"tok{i}" for i in range(150_000)]
    kvs = [
        ("tokenizer.ggml.tokens", GGUF_ARRAY, (GGUF_STRING, tokens)),
        ("tokenizer.ggml.merges", GGUF_ARRAY, (GGUF_STRING, tokens)),
        ("tokenizer.chat_template", GGUF_STRING, CHATML),
    ]
    path = _write(tmp_path, gguf_bytes(kvs, [("w", [8], 0, b"\0" * 32)]))
    started = time.perf_counter()
    assert gguf.scan(path, DEFAULT_LIMITS) == []
    assert time.perf_counter() - started < 2.0
