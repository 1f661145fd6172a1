"""Chat templates (Jinja2) checked for sandbox escapes without ever rendering them.

Chat templates ship inside GGUF metadata and `tokenizer_config.json` and are rendered by the loader
(transformers: `ImmutableSandboxedEnvironment`; llama-cpp-python before 0.2.72: a plain `Environment`, the
SSTI of CVE-2024-34359). We parse with jinja2's own parser and walk the AST; nothing is compiled or run.

Severities:
- critical: an attribute path that reaches Python internals (`x.__class__`, `x['__globals__']`,
  `x|attr('__init__')`, `cycler.__init__.__globals__`, frame/generator internals), however the name is spelt
  (literal, `'__cla' ~ 'ss__'`, `'%c' % 95`, a `{% set %}` variable, `|reverse`, `|join`).
- high: a dunder name as a string literal or built at run time outside an attribute position, a private
  (`_x`) attribute, `|attr` with a name we cannot resolve, references to os/subprocess/eval/exec/import.
- medium: the template does not parse (a loader rejects it, but we cannot vouch for it), it is too large,
  it loads other templates, uses globals no chat template needs (`lipsum`, `cycler`, `joiner`, `self`), or
  holds a string with `__` that may be assembled into a dunder elsewhere.
Ordinary templates (loops, `namespace`, `raise_exception`, `message['role']`, `trim`, `tojson`) give nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes as jn
import jinja2.sandbox

from proxy.models import Finding, Severity
from proxy.scan.limits import ScanLimits

ENGINE = "hubgate"
MAX_TEMPLATE_CHARS = 1024 * 1024  # the largest real chat templates are ~20 KB
MAX_FINDINGS = 50
_FOLD_DEPTH = 64  # constant folding recursion; deeper expressions are treated as unknown
_MAX_FOLDED = 10_000  # characters a folded string may reach (bounds `'_' * n` style tricks)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_DUNDER_RE = re.compile(r"__\w+__")
# Attributes outside the dunder namespace that still lead to code objects, frames and globals.
_INTERNAL_ATTRS = _words(
    "mro func_globals func_code func_closure im_func im_self im_class gi_frame gi_code gi_yieldfrom "
    "cr_frame cr_code cr_await ag_frame ag_code f_globals f_locals f_builtins f_back f_code tb_frame "
    "tb_next"
)
# Names whose only use in a template is running commands or importing code.
_DANGEROUS_NAMES = _words(
    "os sys subprocess popen system eval exec execfile compile import_module importlib builtins "
    "check_output check_call getoutput spawn spawnv execv execve fork load_module modules globals "
    "locals getattr setattr open file"
)
# Jinja globals that chat templates never need; the first four are the classic gadget roots.
_GADGET_GLOBALS = frozenset({"cycler", "joiner", "lipsum", "namespace", "range", "dict", "self"})
_SUSPICIOUS_GLOBALS = frozenset({"cycler", "joiner", "lipsum", "self", "url_for", "get_flashed_messages"})
# Filters whose `attribute=` keyword (or first argument) names an attribute to read.
_ATTRIBUTE_FILTERS = frozenset(
    {"attr", "map", "selectattr", "rejectattr", "sort", "groupby", "sum", "unique", "min", "max", "join"}
)


class _GenerationTag(jinja2.ext.Extension):
    """Parse transformers' `{% generation %}...{% endgeneration %}` so such templates are not 'broken'."""

    tags = {"generation"}

    def parse(self, parser: Any) -> jn.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jn.Scope(body).set_lineno(lineno)


def _environment() -> jinja2.Environment:
    # The same shape transformers renders with; parsing never executes the template.
    return jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[jinja2.ext.loopcontrols, _GenerationTag],
    )


def scan(path: Path, limits: ScanLimits) -> list[Finding]:
    """Findings for a standalone template file (`chat_template.jinja`, `additional_chat_templates/*.jinja`)."""
    del limits  # templates have their own, smaller cap
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_TEMPLATE_CHARS * 4 + 1)
    except OSError as exc:
        return [_finding(Severity.MEDIUM, "template.unreadable", f"cannot read file: {exc.strerror}", path.name)]
    if len(raw) > MAX_TEMPLATE_CHARS * 4:
        return [_finding(Severity.MEDIUM, "template.too-large", "template file too large to analyse", path.name)]
    return check_template(raw.decode("utf-8", errors="replace"), path.name)


