"""The async face of scanning: each scan in its own worker process, with a wall-clock timeout and a memory cap.

Workers are forked from a `forkserver` (never from the proxy's own process, which holds live sockets and an
event loop) that has already imported the scanners. A hang, a crash or a limit hit comes back as a
`ScanReport` with verdict `error` (rules `scan.timeout`, `scan.crash`, `scan.memory`) — never as a clean
result — and a hung worker is killed, not waited for. The event loop only awaits: the blocking wait for
each child runs on a dedicated thread pool whose size is the concurrency bound.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.context import BaseContext
from pathlib import Path

from pydantic import ValidationError

from proxy.models import ScanReport
from proxy.scan.limits import DEFAULT_LIMITS, ScanLimits
from proxy.scan.scanner import failure_report

_CTX_LOCK = threading.Lock()
_CTX: BaseContext | None = None


def _context() -> BaseContext:
    global _CTX
    with _CTX_LOCK:
        if _CTX is None:
            try:
                ctx: BaseContext = multiprocessing.get_context("forkserver")
                # "__main__" makes the forkserver import the entry script once, so children skip it
                ctx.set_forkserver_preload(["__main__", "proxy.scan.worker"])
            except ValueError:  # platforms without forkserver
                ctx = multiprocessing.get_context("spawn")
            _CTX = ctx
        return _CTX


def scan_in_subprocess(
    path: Path,
    *,
    display_name: str = "",
    known_sha256: str | None = None,
    timeout: float = 600.0,
    memory_mb: int = 4096,
    limits: ScanLimits | None = None,
    on_start: dict[int, object] | None = None,
) -> ScanReport:
    """Blocking: run one scan in a fresh worker process and return its report (fail closed)."""
    from proxy.scan.worker import run_scan  # the forkserver has it imported already

    ctx = _context()
    started = time.monotonic()
    name = display_name or str(path)
    limits_json = (limits or DEFAULT_LIMITS).model_dump_json()
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(  # type: ignore[attr-defined]
        target=run_scan,
        args=(child, str(path), display_name, known_sha256, limits_json, memory_mb),
        daemon=True,
        name="hubgate-scan",
    )
    proc.start()
    child.close()
    if on_start is not None:
        on_start[proc.pid] = proc
    data: bytes | None = None
    timed_out = False
    try:
        if parent.poll(timeout):
            try:
                data = parent.recv_bytes()
            except (EOFError, OSError):
                data = None
        else:
            timed_out = True
            proc.kill()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
    finally:
        parent.close()
        if on_start is not None:
            on_start.pop(proc.pid, None)
    elapsed = round(time.monotonic() - started, 6)
    sha = known_sha256 or ""
    if timed_out:
        return failure_report(
            path,
            display_name=name,
            rule="scan.timeout",
            message=f"scan did not finish within {timeout:g} s; worker killed, content not vetted",
            sha256=sha,
            duration=elapsed,
        )
    if data is not None:
        try:
            return ScanReport.model_validate_json(data)
        except ValidationError as exc:
            return failure_report(
                path, display_name=name, rule="scan.crash", message=f"worker sent a bad report: {exc}"[:500]
            )
    code = proc.exitcode
    how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
    return failure_report(
        path,
        display_name=name,
        rule="scan.crash",
        message=f"scan worker died ({how}) before reporting; content not vetted",
        sha256=sha,
        duration=elapsed,
    )


def current_engine_versions() -> dict[str, str]:
    """Versions of every engine a report can name, read without importing the engines into the server."""
    from importlib import metadata

    from proxy.scan.scanner import hubgate_version
    from proxy.scan.state import ENGINE

    versions = {ENGINE: hubgate_version()}
    for name in ("fickling", "modelscan"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def report_is_current(report: ScanReport, versions: dict[str, str]) -> bool:
    """A stored scan stays valid until one of the engines that produced it changes version."""
    return bool(report.engines) and all(versions.get(engine) == version for engine, version in report.engines.items())


class _Tracked(dict[int, object]):
    """The workers of one scan call, mirrored into the pool's registry of all active workers."""

    def __init__(self, registry: dict[int, object]) -> None:
        super().__init__()
        self.registry = registry

    def __setitem__(self, pid: int, proc: object) -> None:
        super().__setitem__(pid, proc)
        self.registry[pid] = proc

    def pop(self, pid: int, default: object = None) -> object:
        self.registry.pop(pid, None)
        return super().pop(pid, default)


class ScanPool:
    """Bounded concurrent scans in worker processes; `scan` never blocks the event loop."""

    def __init__(self, *, workers: int, timeout: float, memory_mb: int, limits: ScanLimits | None = None) -> None:
        if workers < 1:
            raise ValueError("ScanPool needs at least one worker")
        self.workers = workers
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.limits = limits or DEFAULT_LIMITS
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hubgate-scan")
        self._active: dict[int, object] = {}
        self._closed = False
        self.engine_versions = current_engine_versions()

    async def warm_up(self) -> None:
        """Start the fork server now (its preload imports take ~1 s) so the first scan does not pay for it."""

        def start() -> None:
            ctx = _context()
            if ctx.get_start_method() == "forkserver":
                from multiprocessing import forkserver

                forkserver.ensure_running()

        await asyncio.get_running_loop().run_in_executor(self._executor, start)

    @property
    def active_pids(self) -> list[int]:
        """Worker processes scanning right now (for metrics and operators)."""
        return list(self._active)

    async def scan(self, path: Path, *, display_name: str = "", known_sha256: str | None = None) -> ScanReport:
        if self._closed:
            raise RuntimeError("ScanPool is closed")
        mine = _Tracked(self._active)
        future = self._executor.submit(
            scan_in_subprocess,
            path,
            display_name=display_name,
            known_sha256=known_sha256,
            timeout=self.timeout,
            memory_mb=self.memory_mb,
            limits=self.limits,
            on_start=mine,
        )
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            # nobody wants the answer any more: do not leave a worker scanning for nobody
            future.cancel()
            for proc in list(mine.values()):
                getattr(proc, "kill", lambda: None)()
            raise

    async def close(self) -> None:
        self._closed = True
        for proc in list(self._active.values()):
            kill = getattr(proc, "kill", None)
            if kill:
                kill()
        self._executor.shutdown(wait=False, cancel_futures=True)
