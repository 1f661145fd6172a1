"""The generated corpus end to end through `scan_path`: exact verdicts, and nothing ever executes.

Every hostile sample must come back `unsafe` (or `error` where it is unscannable by design), every benign one
`clean`; the payloads would create a marker file if run, and the marker must not exist after scanning. One
test proves the payloads are live (they do create the marker when really loaded), so the marker check can
fail.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from proxy.models import ScanVerdict, Severity
from proxy.scan import scan_path
from tests.corpus import Sample, build_all

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Sample], Path]:
    base = tmp_path_factory.mktemp("corpus")
    marker = base / "PWNED"
    return build_all(base / "files", marker), marker


def test_every_sample_gets_its_exact_verdict(corpus: tuple[list[Sample], Path]) -> None:
    samples, marker = corpus
    wrong = []
    for s in samples:
        report = scan_path(s.path)
        if report.verdict not in s.expect:
            rules = sorted({f.rule for f in report.findings if f.severity.rank >= Severity.MEDIUM.rank})
            wrong.append(f"{s.technique}: got {report.verdict.value}, want {sorted(v.value for v in s.expect)} {rules}")
    assert not wrong, "\n".join(wrong)
    assert not marker.exists(), "a payload executed during scanning"


def test_hostile_verdicts_come_from_our_engine(corpus: tuple[list[Sample], Path]) -> None:
    """Ours is authoritative: each unsafe verdict must rest on a hubgate finding, not only a third party's."""
    samples, _ = corpus
    for s in samples:
        if ScanVerdict.UNSAFE not in s.expect:
            continue
        report = scan_path(s.path, run_engines=False)
        assert report.verdict is ScanVerdict.UNSAFE, s.technique
        assert any(f.engine == "hubgate" and f.severity.rank >= Severity.HIGH.rank for f in report.findings)


def test_benign_samples_have_no_high_findings_and_engines_recorded(corpus: tuple[list[Sample], Path]) -> None:
    samples, _ = corpus
    for s in samples:
        if s.hostile:
            continue
        report = scan_path(s.path)
        assert report.verdict is ScanVerdict.CLEAN, s.technique
        assert all(f.severity.rank < Severity.HIGH.rank for f in report.findings), (s.technique, report.findings)
        assert set(report.engines) >= {"hubgate"}, report.engines


def test_payloads_are_live_when_actually_loaded(tmp_path: Path) -> None:
    """Load a few payloads for real in a child process: each creates its marker, so the checks above can fail."""
    script = textwrap.dedent(
        f"""
        import io, pickle, sys
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r})
        from tests import corpus
        import numpy as np, torch, joblib
        base = Path({str(tmp_path)!r})
        m = [base / f"m{{i}}" for i in range(6)]
        pickle.loads(corpus.os_system(m[0]))
        torch.load(io.BytesIO(corpus.torch_zip(corpus.Reduce(__import__("os").system, f"touch {{m[1]}}"))),
                   weights_only=False)
        try:
            pickle.loads(pickle.dumps(corpus.fx_graph_module_payload(m[2])))  # runs the code, then fails
        except Exception:
            pass
        try:
            pickle.loads(corpus.truncated_tail(m[3]))
        except Exception:
            pass
        joblib.load(io.BytesIO(corpus.joblib_bytes({{"p": corpus.Reduce(__import__("os").system, f"touch {{m[4]}}")}},
                                                   ("zlib", 3))))
        legacy = base / "legacy.tar"  # torch reads the legacy tar format only from a real file
        legacy.write_bytes(corpus.torch_legacy_tar(m[5]))
        try:
            torch.load(legacy, weights_only=False)
        except Exception:
            pass
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], check=False, timeout=120, capture_output=True, text=True)
    made = sorted(p.name for p in tmp_path.glob("m*"))
    assert made == ["m0", "m1", "m2", "m3", "m4", "m5"], proc.stderr[-2000:]
