"""Constant memory both ways: export + import of a 256 MiB blob peaks at the same RSS as a 16 MiB one.

Each size runs bench/bundle_bench.py in a fresh process (ru_maxrss is a per-process high-water mark)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bundle_bench.py"


def _peak(size_mb: int) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--size-mb", str(size_mb), "--json"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(300)
def test_peak_rss_does_not_grow_with_the_blob() -> None:
    small, big = _peak(16), _peak(256)
    assert big["imported_files"] == small["imported_files"] == 1
    # 240 MiB more data moved through export and import; memory may wobble by a few MiB, never by the data.
    assert big["peak_rss_mib"] - small["peak_rss_mib"] < 32, (small, big)
    assert big["import_rss_growth_mib"] < 32 and big["export_rss_growth_mib"] < 32, big