def check_template(source: str, where: str) -> list[Finding]:
    """Findings for one chat template; `where` names it in locations (e.g. `gguf:tokenizer.chat_template`)."""
    if len(source) > MAX_TEMPLATE_CHARS:
        return [
            _finding(
                Severity.MEDIUM,
                "template.too-large",
                f"chat template is {len(source)} characters (limit {MAX_TEMPLATE_CHARS}); not analysed",
                where,
            )
        ]
    try:
        tree = _environment().parse(source)
    except jinja2.TemplateSyntaxError as exc:
        return [
            _finding(
                Severity.MEDIUM,
                "template.syntax",
                f"chat template does not parse: {exc.message}",
                _loc(where, exc.lineno),
            )
        ]
    except Exception as exc:  # RecursionError, MemoryError...: the parser's failure modes on hostile input
        return [
            _finding(
                Severity.MEDIUM,
                "template.syntax",
                f"chat template does not parse: {type(exc).__name__}",
                where,
            )
        ]
    return _Walker(where).run(tree)


def _finding(severity: Severity, rule: str, message: str, location: str) -> Finding:
    return Finding(engine=ENGINE, severity=severity, rule=rule, message=message, location=location)


def _loc(where: str, lineno: int | None) -> str:
    if not lineno:
        return where
    return f"{where} line {lineno}" if where else f"line {lineno}"


