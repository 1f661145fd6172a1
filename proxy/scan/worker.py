"""What runs inside a scan worker process: cap memory, scan, send the report back as JSON.

Imported by the forkserver ahead of time (with numpy, fickling and modelscan) so each scan forks a warm
process instead of paying the imports. Never imports aiohttp or redis.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import resource
from multiprocessing.connection import Connection
from pathlib import Path

from proxy.scan import engines
from proxy.scan.dispatch import FORMAT_MODULES
from proxy.scan.limits import ScanLimits
from proxy.scan.scanner import failure_report, hubgate_version, scan_path

engines.preload()
hubgate_version()
engines.engine_versions()
for _module in sorted(set(FORMAT_MODULES.values())):  # the format scanners and their libraries (h5py, jinja2)
    with contextlib.suppress(Exception):  # a missing scanner is reported per scan, not here
        importlib.import_module(f"proxy.scan.{_module}")

MB = 1024 * 1024


def _cap_memory(memory_mb: int) -> None:
    if memory_mb <= 0:
        return
    limit = memory_mb * MB
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def run_scan(
    conn: Connection,
    path: str,
    display_name: str,
    known_sha256: str | None,
    limits_json: str,
    memory_mb: int,
) -> None:
    """Child entry point. Whatever happens, either a report is sent or the parent sees EOF (a crash)."""
    try:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        _cap_memory(memory_mb)
        limits = ScanLimits.model_validate_json(limits_json)
        try:
            report = scan_path(Path(path), display_name=display_name, limits=limits, known_sha256=known_sha256)
        except MemoryError:
            report = failure_report(
                Path(path),
                display_name=display_name,
                rule="scan.memory",
                message=f"scan exceeded the {memory_mb} MB memory cap; content not vetted",
                sha256=known_sha256 or "",
            )
        conn.send_bytes(report.model_dump_json().encode())
    finally:
        conn.close()
