"""The allowlist pickle engine: classification, stack simulation, breakage, limits, joblib, FX source."""

from __future__ import annotations

import collections
import io
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from proxy.models import Severity
from proxy.scan.allowlist import ALLOWED, GlobalClass, classify_global
from proxy.scan.limits import ScanLimits
from proxy.scan.pickle import PickleScan, scan_pickle_stream
from proxy.scan.pysource import analyse_exec_source
from tests import corpus

LIMITS = ScanLimits()


def walk(data: bytes, limits: ScanLimits = LIMITS, **kw: object) -> PickleScan:
    return scan_pickle_stream(io.BytesIO(data), location="t", limits=limits, **kw)  # type: ignore[arg-type]


def rules(scan: PickleScan, at_least: Severity = Severity.INFO) -> set[str]:
    return {f.rule for f in scan.findings if f.severity.rank >= at_least.rank}


@pytest.mark.parametrize(
    ("module", "name", "cls"),
    [
        ("torch._utils", "_rebuild_tensor_v2", GlobalClass.ALLOWED),
        ("collections", "OrderedDict", GlobalClass.ALLOWED),
        ("numpy._core.multiarray", "_reconstruct", GlobalClass.ALLOWED),
        ("__builtin__", "set", GlobalClass.ALLOWED),
        ("_codecs", "encode", GlobalClass.CALL_PATTERN),
        ("torch.fx.graph_module", "reduce_graph_module", GlobalClass.FX),
        ("os", "system", GlobalClass.DANGEROUS),
        ("posix", "system", GlobalClass.DANGEROUS),
        ("nt", "system", GlobalClass.DANGEROUS),
        ("subprocess", "Popen", GlobalClass.DANGEROUS),
        ("builtins", "getattr", GlobalClass.DANGEROUS),
        ("__builtin__", "eval", GlobalClass.DANGEROUS),
        ("importlib.machinery", "SourceFileLoader", GlobalClass.DANGEROUS),
        ("torch", "load", GlobalClass.DANGEROUS),
        ("torch.storage", "_load_from_bytes", GlobalClass.DANGEROUS),
        ("operator", "attrgetter", GlobalClass.DANGEROUS),
        ("functools", "partial", GlobalClass.DANGEROUS),
        ("webbrowser", "open", GlobalClass.DANGEROUS),
        # protocol 4 dotted names walk attributes: torch.serialization.os.system is os.system
        ("torch", "serialization.os.system", GlobalClass.DANGEROUS),
        ("torch", "_utils.__dict__", GlobalClass.DANGEROUS),
        ("argparse", "Namespace", GlobalClass.UNKNOWN),
        # Python 2 names the unpickler maps (fix_imports): judged by what is really imported
        ("__builtin__", "reduce", GlobalClass.DANGEROUS),  # -> functools.reduce
        ("__builtin__", "intern", GlobalClass.DANGEROUS),  # -> sys.intern
        ("copy_reg", "_reconstructor", GlobalClass.ALLOWED),
        ("UserDict", "UserDict", GlobalClass.UNKNOWN),  # -> collections.UserDict
        ("__main__", "MyModel", GlobalClass.UNKNOWN),
    ],
)
def test_classify_global(module: str, name: str, cls: GlobalClass) -> None:
    assert classify_global(module, name) is cls


def test_no_dotted_name_is_allowed() -> None:
    assert all("." not in name for _module, name in ALLOWED)


@pytest.mark.parametrize("proto", range(6))
def test_benign_numpy_and_containers_every_protocol(proto: int) -> None:
    obj = {
        "a": np.arange(6).reshape(2, 3),
        "od": collections.OrderedDict(x=np.float32(2.0), d=np.dtype("i4")),
        "s": {1, 2},
        "fs": frozenset({3}),
        "c": 1 + 2j,
        "b": bytearray(b"xy"),
        "r": range(3),
        "sl": slice(1, 2),
    }
    scan = walk(pickle.dumps(obj, protocol=proto))
    assert scan.findings == [], scan.findings
    assert scan.complete and scan.pickles == 1


