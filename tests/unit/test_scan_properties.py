"""Property tests: random and mutated bytes through the sniffer, the pickle walker and the archive layer.

No input may crash a parser, hang, or escape as an exception: every scan returns a report, and no payload
ever runs (the corpus seeds carry live payloads whose marker must never appear).
"""

from __future__ import annotations

import io
import os
import pickle
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.models import ScanReport, ScanVerdict
from proxy.scan import ScanLimits, scan_path
from proxy.scan.limits import MB
from proxy.scan.pickle import scan_pickle_stream
from proxy.scan.sniff import sniff_file
from tests import corpus

MARKER = Path(tempfile.gettempdir()) / "hubgate-hypothesis-PWNED"
SMALL = ScanLimits(max_uncompressed_bytes=8 * MB, max_member_bytes=4 * MB, max_pickle_opcodes=200_000)
EXAMPLES = int(os.environ.get("HUBGATE_HYPOTHESIS_EXAMPLES", "60"))  # raise locally for a deeper soak
PROPS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _seeds() -> list[bytes]:
    evil = corpus.os_system(MARKER)
    return [
        evil,
        corpus.builtins_eval_proto0(MARKER),
        corpus.stack_global_memo(MARKER),
        pickle.dumps({"a": [1, 2.5, "x"], "b": (None, True)}, protocol=4),
        corpus.zip_of({"archive/data.pkl": evil, "archive/data/0": b"\0" * 64}),
        corpus.tar_of({"m.pkl": evil}),
        corpus.zip_of({"a.npy": b"\x93NUMPY\x01\x00v\x00{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"}),
    ]


SEEDS = _seeds()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "dup"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[at : at + draw(st.integers(1, 64))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 32))]
    return bytes(data)


def _scan_bytes(data: bytes, name: str = "f.bin") -> ScanReport:
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / name
        p.write_bytes(data)
        sniff_file(p)  # never raises for content
        return scan_path(p, limits=SMALL, run_engines=False)


@PROPS
@given(st.binary(max_size=4096))
def test_random_bytes_always_yield_a_report(data: bytes) -> None:
    report = _scan_bytes(data)
    assert isinstance(report.verdict, ScanVerdict)
    assert not MARKER.exists()


@PROPS
@given(mutated())
def test_mutated_corpus_always_yields_a_report(data: bytes) -> None:
    report = _scan_bytes(data)
    assert isinstance(report.verdict, ScanVerdict)
    assert not any(f.rule == "scan.crash" for f in report.findings), report.findings
    assert not MARKER.exists()


@PROPS
@given(st.binary(max_size=2048))
def test_pickle_walker_never_raises(data: bytes) -> None:
    for prefix in (b"", b"\x80\x02", b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00"):
        scan = scan_pickle_stream(io.BytesIO(prefix + data), location="h", limits=SMALL)
        assert scan.bytes_walked <= len(prefix) + len(data)


@settings(max_examples=max(EXAMPLES // 4, 10), deadline=None)
@given(mutated())
def test_mutated_corpus_with_external_engines(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "f.pkl"
        p.write_bytes(data)
        report = scan_path(p, limits=SMALL)
    assert not any(f.rule == "scan.crash" for f in report.findings), report.findings
    assert not MARKER.exists()
