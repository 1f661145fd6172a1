"""safetensors header validation: the corpus, exact messages, sub-byte dtypes, and header-only cost."""

from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path

import pytest

from proxy.models import Severity
from proxy.scan import safetensors
from proxy.scan.limits import DEFAULT_LIMITS, ScanLimits
from tests.corpus_formats import cases_for
from tests.corpus_formats.common import Case, assert_case, scan_case
from tests.corpus_formats.writers import safetensors_raw


@pytest.mark.parametrize("case", cases_for("safetensors", hostile=True), ids=lambda c: c.name)
def test_hostile_corpus(case: Case, tmp_path: Path) -> None:
    assert_case(case, scan_case(case, tmp_path))


@pytest.mark.parametrize("case", cases_for("safetensors", hostile=False), ids=lambda c: c.name)
def test_benign_corpus_is_silent(case: Case, tmp_path: Path) -> None:
    assert scan_case(case, tmp_path) == []


def _header(tensors: dict[str, object]) -> bytes:
    return json.dumps(tensors).encode()


def test_out_of_range_names_tensor_and_sizes() -> None:
    header = _header({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})
    (finding,) = [f for f in safetensors.check_header(header, data_len=8) if f.rule == "safetensors.out-of-range"]
    assert finding.severity is Severity.CRITICAL
    assert finding.location == "w"
    assert "spans bytes [0, 16) but the data section has 8 bytes" in finding.message


@pytest.mark.parametrize(
    ("dtype", "shape", "nbytes", "ok"),
    [
        ("F4", [4], 2, True),  # 4 x 4 bits
        ("F4", [3], 2, False),  # 12 bits: not whole bytes
        ("F6_E2M3", [4], 3, True),
        ("BF16", [2, 3], 12, True),
        ("C64", [2], 16, True),
        ("F8_E4M3FNUZ", [5], 5, True),
        ("I64", [2], 8, False),
    ],
)
def test_sizes_follow_dtype_bits(dtype: str, shape: list[int], nbytes: int, ok: bool) -> None:
    header = _header({"t": {"dtype": dtype, "shape": shape, "data_offsets": [0, nbytes]}})
    findings = safetensors.check_header(header, data_len=nbytes)
    assert (findings == []) is ok, findings
    if not ok:
        assert [f.rule for f in findings] == ["safetensors.size-mismatch"]


def test_huge_shape_does_not_build_bignums() -> None:
    header = _header({"t": {"dtype": "F32", "shape": [2**60] * 1000, "data_offsets": [0, 4]}})
    started = time.perf_counter()
    findings = safetensors.check_header(header, data_len=4)
    assert time.perf_counter() - started < 0.5
    assert [f.rule for f in findings] == ["safetensors.size-mismatch"]


@pytest.mark.parametrize(
    ("header", "rule"),
    [
        (b'[{"a": 1}]', "safetensors.header-json"),
        (b'{"a": NaN}', "safetensors.header-json"),
        (b'{"a": {"dtype": "F32", "shape": [true], "data_offsets": [0, 0]}}', "safetensors.shape"),
        (b'{"a": {"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]}}', "safetensors.shape"),
        (b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}', "safetensors.offsets"),
        (b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}', "safetensors.offsets"),
        (b'{"a": {"dtype": "F32", "shape": [1]}}', "safetensors.header-json"),
        (b'{"a": 3}', "safetensors.header-json"),
        (b'{"__metadata__": ["x"]}', "safetensors.metadata"),
        (b'{"a": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0], "x": 1}}', "safetensors.extra-field"),
    ],
)
def test_malformed_headers(header: bytes, rule: str) -> None:
    assert rule in {f.rule for f in safetensors.check_header(header, data_len=0)}


def test_extra_field_is_low_and_null_metadata_is_fine() -> None:
    header = b'{"__metadata__": null, "a": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0], "x": 1}}'
    (finding,) = safetensors.check_header(header, data_len=0)
    assert finding.severity is Severity.LOW


def test_header_over_the_limit_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    header = {"w": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}, "__metadata__": {"pad": "x" * 5000}}
    path.write_bytes(safetensors_raw(header, b"\0" * 4))
    assert safetensors.scan(path, DEFAULT_LIMITS) == []
    (finding,) = safetensors.scan(path, ScanLimits(max_header_bytes=1024))
    assert finding.rule == "safetensors.header-size"
    assert "exceeds the limit of 1024 bytes" in finding.message


def test_multi_gigabyte_file_costs_only_its_header(tmp_path: Path) -> None:
    path = tmp_path / "big.safetensors"
    size = 3 * 1024**3
    header = json.dumps({"w": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(header)) + header)
        fh.truncate(8 + len(header) + size)  # sparse: nothing is written or read beyond the header
    assert os.path.getsize(path) > size
    started = time.perf_counter()
    assert safetensors.scan(path, DEFAULT_LIMITS) == []
    assert time.perf_counter() - started < 0.1


def test_many_findings_are_capped() -> None:
    tensors = {f"t{i}": {"dtype": "BAD", "shape": [1], "data_offsets": [0, 1]} for i in range(200)}
    findings = safetensors.check_header(_header(tensors), data_len=0)
    assert len(findings) == safetensors.MAX_FINDINGS + 1
    assert findings[-1].rule == "safetensors.many-findings"