def test_codecs_encode_only_in_its_benign_shape() -> None:
    benign = pickle.dumps(np.arange(3), protocol=2)  # numpy protocol 2 uses _codecs.encode(text, 'latin1')
    assert b"_codecs" in benign and walk(benign).findings == []
    odd = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R."
    assert "pickle.call-pattern" in rules(walk(odd), Severity.HIGH)
    passed_around = b"\x80\x02c__builtin__\nset\nc_codecs\nencode\n\x85\x85R."
    assert "pickle.call-pattern" in rules(walk(passed_around), Severity.HIGH)


@pytest.mark.parametrize(
    ("builder", "rule"),
    [
        (corpus.os_system, "pickle.dangerous-global"),
        (corpus.getattr_chain, "pickle.dynamic-call"),
        (corpus.stack_global_memo, "pickle.dangerous-global"),
        (corpus.stack_global_computed, "pickle.dynamic-global"),
        (corpus.operator_attrgetter, "pickle.dangerous-global"),
        (corpus.inst_opcode, "pickle.dangerous-global"),
        (corpus.build_on_global, "pickle.build-on-global"),
        (corpus.unknown_global, "pickle.unknown-global"),
    ],
)
def test_hostile_opcode_patterns(tmp_path: Path, builder: object, rule: str) -> None:
    scan = walk(builder(tmp_path / "m"))  # type: ignore[operator]
    assert rule in rules(scan, Severity.HIGH)
    assert scan.flagged


def test_payload_before_broken_tail_is_found_and_breakage_reported(tmp_path: Path) -> None:
    scan = walk(corpus.truncated_tail(tmp_path / "m"))
    assert "pickle.dangerous-global" in rules(scan, Severity.CRITICAL)
    assert "pickle.malformed" in rules(scan)


