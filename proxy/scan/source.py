"""Python source files: always custom code, and rated higher when they reach the OS, the network or exec.

A `.py` file in a model repo runs with `trust_remote_code=True` (transformers) or `torch.hub.load` (hubconf),
so every one is a finding (`code.python`, medium: policy quarantines custom code). Static analysis with `ast`
(nothing is imported or run) raises the rating for what ordinary modeling code never does:

- high `code.dangerous-import`: process, socket, network, FFI modules (subprocess, socket, ctypes, requests...)
- high `code.dangerous-call`: os.system/popen/exec*/spawn*, subprocess.*, socket.*, urllib.request.*,
  requests.*, ctypes.*, pickle/dill/marshal loads, shutil.rmtree, runpy, webbrowser
- high `code.dynamic-exec`: exec/eval/compile (also `builtins.exec`, `getattr(builtins, 'exec')`), and
  `__import__`/`importlib.import_module` of a name computed at run time (a constant name is an import)
- high `code.introspection`: `__subclasses__`, `__globals__`, `__builtins__`, `__code__` walks
- critical `code.obfuscated-exec`: exec/eval/compile of decoded data (base64, zlib, marshal, hex, codecs)
- medium `code.syntax` / `code.too-large`: the source cannot be analysed

Names are resolved through import aliases (`import subprocess as sp`, `from os import system as s`),
`__import__('os').system`, `importlib.import_module('os')` and `getattr(mod, 'name')`. Strings passed to
exec/eval are analysed as source themselves (one level deep).
"""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

from proxy.models import Finding, Severity
from proxy.scan.limits import ScanLimits

ENGINE = "hubgate"
MAX_FINDINGS = 50


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_MAX_ATTR_DEPTH = 50
_MAX_EXEC_NESTING = 2

DANGEROUS_MODULES = _words(
    "subprocess socket ctypes pty requests httpx aiohttp urllib.request urllib3 http.client ftplib smtplib "
    "telnetlib paramiko pycurl webbrowser _posixsubprocess"
)
# Calling anything in these modules is a dangerous call (runpy/shelve import harmlessly, call dangerously).
_DANGEROUS_PREFIXES = tuple(f"{m}." for m in DANGEROUS_MODULES | {"runpy", "shelve"})
_DANGEROUS_CALLS = _words(
    "os.system os.popen os.fork os.forkpty os.kill os.killpg os.startfile os.posix_spawn os.posix_spawnp "
    "posix.system nt.system shutil.rmtree pickle.loads pickle.load cPickle.loads _pickle.loads dill.loads "
    "dill.load cloudpickle.loads marshal.loads marshal.load shelve.open"
)
_DANGEROUS_CALL_PREFIXES = ("os.exec", "os.spawn", "posix.exec", "posix.spawn")
EXEC_FUNCTIONS = frozenset({"exec", "eval", "compile", "execfile"})
_DECODERS = _words(
    "b64decode b32decode b16decode a85decode b85decode decodebytes decodestring urlsafe_b64decode "
    "decompress unhexlify a2b_base64 a2b_hex fromhex loads decode rot13 reverse join"
)
_INTROSPECTION = frozenset(
    {"__subclasses__", "__globals__", "__builtins__", "__code__", "__closure__", "__getattribute__"}
)


def scan(path: Path, limits: ScanLimits) -> list[Finding]:
    """Findings for the Python file at `path` (read up to `limits.max_source_bytes`)."""
    where = path.name
    try:
        with open(path, "rb") as fh:
            data = fh.read(limits.max_source_bytes + 1)
    except OSError as exc:
        return [_baseline(where), _f(Severity.MEDIUM, "unreadable", f"cannot read file: {exc.strerror}", where)]
    if len(data) > limits.max_source_bytes:
        return [
            _baseline(where),
            _f(
                Severity.MEDIUM,
                "too-large",
                f"source is larger than {limits.max_source_bytes} bytes; not analysed",
                where,
            ),
        ]
    return analyse_source(_decode(data), where)


def analyse_source(text: str, where: str) -> list[Finding]:
    """`code.python` plus the static findings for one Python source text (pure)."""
    return [_baseline(where), *_analyse(text, where, nesting=0)]


def _baseline(where: str) -> Finding:
    return _f(
        Severity.MEDIUM,
        "python",
        "custom code: executed by trust_remote_code/torch.hub",
        where,
    )


def _decode(data: bytes) -> str:
    # PEP 263: honour a coding cookie / BOM like the interpreter does; fall back to lossy UTF-8.
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        return data.decode(encoding)
    except (SyntaxError, LookupError, UnicodeDecodeError):
        return data.decode("utf-8", errors="replace")


def _analyse(text: str, where: str, nesting: int) -> list[Finding]:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        if isinstance(exc, SyntaxError):
            detail = f"line {exc.lineno}: {exc.msg}" if exc.lineno else exc.msg
        else:
            detail = type(exc).__name__
        return [_f(Severity.MEDIUM, "syntax", f"source does not parse ({detail}); not analysed", where)]
    analyser = _Analyser(where, nesting)
    analyser.run(tree)
    findings = list(analyser.findings.values())
    if len(findings) > MAX_FINDINGS:
        findings = [*findings[:MAX_FINDINGS], _f(Severity.HIGH, "many-findings", "more findings left out", where)]
    return findings


