"""A static report on a torch.hub repo archive, for the admin who decides whether to approve it.

`torch.hub.load` extracts the zipball, moves its first entry (the top folder) to `<hub>/{o}_{r}_{ref}` and
imports `hubconf.py` from it: everything in the archive is code that will run. This module never executes or
imports it; it reads the zip, checks that its shape is what torch expects (entries outside the top folder,
absolute paths, `..`, symlinks) and runs the shared Python source analysis
(`proxy.scan.source.analyse_source`) over every `.py` file: imports of os/subprocess/socket, exec/eval,
network calls. The report informs; the hold comes from policy.
"""

from __future__ import annotations

import ast
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from pydantic import Field

from proxy.models import Finding, Frozen, Severity

ENGINE = "hubrepo"
MAX_PY_BYTES = 2 * 1024 * 1024  # one source file; more is a finding, not a read
MAX_TOTAL_PY_BYTES = 64 * 1024 * 1024
MAX_ENTRIES = 20_000

Analyse = Callable[[str, str], list[Finding]]


class HubRepoReport(Frozen):
    top_folder: str
    entries: int
    python_files: list[str] = Field(default_factory=list)  # relative to the top folder
    has_hubconf: bool = False
    dependencies: list[str] = Field(default_factory=list)  # hubconf.py's `dependencies = [...]`
    entrypoints: list[str] = Field(default_factory=list)  # public callables defined in hubconf.py
    findings: list[Finding] = Field(default_factory=list)

    @property
    def max_severity(self) -> Severity | None:
        return max((f.severity for f in self.findings), key=lambda s: s.rank) if self.findings else None


def _default_analyse() -> Analyse:
    from proxy.scan.source import analyse_source  # the shared Python analysis (same rules as the scanner)

    return analyse_source


def _finding(severity: Severity, rule: str, message: str, location: str = "") -> Finding:
    return Finding(engine=ENGINE, severity=severity, rule=rule, message=message, location=location)


def report_archive(path: Path, *, analyse: Analyse | None = None) -> HubRepoReport:
    """Report on a zipball at `path`; an unreadable zip yields a report with a critical finding."""
    analyse = analyse or _default_analyse()
    try:
        with zipfile.ZipFile(path) as zf:
            return _report_zip(zf, analyse)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        return HubRepoReport(
            top_folder="",
            entries=0,
            findings=[_finding(Severity.CRITICAL, "hubrepo.unreadable", f"archive cannot be read as a zip: {exc}")],
        )


def _report_zip(zf: zipfile.ZipFile, analyse: Analyse) -> HubRepoReport:
    infos = zf.infolist()
    findings: list[Finding] = []
    if not infos:
        findings.append(_finding(Severity.CRITICAL, "hubrepo.empty", "archive is empty"))
        return HubRepoReport(top_folder="", entries=0, findings=findings)
    if len(infos) > MAX_ENTRIES:
        findings.append(_finding(Severity.HIGH, "hubrepo.too-many-entries", f"{len(infos)} entries"))
    top = infos[0].filename
    if not infos[0].is_dir() or top.count("/") != 1:
        findings.append(
            _finding(
                Severity.HIGH,
                "hubrepo.layout",
                f"first entry {top!r} is not a top-level folder as torch expects",
            )
        )
    python: list[str] = []
    total = 0
    hubconf_text: str | None = None
    for info in infos[:MAX_ENTRIES]:
        name = info.filename
        parts = PurePosixPath(name).parts
        if name.startswith("/") or "\\" in name or ".." in parts or (parts and parts[0].endswith(":")):
            findings.append(_finding(Severity.CRITICAL, "hubrepo.path-traversal", f"unsafe entry path {name!r}", name))
            continue
        if not name.startswith(top):
            findings.append(
                _finding(Severity.HIGH, "hubrepo.outside-top", f"entry {name!r} is outside the top folder {top!r}")
            )
            continue
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            findings.append(_finding(Severity.HIGH, "hubrepo.symlink", f"symlink entry {name!r}", name))
            continue
        rel = name[len(top) :]
        if info.is_dir() or not rel.endswith(".py"):
            continue
        python.append(rel)
        if info.file_size > MAX_PY_BYTES or total + info.file_size > MAX_TOTAL_PY_BYTES:
            findings.append(
                _finding(Severity.MEDIUM, "hubrepo.not-analysed", f"{rel} is too large to analyse statically", rel)
            )
            continue
        total += info.file_size
        text = zf.read(info)[: MAX_PY_BYTES + 1].decode("utf-8", errors="replace")
        if rel == "hubconf.py":
            hubconf_text = text
        findings.extend(analyse(text, rel))
    dependencies: list[str] = []
    entrypoints: list[str] = []
    if hubconf_text is None:
        findings.append(_finding(Severity.MEDIUM, "hubrepo.no-hubconf", "no hubconf.py in the top folder"))
    else:
        dependencies, entrypoints = _hubconf_surface(hubconf_text, findings)
    return HubRepoReport(
        top_folder=top,
        entries=len(infos),
        python_files=python,
        has_hubconf=hubconf_text is not None,
        dependencies=dependencies,
        entrypoints=entrypoints,
        findings=findings,
    )


def _hubconf_surface(text: str, findings: list[Finding]) -> tuple[list[str], list[str]]:
    """`dependencies` and the public top-level callables, read from the syntax tree (never imported)."""
    try:
        tree = ast.parse(text, filename="hubconf.py")
    except SyntaxError as exc:
        findings.append(_finding(Severity.MEDIUM, "hubrepo.syntax", f"hubconf.py does not parse: {exc.msg}"))
        return [], []
    dependencies: list[str] = []
    entrypoints: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "dependencies" for t in node.targets
        ):
            if isinstance(node.value, ast.List | ast.Tuple):
                dependencies = [
                    e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)
                ]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("_"):
            entrypoints.append(node.name)
    return dependencies, entrypoints


def summary(report: HubRepoReport) -> str:
    """One line for logs and refusals: counts by severity and the worst rules."""
    if not report.findings:
        return f"{len(report.python_files)} Python files, no findings"
    worst = sorted(report.findings, key=lambda f: -f.severity.rank)[:3]
    rules = ", ".join(f"{f.rule} ({f.location or '-'})" for f in worst)
    return f"{len(report.python_files)} Python files, {len(report.findings)} findings; worst: {rules}"
