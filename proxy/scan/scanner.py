"""`scan_path`: one file in, one ScanReport out (synchronous; the pool runs it in a worker process).

Verdict rules: any critical/high finding -> `unsafe`; otherwise, if our engine could not finish (limit hit,
crash, unsupported container) -> `error`; otherwise `clean` (info/low/medium findings may accompany it;
policy decides on medium).
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from functools import cache
from pathlib import Path

from proxy.models import FileFormat, Finding, ScanReport, ScanVerdict, Severity
from proxy.scan.allowlist import ruleset_digest
from proxy.scan.dispatch import scan_one
from proxy.scan.limits import DEFAULT_LIMITS, ScanLimits
from proxy.scan.sniff import FAMILY
from proxy.scan.state import ENGINE, ScanState


@cache
def hubgate_version() -> str:
    """Package version plus the allowlist digest: a changed list means old reports are stale."""
    try:
        from importlib.metadata import version

        pkg = version("hubgate")
    except Exception:
        pkg = "0+unknown"
    return f"{pkg}+rules.{ruleset_digest()}"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


MAX_FINDINGS = 500  # a hostile file can produce unbounded findings; the report stays a bounded document


def _bounded(findings: list[Finding]) -> list[Finding]:
    if len(findings) <= MAX_FINDINGS:
        return findings
    kept = sorted(findings, key=lambda f: -f.severity.rank)[: MAX_FINDINGS - 1]
    omitted = len(findings) - len(kept)
    return [
        *kept,
        Finding(
            engine=ENGINE,
            severity=Severity.INFO,
            rule="scan.truncated",
            message=f"{omitted} more findings omitted (lowest severities first)",
        ),
    ]


def verdict_for(findings: list[Finding], incomplete: bool) -> ScanVerdict:
    if any(f.severity.rank >= Severity.HIGH.rank for f in findings):
        return ScanVerdict.UNSAFE
    if incomplete:
        return ScanVerdict.ERROR
    return ScanVerdict.CLEAN


def failure_report(
    path: Path, *, display_name: str, rule: str, message: str, sha256: str = "", size: int = -1, duration: float = 0.0
) -> ScanReport:
    """A fail-closed report for a scan that did not produce one (crash, timeout, memory)."""
    if size < 0:
        try:
            size = path.stat().st_size
        except OSError:
            size = 0
    return ScanReport(
        sha256=sha256,
        size=size,
        path=display_name or str(path),
        verdict=ScanVerdict.ERROR,
        findings=[Finding(engine=ENGINE, severity=Severity.MEDIUM, rule=rule, message=message)],
        engines={ENGINE: hubgate_version()},
        duration_s=duration,
    )


def scan_path(
    path: Path,
    *,
    display_name: str = "",
    limits: ScanLimits | None = None,
    known_sha256: str | None = None,
    run_engines: bool = True,
) -> ScanReport:
    """Scan one regular file. `known_sha256` skips re-hashing (the proxy hashed while downloading)."""
    started = time.monotonic()
    limits = limits or DEFAULT_LIMITS
    name = display_name or str(path)
    size = path.stat().st_size
    sha = known_sha256 or sha256_file(path)
    primary = FileFormat.UNKNOWN
    with tempfile.TemporaryDirectory(prefix="hubgate-scan-") as tmp:
        state = ScanState(limits=limits, tmpdir=Path(tmp), run_engines=run_engines)
        state.engines[ENGINE] = hubgate_version()
        try:
            primary = scan_one(path, state, location=name, hint=display_name or path.name).format
        except MemoryError:
            raise  # the worker turns this into scan.memory
        except RecursionError:
            state.give_up("scan.limit", "structure nested too deeply to scan", name)
        except Exception as exc:  # our own bug must not become a pass
            state.give_up("scan.crash", f"hubgate scanner crashed: {type(exc).__name__}: {exc}"[:500], name)
    formats = state.formats or [primary]
    return ScanReport(
        sha256=sha,
        size=size,
        path=name,
        format=primary,
        formats=formats,
        families=sorted({FAMILY[f] for f in formats}, key=lambda fam: list(FAMILY.values()).index(fam)),
        verdict=verdict_for(state.findings, bool(state.incomplete)),
        findings=_bounded(state.findings),
        engines=state.engines,
        duration_s=round(time.monotonic() - started, 6),
    )