def test_truncated_stream_is_medium_not_a_crash() -> None:
    data = pickle.dumps({"a": list(range(100))}, protocol=4)
    scan = walk(data[: len(data) // 2])
    assert [(f.rule, f.severity) for f in scan.findings] == [("pickle.truncated", Severity.MEDIUM)]
    assert scan.complete  # a broken file is fully scanned, not indeterminate


def test_stack_underflow_is_malformed_and_later_imports_still_flagged() -> None:
    data = b"\x80\x02R" + b"cos\nsystem\n."  # REDUCE on an empty stack, then an import
    scan = walk(data)
    assert {"pickle.malformed", "pickle.dangerous-global"} <= rules(scan)


def test_unknown_memo_key_is_malformed() -> None:
    assert "pickle.malformed" in rules(walk(b"\x80\x02h\x07."))


def test_byte_budget_makes_the_walk_incomplete() -> None:
    data = pickle.dumps(list(range(10_000)), protocol=4)
    scan = walk(data, ScanLimits(max_pickle_bytes=1000))
    assert not scan.complete
    assert "pickle.limit" in rules(scan)


def test_opcode_budget_makes_the_walk_incomplete() -> None:
    scan = walk(b"\x80\x04" + b"N0" * 1000 + b"N.", ScanLimits(max_pickle_opcodes=100))
    assert not scan.complete


def test_large_byte_payloads_are_skipped_not_read() -> None:
    """A 64 MB BINBYTES8 costs a seek, not 64 MB of memory; the walk still completes."""
    size = 64 * 1024 * 1024
    header = b"\x80\x05\x8e" + struct.pack("<Q", size)

    class Sparse(io.RawIOBase):
        """header + `size` zero bytes + STOP, without holding them."""

        def __init__(self) -> None:
            self.pos = 0
            self.total = len(header) + size + 1

        def readable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return True

        def seek(self, off: int, whence: int = 0) -> int:
            self.pos = off if whence == 0 else self.pos + off if whence == 1 else self.total + off
            return self.pos

        def tell(self) -> int:
            return self.pos

        def readinto(self, b: bytearray) -> int:  # type: ignore[override]
            n = min(len(b), self.total - self.pos, 1 << 20)
            assert n <= 1 << 20, "a large read happened"
            for i in range(n):
                p = self.pos + i
                b[i] = header[p] if p < len(header) else (0x2E if p == self.total - 1 else 0)
            self.pos += n
            return n

    scan = scan_pickle_stream(Sparse(), location="t", limits=LIMITS)  # type: ignore[arg-type]
    assert scan.complete and scan.findings == [] and scan.bytes_walked == len(header) + size + 1


def test_trailing_non_pickle_data_is_low() -> None:
    scan = walk(pickle.dumps(1) + b"garbage")
    assert [(f.rule, f.severity) for f in scan.findings] == [("pickle.trailing-data", Severity.LOW)]


def test_concatenated_pickles_are_all_walked(tmp_path: Path) -> None:
    scan = walk(pickle.dumps(1, protocol=2) + corpus.os_system(tmp_path / "m"))
    assert scan.pickles == 2 and scan.flagged


def test_torch_legacy_stops_after_five_pickles() -> None:
    import torch

    data = corpus.torch_legacy({"w": torch.ones(1000)})
    scan = walk(data, max_pickles=5)
    assert scan.pickles == 5 and scan.findings == []


def test_joblib_inline_arrays_are_skipped_by_declared_size() -> None:
    data = corpus.joblib_bytes({"a": np.arange(1000.0), "b": np.ones((3, 3), dtype=np.int8), "s": "x"})
    scan = walk(data)
    assert scan.findings == [] and scan.complete
    assert len(scan.gaps) == 2


def test_joblib_object_array_nested_pickle_is_walked(tmp_path: Path) -> None:
    arr = np.empty(1, dtype=object)
    arr[0] = corpus.Reduce(__import__("os").system, "true")
    scan = walk(corpus.joblib_bytes({"o": arr}))
    assert "pickle.dangerous-global" in rules(scan, Severity.CRITICAL)


def test_fx_source_analysis() -> None:
    benign = "import torch\ndef forward(self, x):\n    relu = torch.nn.functional.relu(x);  x = None\n    return relu\n"
    assert analyse_exec_source(benign, 1 << 20) == []
    bad = analyse_exec_source("import subprocess\ndef forward(self, x):\n    return eval('x')\n", 1 << 20)
    assert {s for s, _ in bad} == {Severity.CRITICAL}
    assert analyse_exec_source("def (", 1 << 20)[0][0] is Severity.HIGH
    assert analyse_exec_source("x.__class__.__bases__", 1 << 20)[0][0] is Severity.CRITICAL


def _fx_fn(x):  # type: ignore[no-untyped-def]  # FX records annotations as globals; keep none
    import torch

    return torch.relu(x) + 1


def test_real_fx_graph_module_pickle_is_analysed() -> None:
    import zipfile

    import torch
    import torch.fx

    data = corpus.torch_zip(torch.fx.symbolic_trace(_fx_fn))
    scan = walk(zipfile.ZipFile(io.BytesIO(data)).read("archive/data.pkl"))
    fx = [f for f in scan.findings if f.rule.startswith("pickle.fx")]
    assert [(f.rule, f.severity) for f in fx] == [("pickle.fx-code", Severity.MEDIUM)]
    assert not scan.flagged, scan.findings


def test_hostile_fx_code_is_critical(tmp_path: Path) -> None:
    scan = walk(pickle.dumps(corpus.fx_graph_module_payload(tmp_path / "m"), protocol=2))
    crit = [f for f in scan.findings if f.severity is Severity.CRITICAL]
    assert any("imports os" in f.message for f in crit)


def test_legacy_storages_framing_walks_every_header_and_fails_closed_on_odd_layout() -> None:
    from proxy.scan.pickled import legacy_storages_framing

    header = b"\x80\x02(K\x00X\x03\x00\x00\x00cpuctorch\nFloatStorage\nt."  # (0, "cpu", torch.FloatStorage)
    good = pickle.dumps(1, protocol=2) + header + struct.pack("<q", 2) + b"\0" * 8 + pickle.dumps([], protocol=2)
    scan = walk(good, between=legacy_storages_framing())
    assert scan.complete and scan.pickles == 3 and scan.findings == []
    odd = pickle.dumps(1, protocol=2) + pickle.dumps((0, "cpu", "not a type"), protocol=2) + b"\0" * 16
    scan = walk(odd, between=legacy_storages_framing())
    assert not scan.complete and "pickle.layout" in rules(scan)


def test_external_engines_skip_pickles_above_their_limit(tmp_path: Path) -> None:
    from proxy.scan import scan_path

    p = tmp_path / "arrays.pkl"
    p.write_bytes(pickle.dumps({"a": np.zeros(100_000)}, protocol=4))
    report = scan_path(p, limits=ScanLimits(max_engine_bytes=10_000))
    assert report.verdict.value == "clean"
    assert [f.rule for f in report.findings] == ["engine.skipped"]
