"""Static analysis of Python source that a loader will `exec` (FX GraphModule code carried in pickles).

Not a sandbox and not a general linter: it names the constructs that turn "generated tensor code" into
"arbitrary code" (imports of OS/process/network modules, exec/eval/compile/__import__/getattr/open, dunder
attribute walks) so the walker can rate them. Source that does not parse is itself a finding.
"""

from __future__ import annotations

import ast

from proxy.models import Severity
from proxy.scan.allowlist import CODE_EXEC_CALLS, CODE_EXEC_MODULES

# Modules FX-generated code legitimately imports.
_FX_IMPORTS = frozenset({"torch", "math", "operator", "typing", "builtins", "numpy", "collections", "inf", "nan"})
_BAD_MODULES = CODE_EXEC_MODULES
# A pickle may name specific loaders by module (see allowlist); exec'd FX code has no business calling any `load`.
_BAD_CALLS = CODE_EXEC_CALLS | {"load"}


def _top(module: str | None) -> str:
    return (module or "").split(".")[0]


def analyse_exec_source(source: str, max_bytes: int) -> list[tuple[Severity, str]]:
    """Findings (severity, message) for source that will be exec'd; empty when nothing dangerous is seen."""
    if len(source.encode("utf-8", "surrogatepass")) > max_bytes:
        return [(Severity.HIGH, f"source larger than {max_bytes} bytes; not analysed")]
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return [(Severity.HIGH, f"source does not parse ({type(exc).__name__}); cannot be analysed")]
    issues: list[tuple[Severity, str]] = []
    seen: set[str] = set()

    def add(sev: Severity, msg: str) -> None:
        if msg not in seen:
            seen.add(msg)
            issues.append((sev, msg))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _top(alias.name) in _BAD_MODULES:
                    add(Severity.CRITICAL, f"imports {alias.name}")
                elif _top(alias.name) not in _FX_IMPORTS:
                    add(Severity.HIGH, f"imports unexpected module {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            names = [a.name for a in node.names]
            if _top(mod) in _BAD_MODULES and not (mod == "builtins" and not set(names) & _BAD_CALLS):
                add(Severity.CRITICAL, f"imports from {mod}: {', '.join(names)}")
            elif set(names) & _BAD_CALLS:
                add(Severity.CRITICAL, f"imports {', '.join(sorted(set(names) & _BAD_CALLS))} from {mod}")
            elif _top(mod) not in _FX_IMPORTS:
                add(Severity.HIGH, f"imports from unexpected module {mod}")
        elif isinstance(node, ast.Name) and node.id in _BAD_CALLS | _BAD_MODULES:
            add(Severity.CRITICAL, f"uses {node.id}")
        elif isinstance(node, ast.Attribute):
            if node.attr.startswith("__") and node.attr.endswith("__"):
                add(Severity.CRITICAL, f"accesses dunder attribute {node.attr}")
            elif node.attr in _BAD_CALLS:
                add(Severity.CRITICAL, f"calls .{node.attr}")
        elif isinstance(node, (ast.Global, ast.Nonlocal, ast.ClassDef, ast.Lambda, ast.AsyncFunctionDef)):
            add(Severity.HIGH, f"unexpected construct {type(node).__name__} in generated code")
    return issues
