"""ScanPool: real worker processes; hangs, crashes and memory blow-ups come back as `error`, never clean."""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import time
from pathlib import Path

import pytest

from proxy.models import ScanReport, ScanVerdict
from proxy.scan import ScanLimits
from proxy.scan.pool import ScanPool, scan_in_subprocess
from tests import corpus


def _slow_pickle(tmp_path: Path, seconds_of_work: int = 6) -> Path:
    """Millions of trivial opcodes: a few seconds of honest walking (no test hook in production code)."""
    p = tmp_path / "slow.pkl"
    p.write_bytes(b"\x80\x04" + b"N0" * (600_000 * seconds_of_work) + b"N.")
    return p


def _rules(report) -> list[str]:  # type: ignore[no-untyped-def]
    return [f.rule for f in report.findings]


async def test_clean_and_unsafe_through_workers(tmp_path: Path) -> None:
    import torch

    good = tmp_path / "sd.pt"
    good.write_bytes(corpus.torch_zip(torch.nn.Linear(2, 2).state_dict()))
    bad = tmp_path / "x.pkl"
    bad.write_bytes(corpus.os_system(tmp_path / "PWNED"))
    pool = ScanPool(workers=2, timeout=60, memory_mb=4096)
    try:
        r_good, r_bad = await asyncio.gather(
            pool.scan(good, display_name="sd.pt"), pool.scan(bad, known_sha256="ab" * 32)
        )
    finally:
        await pool.close()
    assert r_good.verdict is ScanVerdict.CLEAN and r_good.path == "sd.pt"
    assert r_bad.verdict is ScanVerdict.UNSAFE and r_bad.sha256 == "ab" * 32
    assert {"hubgate", "fickling", "modelscan"} <= set(r_good.engines)
    assert not (tmp_path / "PWNED").exists()


async def test_timeout_kills_the_worker_and_reports_error(tmp_path: Path) -> None:
    pool = ScanPool(workers=1, timeout=1.0, memory_mb=4096)
    started = time.monotonic()
    try:
        report = await pool.scan(_slow_pickle(tmp_path))
    finally:
        await pool.close()
    assert report.verdict is ScanVerdict.ERROR
    assert _rules(report) == ["scan.timeout"]
    assert time.monotonic() - started < 4.0
    assert pool.active_pids == []


async def _scan_in_a_worker(pool: ScanPool, tmp_path: Path) -> asyncio.Future[ScanReport]:
    """A slow scan, started and (within 4 s) running in a worker whose pid is in `pool.active_pids`."""
    task = asyncio.ensure_future(pool.scan(_slow_pickle(tmp_path)))
    for _ in range(200):
        if pool.active_pids:
            break
        await asyncio.sleep(0.02)
    return task


async def test_a_crashed_worker_is_an_error(tmp_path: Path) -> None:
    pool = ScanPool(workers=1, timeout=30, memory_mb=4096)
    try:
        task = await _scan_in_a_worker(pool, tmp_path)
        os.kill(pool.active_pids[0], signal.SIGKILL)
        report = await task
    finally:
        await pool.close()
    assert report.verdict is ScanVerdict.ERROR
    assert _rules(report) == ["scan.crash"]
    assert "signal 9" in report.findings[0].message


def _forkserver_vm_mb() -> int:
    from multiprocessing import forkserver

    pid = forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no VmSize")


def test_memory_cap_is_an_error_not_a_pass(tmp_path: Path) -> None:
    tiny = tmp_path / "t.pkl"
    tiny.write_bytes(b"\x80\x04N.")
    limits = ScanLimits(max_source_bytes=600 * 1024 * 1024)
    scan_in_subprocess(tiny, timeout=30, memory_mb=8192, limits=limits)  # starts the forkserver
    cap = _forkserver_vm_mb() + 150
    assert scan_in_subprocess(tiny, timeout=30, memory_mb=cap, limits=limits).verdict is ScanVerdict.CLEAN
    big = tmp_path / "big.pkl"
    text = b"a" * (400 * 1024 * 1024)
    big.write_bytes(b"\x80\x04\x8d" + struct.pack("<Q", len(text)) + text + b".")
    report = scan_in_subprocess(big, timeout=60, memory_mb=cap, limits=limits)
    assert report.verdict is ScanVerdict.ERROR
    assert _rules(report)[0] in ("scan.memory", "scan.crash"), report.findings


async def test_other_scans_are_not_stalled_and_the_loop_stays_free(tmp_path: Path) -> None:
    quick = tmp_path / "q.pkl"
    quick.write_bytes(corpus.os_system(tmp_path / "PWNED"))
    pool = ScanPool(workers=2, timeout=30, memory_mb=4096)
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    tick = asyncio.ensure_future(ticker())
    try:
        slow = asyncio.ensure_future(pool.scan(_slow_pickle(tmp_path, 4)))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        report = await pool.scan(quick)
        quick_took = time.monotonic() - started
        assert not slow.done(), "the slow scan should still be running"
        assert report.verdict is ScanVerdict.UNSAFE
        assert quick_took < 2.0
        await asyncio.sleep(0.3)  # keep the loop-latency probe running a little longer
    finally:
        tick.cancel()
        await pool.close()
    assert max(gaps) < 0.25, f"event loop blocked for {max(gaps):.2f}s"


async def test_concurrency_is_bounded_by_workers(tmp_path: Path) -> None:
    pool = ScanPool(workers=2, timeout=0.8, memory_mb=4096)
    seen = 0
    try:
        tasks = [asyncio.ensure_future(pool.scan(_slow_pickle(tmp_path, 2))) for _ in range(3)]
        while not all(t.done() for t in tasks):
            seen = max(seen, len(pool.active_pids))
            await asyncio.sleep(0.02)
        reports = [t.result() for t in tasks]
    finally:
        await pool.close()
    assert seen <= 2
    assert all(r.verdict is ScanVerdict.ERROR for r in reports)


def test_pool_rejects_zero_workers() -> None:
    with pytest.raises(ValueError, match="at least one worker"):
        ScanPool(workers=0, timeout=1, memory_mb=1)


async def test_cancelling_a_scan_kills_its_worker(tmp_path: Path) -> None:
    pool = ScanPool(workers=1, timeout=30, memory_mb=4096)
    try:
        task = await _scan_in_a_worker(pool, tmp_path)
        (pid,) = pool.active_pids
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("worker still running after cancel")
    finally:
        await pool.close()