class _Walker:
    """One pass over the AST in document order, folding constants through `{% set %}` variables."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.findings: dict[tuple[str, str, str], Finding] = {}
        self.env: dict[str, str | int] = {}  # `{% set x = 'const' %}` and `{% set ns.x = ... %}`
        self.stored: set[str] = set()  # names the template assigns (loop vars, set targets, macro args)

    def run(self, tree: jn.Template) -> list[Finding]:
        for name in tree.find_all((jn.Name,)):
            if name.ctx in ("store", "param"):
                self.stored.add(name.name)
        for macro in tree.find_all((jn.Macro,)):
            self.stored.add(macro.name)
        stack: list[jn.Node] = [tree]
        while stack:
            node = stack.pop()
            self._visit(node)
            # reversed so the stack pops children in document order (assignments before their uses)
            stack.extend(reversed(list(node.iter_child_nodes())))
        found = list(self.findings.values())
        if len(found) > MAX_FINDINGS:
            found = found[:MAX_FINDINGS]
            found.append(_finding(Severity.HIGH, "template.many-findings", "more findings were left out", self.where))
        return found

    def _add(self, severity: Severity, rule: str, message: str, node: jn.Node) -> None:
        location = _loc(self.where, getattr(node, "lineno", None))
        self.findings.setdefault((rule, message, location), _finding(severity, rule, message, location))

    def _visit(self, node: jn.Node) -> None:
        if isinstance(node, jn.Assign):
            self._record_assign(node.target, self._fold(node.node))
        elif isinstance(node, jn.AssignBlock):
            self._record_assign(node.target, self._fold_body(node.body))
        elif isinstance(node, jn.Getattr):
            self._check_attribute(node.attr, node, node.node, spelt="literal")
        elif isinstance(node, jn.Getitem):
            name = self._fold(node.arg)
            if isinstance(name, str):
                self._check_attribute(name, node, node.node, spelt="subscript")
        elif isinstance(node, jn.Filter):
            self._check_filter(node)
        elif isinstance(node, jn.Name):
            self._check_name(node)
        elif isinstance(node, jn.Const):
            self._check_string(node)
        elif isinstance(node, (jn.Concat, jn.Add, jn.Mul, jn.Mod)):
            self._check_built_string(node)
        elif isinstance(node, (jn.Import, jn.FromImport, jn.Include, jn.Extends)):
            self._add(
                Severity.MEDIUM,
                "template.include",
                f"chat template loads another template ({type(node).__name__.lower()})",
                node,
            )

    # -- checks -----------------------------------------------------------------------------------

    def _check_attribute(self, attr: str, node: jn.Node, owner: jn.Node | None, *, spelt: str) -> None:
        if _DUNDER_RE.fullmatch(attr) or attr in _INTERNAL_ATTRS:
            if isinstance(owner, jn.Name) and owner.name in _GADGET_GLOBALS and owner.name not in self.stored:
                self._add(
                    Severity.CRITICAL,
                    "template.global-escape",
                    f"{owner.name}.{attr}: a Jinja global used to reach Python internals "
                    "(the llama-cpp-python SSTI, CVE-2024-34359)",
                    node,
                )
            else:
                self._add(
                    Severity.CRITICAL,
                    "template.dunder-access",
                    f"attribute access to {attr!r} ({spelt}) reaches Python internals: sandbox escape",
                    node,
                )
        elif attr.startswith("_"):
            self._add(
                Severity.HIGH,
                "template.private-access",
                f"access to private attribute {attr!r} ({spelt}); chat templates never need it",
                node,
            )
        elif attr in _DANGEROUS_NAMES:
            self._add(
                Severity.HIGH,
                "template.dangerous-name",
                f"attribute {attr!r} ({spelt}) only serves command execution or imports",
                node,
            )

    def _check_filter(self, node: jn.Filter) -> None:
        if node.name not in _ATTRIBUTE_FILTERS:
            return
        candidates: list[jn.Node] = [kw.value for kw in node.kwargs if kw.key == "attribute"]
        if node.name == "attr":
            candidates.extend(node.args[:1])
        elif node.name == "map" and len(node.args) >= 2 and self._fold(node.args[0]) == "attr":
            candidates.append(node.args[1])  # x|map('attr', '__class__')
        for arg in candidates:
            name = self._fold(arg)
            if isinstance(name, str):
                self._check_attribute(name, node, node.node, spelt=f"|{node.name}")
            elif node.name == "attr":
                self._add(
                    Severity.HIGH,
                    "template.dynamic-attr",
                    "|attr() with a name computed at render time; cannot prove it is harmless",
                    node,
                )

    def _check_name(self, node: jn.Name) -> None:
        if node.ctx != "load" or node.name in self.stored:
            return
        if _DUNDER_RE.fullmatch(node.name):
            self._add(
                Severity.CRITICAL,
                "template.dunder-access",
                f"reference to {node.name!r} reaches Python internals",
                node,
            )
        elif node.name in _DANGEROUS_NAMES:
            self._add(
                Severity.HIGH,
                "template.dangerous-name",
                f"reference to {node.name!r}: only serves command execution or imports",
                node,
            )
        elif node.name in _SUSPICIOUS_GLOBALS:
            self._add(
                Severity.MEDIUM,
                "template.suspicious-global",
                f"uses the Jinja global {node.name!r}, a known sandbox-escape gadget no chat template needs",
                node,
            )

    def _check_string(self, node: jn.Const) -> None:
        if not isinstance(node.value, str):
            return
        match = _DUNDER_RE.search(node.value)
        if match:
            self._add(
                Severity.HIGH,
                "template.dunder-string",
                f"string literal contains {match.group(0)!r}: a dunder name a template has no use for",
                node,
            )
        elif "__" in node.value:
            self._add(
                Severity.MEDIUM,
                "template.suspicious-string",
                "string literal contains '__', a fragment that can be assembled into a dunder name",
                node,
            )

    def _check_built_string(self, node: jn.Node) -> None:
        value = self._fold(node)
        if not isinstance(value, str):
            return
        match = _DUNDER_RE.search(value)
        if match and not any(
            isinstance(c, jn.Const) and isinstance(c.value, str) and match.group(0) in c.value
            for c in node.find_all((jn.Const,))
        ):
            self._add(
                Severity.HIGH,
                "template.dunder-built",
                f"string assembled at render time spells {match.group(0)!r}",
                node,
            )

    # -- constant folding -------------------------------------------------------------------------

    def _record_assign(self, target: jn.Node, value: str | int | None) -> None:
        key = _target_key(target)
        if key is None:
            return
        if value is None:
            self.env.pop(key, None)
        else:
            self.env[key] = value

    def _fold_body(self, body: list[jn.Node]) -> str | None:
        parts: list[str] = []
        for stmt in body:
            if not isinstance(stmt, jn.Output):
                return None
            for item in stmt.nodes:
                value = item.data if isinstance(item, jn.TemplateData) else self._fold(item)
                if value is None:
                    return None
                parts.append(str(value))
        return "".join(parts)

    def _fold(self, node: jn.Node, depth: int = 0) -> str | int | None:
        """The constant value of an expression, when it is one (str or int), else None."""
        if depth > _FOLD_DEPTH:
            return None
        value = self._fold_inner(node, depth + 1)
        if isinstance(value, str) and len(value) > _MAX_FOLDED:
            return None
        if isinstance(value, bool) or (isinstance(value, int) and abs(value) > _MAX_FOLDED):
            return None
        return value

    def _fold_inner(self, node: jn.Node, depth: int) -> str | int | None:
        fold = self._fold
        if isinstance(node, jn.Const):
            return node.value if isinstance(node.value, (str, int)) else None
        if isinstance(node, jn.TemplateData):
            return node.data
        if isinstance(node, (jn.Name, jn.Getattr)):
            key = _target_key(node)
            return self.env.get(key) if key else None
        if isinstance(node, jn.Neg):
            value = fold(node.node, depth)
            return -value if isinstance(value, int) else None
        if isinstance(node, jn.Concat):
            parts = [fold(n, depth) for n in node.nodes]
            return None if any(p is None for p in parts) else "".join(str(p) for p in parts)
        if isinstance(node, jn.Mod) and isinstance(node.right, jn.Tuple):
            fmt, items = fold(node.left, depth), [fold(n, depth) for n in node.right.items]
            if not isinstance(fmt, str) or any(i is None for i in items):
                return None
            return _percent_format(fmt, tuple(items))
        if isinstance(node, (jn.Add, jn.Mul, jn.Mod)):
            left, right = fold(node.left, depth), fold(node.right, depth)
            if left is None or right is None:
                return None
            return _binary(node, left, right)
        if isinstance(node, jn.Filter):
            return self._fold_filter(node, depth)
        if isinstance(node, jn.Getitem):
            return self._fold_getitem(node, depth)
        return None

    def _fold_filter(self, node: jn.Filter, depth: int) -> str | int | None:
        if node.node is None:
            return None
        if node.name == "join" and isinstance(node.node, (jn.List, jn.Tuple)):
            items = [self._fold(n, depth) for n in node.node.items]
            sep = self._fold(node.args[0], depth) if node.args else ""
            if sep is None or any(i is None for i in items):
                return None
            return str(sep).join(str(i) for i in items)
        base = self._fold(node.node, depth)
        if not isinstance(base, str):
            return None
        args = [self._fold(a, depth) for a in node.args]
        if any(a is None for a in args):
            return None
        if node.name == "reverse":
            return base[::-1]
        simple: dict[str, Callable[[str], str]] = {
            "lower": str.lower,
            "upper": str.upper,
            "trim": str.strip,
            "string": str,
            "title": str.title,
        }
        if node.name in simple:
            return simple[node.name](base)
        if node.name == "replace" and len(args) == 2:
            return base.replace(str(args[0]), str(args[1]))
        if node.name == "format":
            return _percent_format(base, tuple(args))
        return None

    def _fold_getitem(self, node: jn.Getitem, depth: int) -> str | int | None:
        base = self._fold(node.node, depth)
        if not isinstance(base, str):
            return None
        if isinstance(node.arg, jn.Slice):
            bounds = (node.arg.start, node.arg.stop, node.arg.step)
            parts = [None if b is None else self._fold(b, depth) for b in bounds]
            if any(b is not None and not isinstance(p, int) for b, p in zip(bounds, parts, strict=True)):
                return None  # a bound we cannot fold: the result is unknown
            start, stop, step = (p if isinstance(p, int) else None for p in parts)
            return None if step == 0 else base[start:stop:step]
        index = self._fold(node.arg, depth)
        if isinstance(index, int) and -len(base) <= index < len(base):
            return base[index]
        return None


def _target_key(node: jn.Node) -> str | None:
    if isinstance(node, jn.Name):
        return node.name
    if isinstance(node, jn.NSRef):
        return f"{node.name}.{node.attr}"
    if isinstance(node, jn.Getattr) and isinstance(node.node, jn.Name):
        return f"{node.node.name}.{node.attr}"
    return None


def _binary(node: jn.Node, left: str | int, right: str | int) -> str | int | None:
    if isinstance(node, jn.Add):
        if isinstance(left, str) and isinstance(right, str):
            return left + right
        if isinstance(left, int) and isinstance(right, int):
            return left + right
        return None
    if isinstance(node, jn.Mul):
        if isinstance(left, str) and isinstance(right, int) and 0 <= right * len(left) <= _MAX_FOLDED:
            return left * right
        if isinstance(left, int) and isinstance(right, str) and 0 <= left * len(right) <= _MAX_FOLDED:
            return right * left
        if isinstance(left, int) and isinstance(right, int):
            return left * right
        return None
    if isinstance(left, str):
        return _percent_format(left, (right,))
    return None


def _percent_format(fmt: str, args: tuple[Any, ...]) -> str | None:
    # Refuse widths/precisions that would allocate (e.g. '%999999999d') or come from arguments ('%*d').
    if "*" in fmt or re.search(r"%[^a-zA-Z%]*\d{4,}", fmt):
        return None
    try:
        return fmt % args
    except (TypeError, ValueError, OverflowError):
        return None
