"""The Xet bridge (pure): remove every trace of Xet so hf_xet-enabled clients download through hubgate.

protocol/hf.md §5: headers alone are not enough; a `xetHash` in a tree listing makes hf_hub_download skip the
HEAD and talk to the Xet CAS directly, which would bypass vetting.
"""

from __future__ import annotations

from typing import Any

XET_LINK_RELS = ("xet-auth", "xet-reconstruction-info")


def strip_xet_json(value: Any) -> Any:
    """A copy of an API answer with every `xetHash` key removed, at any depth."""
    if isinstance(value, dict):
        return {k: strip_xet_json(v) for k, v in value.items() if k != "xetHash"}
    if isinstance(value, list):
        return [strip_xet_json(v) for v in value]
    return value


def split_link_header(value: str) -> list[tuple[str, str]]:
    """`<url>; rel="next", <url2>; rel="xet-auth"` → [(url, rel), ...]."""
    entries = []
    for part in value.split(","):
        part = part.strip()
        if not part.startswith("<") or ">" not in part:
            continue
        url, _, params = part[1:].partition(">")
        rel = ""
        for param in params.split(";"):
            key, _, val = param.strip().partition("=")
            if key.strip().lower() == "rel":
                rel = val.strip().strip('"')
        entries.append((url, rel))
    return entries
