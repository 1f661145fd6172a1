"""Mutable bookkeeping for one `scan_path` call: findings, formats seen, budgets, temp space.

Everything a format scanner needs to record goes through `ScanState`, so limits are charged once per scan
(not per archive level) and "could not finish" is one flag the verdict reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from proxy.models import FileFormat, Finding, Severity
from proxy.scan.limits import ScanLimits

ENGINE = "hubgate"


@dataclass
class ScanState:
    limits: ScanLimits
    tmpdir: Path
    run_engines: bool = True
    findings: list[Finding] = field(default_factory=list)
    formats: list[FileFormat] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)  # why our engine could not finish
    engines: dict[str, str] = field(default_factory=dict)
    inflated: int = 0  # bytes decompressed/extracted so far, all levels
    members: int = 0  # archive members seen so far, all levels
    _tmp_counter: int = 0

    def add(self, severity: Severity, rule: str, message: str, location: str = "", engine: str = ENGINE) -> None:
        self.findings.append(Finding(engine=engine, severity=severity, rule=rule, message=message, location=location))

    def give_up(self, rule: str, message: str, location: str = "") -> None:
        """Our engine could not finish: a finding plus the incomplete flag (verdict `error`)."""
        self.add(Severity.MEDIUM, rule, message, location)
        self.incomplete.append(f"{rule}: {message}")

    def saw(self, fmt: FileFormat) -> None:
        if fmt not in self.formats:
            self.formats.append(fmt)

    def tmpfile(self, suffix: str = "") -> Path:
        self._tmp_counter += 1
        return self.tmpdir / f"m{self._tmp_counter}{suffix}"
