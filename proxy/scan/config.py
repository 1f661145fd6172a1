"""JSON configs (`config.json`, `tokenizer_config.json`, `model_index.json`, any JSON): custom-code hooks.

transformers runs repository code when a config names it and the user passes `trust_remote_code=True`:
`auto_map` maps Auto classes to `module.Class` in the repo (`configuration_x.XConfig`) or in another repo
(`org/repo--module.Class`); `custom_pipelines` does the same for pipelines. A cross-repo reference pulls code
from a repository nobody vetted with this one, so it is rated higher. A `chat_template` (string, or a list
of `{name, template}`) is rendered with Jinja and goes through `templates.check_template`.

Severities: medium `config.auto-map` (custom code: auto_map, custom_pipelines, trust_remote_code: true);
high `config.auto-map-remote` (code from another repo); medium `config.too-large` / `config.limit` (not
fully checked) and `config.template-type` (a chat_template of the wrong shape);
low `config.invalid-json` (no loader can read it either). Chat template findings keep their `template.*`
rules. The JSON is walked iteratively, so deep nesting costs no recursion.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from proxy.models import Finding, Severity
from proxy.scan.limits import ScanLimits
from proxy.scan.templates import check_template

ENGINE = "hubgate"
MAX_FINDINGS = 50
MAX_NODES = 5_000_000  # JSON values walked per file
_CUSTOM_CODE_KEYS = ("auto_map", "custom_pipelines")
_INTERESTING_KEYS = frozenset({*_CUSTOM_CODE_KEYS, "trust_remote_code"})
_REMOTE_REF_RE = re.compile(r"^(?P<repo>[^\s]+?)--(?P<ref>[^\s]+)$")


def scan(path: Path, limits: ScanLimits) -> list[Finding]:
    """Findings for the JSON file at `path` (read whole, within `limits.max_json_bytes`)."""
    try:
        size = os.path.getsize(path)
        if size > limits.max_json_bytes:
            return [
                _f(
                    Severity.MEDIUM,
                    "too-large",
                    f"JSON file is {size} bytes (limit {limits.max_json_bytes}); custom-code hooks not checked",
                )
            ]
        data = path.read_bytes()
    except OSError as exc:
        return [_f(Severity.MEDIUM, "unreadable", f"cannot read file: {exc.strerror or exc}")]
    return check_config_bytes(data, path.name)


def check_config_bytes(data: bytes, filename: str = "config.json") -> list[Finding]:
    """Findings for one JSON document (pure); `filename` only names locations."""
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return [_f(Severity.LOW, "invalid-json", f"{filename} is not valid JSON: {_short(str(exc))}", filename)]
    return check_config(document, filename)


def check_config(document: Any, filename: str = "config.json") -> list[Finding]:
    """Findings for a parsed JSON document (pure)."""
    findings: list[Finding] = []
    members, complete = _walk(document)
    if not complete:
        findings.append(_f(Severity.MEDIUM, "limit", f"more than {MAX_NODES} JSON values; not fully checked", filename))
    for path, key, value in members:
        where = f"{filename}:{path}{key}"
        if key in _CUSTOM_CODE_KEYS:
            findings.extend(_custom_code(key, value, where))
        elif key == "trust_remote_code" and value is True:
            findings.append(
                _f(
                    Severity.MEDIUM,
                    "auto-map",
                    "config asks for trust_remote_code: the repository's Python code would run",
                    where,
                )
            )
    if isinstance(document, dict) and "chat_template" in document:
        findings.extend(_chat_templates(document["chat_template"], filename))
    if len(findings) > MAX_FINDINGS:
        findings = [*findings[:MAX_FINDINGS], _f(Severity.HIGH, "many-findings", "more findings left out")]
    return findings


def code_references(value: Any) -> list[str]:
    """Every `module.Class` string under an auto_map / custom_pipelines value (lists, dicts, nested)."""
    refs: list[str] = []
    stack = [value]
    while stack and len(refs) < 1000:
        item = stack.pop()
        if isinstance(item, str):
            refs.append(item)
        elif isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
    return refs


def remote_repo(reference: str) -> str | None:
    """The repo id of a cross-repo reference (`org/repo--module.Class`), else None."""
    match = _REMOTE_REF_RE.match(reference)
    return match.group("repo") if match else None


def _custom_code(key: str, value: Any, where: str) -> list[Finding]:
    refs = code_references(value)
    findings = []
    remote = sorted({repo for repo in map(remote_repo, refs) if repo})
    for repo in remote[:10]:
        findings.append(
            _f(
                Severity.HIGH,
                "auto-map-remote",
                f"{key} loads code from another repository ({repo}); it was not vetted with this one",
                where,
            )
        )
    local = [r for r in refs if not remote_repo(r)]
    if local or not refs:
        shown = ", ".join(local[:5]) + (" ..." if len(local) > 5 else "")
        findings.append(
            _f(
                Severity.MEDIUM,
                "auto-map",
                f"{key} names custom code executed with trust_remote_code ({shown or 'no class names'})",
                where,
            )
        )
    return findings


def _chat_templates(value: Any, filename: str) -> list[Finding]:
    where = f"{filename}:chat_template"
    if isinstance(value, str):
        return check_template(value, where)
    if isinstance(value, list):
        findings: list[Finding] = []
        for index, item in enumerate(value):
            if isinstance(item, dict) and isinstance(item.get("template"), str):
                name = item.get("name", index)
                findings.extend(check_template(item["template"], f"{where}[{name}]"))
            else:
                findings.append(
                    _f(Severity.MEDIUM, "template-type", "chat_template entry is not {name, template}", where)
                )
        return findings
    if value is None:
        return []
    return [_f(Severity.MEDIUM, "template-type", "chat_template is neither a string nor a list", where)]


def _walk(document: Any) -> tuple[list[tuple[str, str, Any]], bool]:
    """(parent path, key, value) for object members that matter, walked iteratively; and completeness."""
    members: list[tuple[str, str, Any]] = []
    stack: list[tuple[str, Any]] = [("", document)]
    visited = 0
    while stack:
        visited += 1
        if visited > MAX_NODES:
            return members, False
        path, node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in _INTERESTING_KEYS:
                    members.append((path, str(key), value))
                if isinstance(value, (dict, list)):
                    stack.append((f"{path}{key}.", value))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                # lists of scalars (merges, ids: most of a tokenizer.json) cannot hold a key: not pushed
                if isinstance(value, dict) or (isinstance(value, list) and _holds_containers(value)):
                    stack.append((f"{path}{index}.", value))
    return members, True


def _holds_containers(items: list[Any]) -> bool:
    return any(isinstance(item, (dict, list)) for item in items)


def _short(text: str) -> str:
    return text if len(text) <= 100 else text[:97] + "..."


def _f(severity: Severity, rule: str, message: str, location: str = "") -> Finding:
    return Finding(engine=ENGINE, severity=severity, rule=f"config.{rule}", message=message, location=location)
