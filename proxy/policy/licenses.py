"""License ids: normalise what the Hub says into one comparable form, and validate policy patterns.

A normalised id is lower case. Where SPDX knows the license (through the maintained `license-expression`
library, never a hand-written alias table) the SPDX key is used, so `Apache-2.0`, `apache-2.0` and
`LicenseRef-Apache-2.0` all become `apache-2.0`, and the Hub's `gpl-3.0` becomes `gpl-3.0-only`.
Hub-specific ids that SPDX lacks (`llama3`, `gemma`, `openrail++`, ...) are kept as the Hub spells them.
`other` with a `license_name` becomes `other:<name>`, so a policy can allow one custom license by name.

Compound SPDX expressions (`mit OR apache-2.0`) are split into their licenses and each one is checked:
the conservative reading, since hubgate cannot know which alternative the user will rely on.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any

from license_expression import ExpressionError, Licensing, get_spdx_licensing

from proxy.models import REPO_ID_RE, RepoMeta

OTHER = "other"
UNKNOWN = "unknown"  # the Hub's explicit "no idea": treated like a missing license

# License ids the Hub accepts in `license:` that have no SPDX equivalent (from the Hub's documented list
# at huggingface.co/docs/hub/repositories-licenses). SPDX normalisation handles everything else.
HF_LICENSE_IDS: frozenset[str] = frozenset(
    {
        "apple-amlr",
        "apple-ascl",
        "bigcode-openrail-m",
        "bigscience-bloom-rail-1.0",
        "bigscience-openrail-m",
        "bsd",
        "c-uda",
        "cc",
        "creativeml-openrail-m",
        "deepfloyd-if-license",
        "fair-noncommercial-research-license",
        "gemma",
        "gfdl",
        "grok2-community",
        "h-research",
        "intel-research",
        "lgpl",
        "lgpl-lr",
        "llama2",
        "llama3",
        "llama3.1",
        "llama3.2",
        "llama3.3",
        "llama4",
        "odbl",
        "odc-by",
        "openmdw-1.0",
        "openrail",
        "openrail++",
        "pddl",
        OTHER,
        UNKNOWN,
    }
)

_GLOB_CHARS = re.compile(r"[*?\[]")
_PATTERN_CHARS = re.compile(r"^[a-z0-9.+:_\-*?\[\]!]+$")
_MAX_ID_LEN = 200


@lru_cache(maxsize=1)
def _licensing() -> Licensing:
    return get_spdx_licensing()


@lru_cache(maxsize=1)
def known_ids() -> frozenset[str]:
    """Every id a policy may name literally: SPDX keys (lower case) and the Hub-specific ids."""
    spdx = {key.lower() for key, sym in _licensing().known_symbols.items() if not sym.is_exception}
    return frozenset(spdx | HF_LICENSE_IDS)


def _slug(text: str) -> str:
    """`license_name` values are free text; keep them readable but matchable."""
    return re.sub(r"\s+", "-", text.strip().lower())[:_MAX_ID_LEN]


@lru_cache(maxsize=4096)
def normalize_license(raw: str) -> tuple[str, ...]:
    """One `license:` value → normalised ids (several for a compound expression, none for blank)."""
    text = raw.strip()
    low = text.lower()
    if not low:
        return ()
    if low in HF_LICENSE_IDS:
        return (low,)
    if low.startswith(f"{OTHER}:"):
        name = _slug(low[len(OTHER) + 1 :])
        return (f"{OTHER}:{name}",) if name else (OTHER,)
    licensing = _licensing()
    try:
        expression = licensing.parse(text, validate=True)
    except ExpressionError:
        # Not SPDX and not a Hub id: keep the text so the policy can still name it (or treat it as unknown).
        return (low[:_MAX_ID_LEN],)
    if expression is None:
        return ()
    ids = [str(sym).lower() for sym in licensing.license_symbols(expression, decompose=False)]
    return tuple(dict.fromkeys(ids))


def _as_strings(value: Any) -> list[str]:
    """Card values are untrusted YAML: a string, a list, or anything else (stringified, fail closed)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [v if isinstance(v, str) else str(v) for v in value if v is not None]
    return [str(value)]


def licenses_of(repo: RepoMeta) -> list[str]:
    """Normalised license ids from the card (`license`, `license_name`) and `license:` tags, in order."""
    card = repo.card_data or {}
    name = card.get("license_name")
    name_slug = _slug(name) if isinstance(name, str) else ""
    ids: list[str] = []
    for raw in _as_strings(card.get("license")):
        for lid in normalize_license(raw):
            ids.append(f"{OTHER}:{name_slug}" if lid == OTHER and name_slug else lid)
    for tag in repo.tags:
        if isinstance(tag, str) and tag.lower().startswith("license:"):
            for lid in normalize_license(tag[len("license:") :]):
                # The Hub derives this tag from the card; `other` here is the same `other` as above.
                ids.append(f"{OTHER}:{name_slug}" if lid == OTHER and name_slug else lid)
    return list(dict.fromkeys(ids))


def license_link(repo: RepoMeta) -> str:
    """The card's `license_link`, if any (shown to admins beside an `other:` license)."""
    link = (repo.card_data or {}).get("license_link")
    return link if isinstance(link, str) else ""


def base_models_of(repo: RepoMeta) -> list[str]:
    """Repo ids named by the card's `base_model` (str or list); local paths and junk are dropped."""
    card = repo.card_data or {}
    out: list[str] = []
    value = card.get("base_model")
    # Only strings name repos; a card that hides its base could as well omit it, so nothing is gained
    # by guessing at numbers or mappings.
    for raw in [value] if isinstance(value, str) else value if isinstance(value, list) else []:
        if not isinstance(raw, str):
            continue
        candidate = raw.strip()
        if REPO_ID_RE.match(candidate) and candidate.lower() != repo.repo_id.lower():
            out.append(candidate)
    return list(dict.fromkeys(out))


def is_glob(pattern: str) -> bool:
    return bool(_GLOB_CHARS.search(pattern))


def license_matches(license_id: str, patterns: Iterable[str]) -> str | None:
    """The first pattern (already normalised) that matches `license_id`, or None."""
    for pattern in patterns:
        if fnmatchcase(license_id, pattern):
            return pattern
    return None


def validate_license_pattern(raw: str) -> str:
    """A policy's allow/deny entry → its normalised form; ValueError with a hint when it names nothing."""
    low = raw.strip().lower()
    if not low:
        raise ValueError("empty license id")
    if not _PATTERN_CHARS.match(low):
        raise ValueError(f"{raw!r} is not a license id or glob (letters, digits, '.-+:' and '*?[]' only)")
    if low.startswith(f"{OTHER}:") or low.startswith("licenseref-"):
        return low  # custom licenses are named by the repo, not by a registry
    known = known_ids()
    if is_glob(low):
        if not any(fnmatchcase(k, low) for k in known):
            raise ValueError(f"{raw!r} is a glob that matches no known license id")
        return low
    ids = normalize_license(low)
    if len(ids) == 1 and (ids[0] in known):
        return ids[0]
    if len(ids) > 1:
        raise ValueError(f"{raw!r} is an expression; list each license separately")
    hint = difflib.get_close_matches(low, sorted(known), n=3, cutoff=0.75)
    suggestion = f" (did you mean {', '.join(repr(h) for h in hint)}?)" if hint else ""
    raise ValueError(f"{raw!r} is not a known license id or glob{suggestion}")
