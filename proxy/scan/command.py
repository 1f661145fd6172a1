"""`hubgate scan PATH... [--json]`: offline scan of local files, the same reports the proxy uses.

Exit codes: 0 every file clean, 1 any file unsafe, 2 any file could not be scanned (error) — error wins
over unsafe only when nothing was unsafe, so a script can tell "bad" from "unknown". Each file is scanned in
a worker process (timeout, memory cap), so a hostile file cannot take the CLI down with it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from proxy.models import ScanReport, ScanVerdict, Severity
from proxy.scan.limits import ScanLimits
from proxy.scan.pool import scan_in_subprocess
from proxy.scan.scanner import failure_report

_SEVERITY_STYLE = {
    Severity.CRITICAL: "bold red",
    Severity.HIGH: "red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}
_VERDICT_STYLE = {ScanVerdict.CLEAN: "green", ScanVerdict.UNSAFE: "bold red", ScanVerdict.ERROR: "bold yellow"}


def _files(paths: list[Path]) -> Iterator[tuple[Path, str | None]]:
    """Regular files under each path (directories recursed, sorted); (path, problem) for unreadable ones."""
    for root in paths:
        if root.is_dir():
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames.sort()
                for name in sorted(filenames):
                    p = Path(dirpath) / name
                    if p.is_symlink():
                        yield p, "symlink not followed"
                    elif p.is_file():
                        yield p, None
        elif root.is_file():
            yield root, None
        else:
            yield root, "no such file or directory" if not root.exists() else "not a regular file"


def report_json(report: ScanReport) -> dict[str, object]:
    """The `--json` object for one file (see DESIGN.md: path, sha256, format, verdict, findings, ...)."""
    data = report.model_dump(mode="json")
    return {
        "path": data["path"],
        "sha256": data["sha256"],
        "size": data["size"],
        "format": data["format"],
        "formats": data["formats"],
        "families": data["families"],
        "verdict": data["verdict"],
        "findings": [
            {k: f[k] for k in ("engine", "severity", "rule", "message", "location")} for f in data["findings"]
        ],
        "engines": data["engines"],
        "duration": data["duration_s"],
    }


def exit_code(reports: list[ScanReport]) -> int:
    verdicts = {r.verdict for r in reports}
    if ScanVerdict.UNSAFE in verdicts:
        return 1
    if ScanVerdict.ERROR in verdicts:
        return 2
    return 0


def _print_human(report: ScanReport) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False)
    style = _VERDICT_STYLE[report.verdict]
    console.print(
        f"[{style}]{report.verdict.value.upper():7}[/] {escape(report.path)}  "
        f"[dim]{report.format.value}, {report.size} bytes, sha256 {report.sha256[:12]}, {report.duration_s:.2f}s[/]"
    )
    shown = [f for f in report.findings if f.severity is not Severity.INFO]
    for f in sorted(shown, key=lambda f: -f.severity.rank):
        sev = _SEVERITY_STYLE[f.severity]
        where = f" [dim]({escape(f.location)})[/]" if f.location and f.location != report.path else ""
        console.print(
            f"   [{sev}]{f.severity.value:8}[/] [bold]{escape(f.rule)}[/] "
            f"[dim]{escape(f.engine)}[/]: {escape(f.message)}{where}"
        )


def scan_command(
    paths: list[Path],
    *,
    as_json: bool,
    timeout: float = 600.0,
    memory_mb: int = 4096,
    limits: ScanLimits | None = None,
) -> int:
    """Scan files/directories; print human output or a JSON list (one object per file); return the exit code."""
    reports: list[ScanReport] = []
    for path, problem in _files(paths):
        if problem is not None:
            report = failure_report(path, display_name=str(path), rule="scan.unreadable", message=f"{path}: {problem}")
        else:
            report = scan_in_subprocess(
                path, display_name=str(path), timeout=timeout, memory_mb=memory_mb, limits=limits
            )
        reports.append(report)
        if not as_json:
            _print_human(report)
    if as_json:
        json.dump([report_json(r) for r in reports], sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif not reports:
        print("hubgate scan: no files found", file=sys.stderr)
    return exit_code(reports) if reports else 2
