"""Reading a policy file: TOML → `Policy`, with errors that name the file, the line and the field.

`tomllib` reports syntax errors with a line; pydantic reports validation errors with a field path but no
line. `_locate` walks the (already valid) TOML text once and records the line of every key, table header
and array element, so `license.deny[2]` can be pointed at the exact line it was written on.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from proxy.policy.model import Policy, PolicyError

DEFAULT_POLICY_RESOURCE = "default_policy.toml"
MAX_POLICY_BYTES = 1024 * 1024

Loc = tuple[str | int, ...]


def load_policy(path: Path) -> Policy:
    """Read and validate a policy file; PolicyError (never OSError) when it cannot be used."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PolicyError(f"{path}: no such policy file") from None
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read policy file: {exc.strerror or exc}") from exc
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyError(f"{path}: policy file is larger than {MAX_POLICY_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path}: policy file is not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    return parse_policy(text, source=str(path))


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Validate policy TOML text. All problems are reported at once, one per line of the message."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(_syntax_message(str(exc), source, text)) from exc
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        lines = _locate(text)
        located = sorted((_format_error(err, lines, source) for err in exc.errors()), key=lambda lm: lm[0])
        messages = [message for _, message in located]
        raise PolicyError("\n".join(messages), errors=messages) from None


@lru_cache(maxsize=1)
def default_policy_text() -> str:
    return resources.files("proxy.policy").joinpath(DEFAULT_POLICY_RESOURCE).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def default_policy() -> Policy:
    """The shipped policy (package data, identical to the repo's config/policy.toml)."""
    return parse_policy(default_policy_text(), source=f"proxy/policy/{DEFAULT_POLICY_RESOURCE}")


_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


def _syntax_message(message: str, source: str, text: str) -> str:
    if message.endswith("(at end of document)"):
        line = text.count("\n") + (0 if text.endswith("\n") else 1)
        what = message.removesuffix(" (at end of document)")
        return f"{source}:{max(line, 1)}: TOML syntax error: {what} (at end of file)"
    match = _TOML_POSITION.search(message)
    if match is None:
        return f"{source}: TOML syntax error: {message}"
    row, column = match.groups()
    return f"{source}:{row}: TOML syntax error: {message[: match.start()]} (column {column})"


def _field_path(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _allowed_keys(loc: Loc) -> list[str]:
    """The field names valid at `loc`'s parent, for 'did you mean' hints on unknown keys."""
    from proxy.policy.model import (
        CardRules,
        FormatRules,
        LicenseRules,
        PublisherRules,
        ScanRules,
        Scope,
    )

    sections = {
        "license": LicenseRules,
        "card": CardRules,
        "publisher": PublisherRules,
        "format": FormatRules,
        "scan": ScanRules,
    }
    parent = [p for p in loc[:-1] if isinstance(p, str)]
    model: Any
    if not parent:
        model = Policy
    elif parent == ["scope"]:
        model = Scope
    else:
        model = sections.get(parent[-1])
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


def _format_error(err: Any, lines: dict[Loc, int], source: str) -> tuple[int, str]:
    loc: Loc = tuple(err["loc"])
    kind = err["type"]
    given = err.get("input")
    if kind == "value_error":
        message = str(err["ctx"]["error"])
    elif kind == "extra_forbidden":
        allowed = _allowed_keys(loc)
        name = str(loc[-1]) if loc else "?"
        close = difflib.get_close_matches(name, allowed, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        message = f"unknown field {name!r} ({hint}expected one of: {', '.join(allowed)})"
    elif kind in ("enum", "literal_error"):
        expected = err.get("ctx", {}).get("expected", "")
        message = f"{given!r} is not valid; expected {expected}"
    elif kind == "missing":
        message = "required field is missing"
    else:
        message = f"{err['msg']} (got {given!r})" if given is not None else err["msg"]
    line = None
    for end in range(len(loc), -1, -1):
        line = lines.get(loc[:end])
        if line is not None:
            break
    field = _field_path(loc) or "(top level)"
    where = f"{source}:{line}" if line else source
    return line or 0, f"{where}: {field}: {message}"


# --- locating keys in TOML text -------------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_\-]+")


class _Locator:
    """A lenient TOML walker (the text already parsed) recording the line of each path."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.lines: dict[Loc, int] = {}
        self.aot_count: dict[tuple[str, ...], int] = {}

    def line(self) -> int:
        return self.text.count("\n", 0, self.pos) + 1

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos : self.pos + n]

    def skip_space(self, newlines: bool) -> None:
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch in " \t\r" or (newlines and ch == "\n"):
                self.pos += 1
            elif ch == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            else:
                return

    def read_key(self) -> list[str]:
        parts: list[str] = []
        while True:
            self.skip_space(newlines=False)
            ch = self.peek()
            if ch in ('"', "'"):
                parts.append(self.read_string())
            else:
                match = _BARE_KEY.match(self.text, self.pos)
                if match is None:
                    return parts
                parts.append(match.group())
                self.pos = match.end()
            self.skip_space(newlines=False)
            if self.peek() == ".":
                self.pos += 1
                continue
            return parts

    def read_string(self) -> str:
        quote = self.peek()
        if self.peek(3) == quote * 3:
            end = self.text.find(quote * 3, self.pos + 3)
            end = len(self.text) if end < 0 else end + 3
            while self.text[end : end + 1] == quote:  # up to two quotes may close a multi-line string
                end += 1
            value = self.text[self.pos + 3 : end - 3]
            self.pos = end
            return value
        start = self.pos + 1
        i = start
        while i < len(self.text) and self.text[i] != quote and self.text[i] != "\n":
            i += 2 if quote == '"' and self.text[i] == "\\" else 1
        self.pos = min(i + 1, len(self.text))
        return self.text[start:i]

    def resolve(self, parts: list[str]) -> Loc:
        """A table header's dotted parts → a loc, inserting the current index of arrays of tables."""
        loc: list[str | int] = []
        for i, part in enumerate(parts):
            loc.append(part)
            key = tuple(parts[: i + 1])
            if key in self.aot_count and i < len(parts) - 1:
                loc.append(self.aot_count[key] - 1)
        return tuple(loc)

    def read_value(self, loc: Loc) -> None:
        self.skip_space(newlines=False)
        ch = self.peek()
        if ch in ('"', "'"):
            self.read_string()
        elif ch == "[":
            self.pos += 1
            index = 0
            while self.pos < len(self.text):
                self.skip_space(newlines=True)
                if self.peek() == "]":
                    self.pos += 1
                    return
                self.lines[(*loc, index)] = self.line()
                self.read_value((*loc, index))
                index += 1
                self.skip_space(newlines=True)
                if self.peek() == ",":
                    self.pos += 1
        elif ch == "{":
            self.pos += 1
            while self.pos < len(self.text):
                self.skip_space(newlines=False)
                if self.peek() == "}":
                    self.pos += 1
                    return
                if self.peek() == ",":
                    self.pos += 1
                    continue
                self.read_pair(loc)
        else:
            match = re.compile(r"[^,\]\}\n#]*").match(self.text, self.pos)
            self.pos = match.end() if match else self.pos + 1

    def read_pair(self, table: Loc) -> None:
        line = self.line()
        parts = self.read_key()
        if not parts:
            self.pos += 1  # cannot happen on valid TOML; never loop forever
            return
        loc = (*table, *parts)
        self.lines.setdefault(loc, line)
        self.skip_space(newlines=False)
        if self.peek() == "=":
            self.pos += 1
        self.read_value(loc)

    def walk(self) -> dict[Loc, int]:
        table: Loc = ()
        while True:
            self.skip_space(newlines=True)
            if self.pos >= len(self.text):
                return self.lines
            start, line = self.pos, self.line()
            if self.peek(2) == "[[":
                self.pos += 2
                parts = self.read_key()
                key = tuple(parts)
                self.aot_count[key] = self.aot_count.get(key, 0) + 1
                table = (*self.resolve(parts), self.aot_count[key] - 1)
                self.lines.setdefault(table[:-1], line)
                self.pos = self._after(self.text.find("]]", self.pos), 2)
            elif self.peek() == "[":
                self.pos += 1
                table = self.resolve(self.read_key())
                self.pos = self._after(self.text.find("]", self.pos), 1)
            else:
                self.read_pair(table)
            if self.pos <= start:  # no progress: only on text tomllib would have refused
                return self.lines
            if self.text[start] == "[":
                self.lines[table] = line

    def _after(self, found: int, width: int) -> int:
        return len(self.text) if found < 0 else found + width


def _locate(text: str) -> dict[Loc, int]:
    try:
        return _Locator(text).walk()
    except (IndexError, ValueError):  # a locator bug must not hide the real error
        return {}
