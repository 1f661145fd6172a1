"""Model card front matter: the YAML block between `---` lines at the top of a repo's README.md.

The README is untrusted upstream text, so parsing is bounded (only the first `MAX_FRONT_MATTER_BYTES`
are considered), uses `yaml.safe_load` semantics with aliases refused (no "billion laughs" expansion when
the result is later walked or serialised), and converts the result to plain JSON values (YAML dates become
ISO strings) so it can be stored and hashed. A malformed block is reported, never raised.
"""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

MAX_FRONT_MATTER_BYTES = 256 * 1024
_MAX_DEPTH = 32

# Same shape as huggingface_hub's REGEX_YAML_BLOCK: `---` on its own line, the block, `---` on its own line.
_BLOCK = re.compile(r"\A\s*---[ \t]*\r?\n(?P<body>.*?)(?:\r?\n)?^---[ \t]*(?:\r?\n|\Z)", re.DOTALL | re.MULTILINE)
_OPENING = re.compile(r"\A\s*---[ \t]*\r?\n")


class CardStatus(StrEnum):
    OK = "ok"
    ABSENT = "absent"  # no front matter at all (a README without metadata)
    MALFORMED = "malformed"  # a block is there but is not a YAML mapping we can read
    TOO_LARGE = "too-large"  # no closing `---` within the bound


class CardFrontMatter(BaseModel):
    """The outcome of reading a README's front matter; `data` is None unless status is ok."""

    model_config = ConfigDict(frozen=True)

    status: CardStatus
    data: dict[str, Any] | None = None
    error: str = ""


class _NoAliasLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML has no stubs installed
    """SafeLoader that refuses anchors/aliases: real cards never need them, bombs always do."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "YAML aliases are not allowed", event.start_mark)
        return super().compose_node(parent, index)


def _jsonable(value: Any, depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        raise ValueError(f"front matter nested deeper than {_MAX_DEPTH} levels")
    if isinstance(value, dict):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v, depth + 1) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def parse_card(readme_text: str) -> CardFrontMatter:
    """Read the front matter of a README; never raises."""
    text = readme_text.lstrip("\ufeff")
    if not _OPENING.match(text):
        return CardFrontMatter(status=CardStatus.ABSENT)
    head = text[:MAX_FRONT_MATTER_BYTES]
    match = _BLOCK.match(head)
    if match is None:
        if len(text) > MAX_FRONT_MATTER_BYTES:
            return CardFrontMatter(
                status=CardStatus.TOO_LARGE,
                error=f"no closing '---' within the first {MAX_FRONT_MATTER_BYTES} characters",
            )
        return CardFrontMatter(status=CardStatus.MALFORMED, error="front matter has no closing '---' line")
    try:
        loaded = yaml.load(match.group("body"), Loader=_NoAliasLoader)  # a SafeLoader subclass
        data = _jsonable(loaded)
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return CardFrontMatter(status=CardStatus.MALFORMED, error=f"invalid YAML front matter: {first_line}")
    if data is None:
        return CardFrontMatter(status=CardStatus.OK, data={})  # `---\n---`: an empty but valid block
    if not isinstance(data, dict):
        return CardFrontMatter(
            status=CardStatus.MALFORMED, error=f"front matter is a {type(data).__name__}, not a mapping"
        )
    return CardFrontMatter(status=CardStatus.OK, data=data)


def front_matter(readme_text: str) -> dict[str, Any] | None:
    """The front matter as a dict, or None when absent or malformed (use `parse_card` to tell which)."""
    return parse_card(readme_text).data