class _Analyser:
    def __init__(self, where: str, nesting: int) -> None:
        self.where = where
        self.nesting = nesting
        self.aliases: dict[str, str] = {}  # local name -> qualified name
        self.findings: dict[tuple[str, str], Finding] = {}

    def run(self, tree: ast.AST) -> None:
        nodes = list(ast.walk(tree))
        for node in nodes:  # aliases first: flow-insensitive, an import anywhere counts everywhere
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                self._imports(node)
        for node in nodes:
            if isinstance(node, ast.Call):
                self._call(node)
            elif isinstance(node, ast.Attribute) and node.attr in _INTROSPECTION:
                self._add(node, Severity.HIGH, "introspection", f"reaches interpreter internals via {node.attr}")
            elif isinstance(node, ast.Name) and node.id == "__builtins__":
                self._add(node, Severity.HIGH, "introspection", "reaches interpreter internals via __builtins__")

    def _add(self, node: ast.AST, severity: Severity, rule: str, message: str) -> None:
        location = f"{self.where}:{getattr(node, 'lineno', 0)}"
        self.findings.setdefault((rule, location + message), _f(severity, rule, message, location))

    def _imports(self, node: ast.Import | ast.ImportFrom) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:  # `import a.b as c` binds c to a.b
                    self.aliases[alias.asname] = alias.name
                else:  # `import a.b` binds a to a
                    top = alias.name.split(".")[0]
                    self.aliases[top] = top
                self._check_module(node, alias.name)
            return
        module = node.module or ""
        if node.level:  # relative import: repo-local code, already custom code
            return
        self._check_module(node, module)
        for alias in node.names:
            qualified = f"{module}.{alias.name}"
            self.aliases[alias.asname or alias.name] = qualified
            self._check_module(node, qualified)
            if _is_dangerous_call(qualified) or (
                alias.name in {*EXEC_FUNCTIONS, "__import__"} and module == "builtins"
            ):
                self._add(node, Severity.HIGH, "dangerous-import", f"imports {qualified}")

    def _check_module(self, node: ast.AST, module: str) -> None:
        if module in DANGEROUS_MODULES or any(module.startswith(f"{m}.") for m in DANGEROUS_MODULES):
            self._add(node, Severity.HIGH, "dangerous-import", f"imports {module}")

    def _call(self, node: ast.Call) -> None:
        name = self._qualname(node.func)
        if name is None:
            return
        short = name.removeprefix("builtins.").removeprefix("__builtins__.")
        if short in ("__import__", "importlib.import_module"):
            self._dynamic_import(node, short)
        elif short in EXEC_FUNCTIONS:
            self._exec_call(node, short)
        elif _is_dangerous_call(name):
            self._add(node, Severity.HIGH, "dangerous-call", f"calls {name}")

    def _dynamic_import(self, node: ast.Call, name: str) -> None:
        first = node.args[0] if node.args else None
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            self._check_module(node, first.value)  # `__import__('logging')` is just `import logging`
        else:
            self._add(node, Severity.HIGH, "dynamic-exec", f"{name}() imports a module chosen at run time")

    def _exec_call(self, node: ast.Call, name: str) -> None:
        decoded = [
            inner
            for arg in [*node.args, *(k.value for k in node.keywords)]
            for inner in ast.walk(arg)
            if isinstance(inner, ast.Call) and self._decoder_name(inner.func)
        ]
        if decoded:
            what = self._decoder_name(decoded[0].func)
            self._add(node, Severity.CRITICAL, "obfuscated-exec", f"{name}() runs decoded data ({what})")
            return
        self._add(node, Severity.HIGH, "dynamic-exec", f"calls {name}()")
        if name in ("exec", "eval", "compile") and node.args and self.nesting < _MAX_EXEC_NESTING:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                for inner in _analyse(first.value, f"{self.where}:{node.lineno}:{name}", self.nesting + 1):
                    self.findings.setdefault((inner.rule, inner.location + inner.message), inner)

    def _decoder_name(self, func: ast.AST) -> str | None:
        name = self._qualname(func)
        if name and name.rsplit(".", 1)[-1] in _DECODERS:
            return name
        if isinstance(func, ast.Attribute) and func.attr in _DECODERS:
            return f".{func.attr}()"
        return None

    def _qualname(self, node: ast.AST, depth: int = 0) -> str | None:
        """Dotted name of an expression through aliases, `__import__('m')` and `getattr(x, 'a')`."""
        if depth > _MAX_ATTR_DEPTH:
            return None
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self._qualname(node.value, depth + 1)
            return f"{base}.{node.attr}" if base else None
        if isinstance(node, ast.Call) and node.args:
            func = self._qualname(node.func, depth + 1)
            first = node.args[0]
            if func in ("__import__", "builtins.__import__", "importlib.import_module"):
                return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None
            if func in ("getattr", "builtins.getattr") and len(node.args) >= 2:
                attr = node.args[1]
                base = self._qualname(first, depth + 1)
                if base and isinstance(attr, ast.Constant) and isinstance(attr.value, str):
                    return f"{base}.{attr.value}"
        return None


def _is_dangerous_call(name: str) -> bool:
    return name in _DANGEROUS_CALLS or name.startswith(_DANGEROUS_PREFIXES + _DANGEROUS_CALL_PREFIXES)


def _f(severity: Severity, rule: str, message: str, location: str = "") -> Finding:
    return Finding(engine=ENGINE, severity=severity, rule=f"code.{rule}", message=message, location=location)
