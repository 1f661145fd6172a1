"""The policy as a typed value: what `config/policy.toml` may say, validated, normalised and hashed.

Every section's defaults are the shipped defaults (issue 2), so an empty file is the default policy and
`config/policy.toml` spells them out with comments. Unknown keys are errors (`extra="forbid"`). Scopes
(`[[scope]]`) override sections field by field for repos that match: a scope's section is parsed with the
same model, and only the fields it actually sets (`model_fields_set`) replace the base ones.
"""

from __future__ import annotations

import hashlib
import json
import re
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, field_validator

from proxy.errors import HubgateError
from proxy.models import Action, FormatFamily, Severity
from proxy.policy.licenses import validate_license_pattern


class PolicyError(HubgateError):
    """A policy file that cannot be used; the message names the file, the line and the field."""

    def __init__(self, message: str, *, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or [message]


class Mode(StrEnum):
    ENFORCE = "enforce"  # refuse what is not approved
    AUDIT = "audit"  # decide and record everything, but serve (clients get a warning header)


_REPO_PATTERN = re.compile(r"^[A-Za-z0-9._\-*?\[\]!]+(/[A-Za-z0-9._\-*?\[\]!]+)?$")


def _check_repo_pattern(raw: str) -> str:
    pattern = raw.strip()
    if not _REPO_PATTERN.match(pattern):
        raise ValueError(f"{raw!r} is not an 'org', 'org/name' or glob pattern (e.g. 'my-org/*')")
    return pattern


def _check_field_name(raw: str) -> str:
    name = raw.strip()
    if not name:
        raise ValueError("empty front-matter field name")
    return name


LicensePattern = Annotated[str, AfterValidator(validate_license_pattern)]
RepoPattern = Annotated[str, AfterValidator(_check_repo_pattern)]
FieldName = Annotated[str, AfterValidator(_check_field_name)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _at_least_quarantine(value: Action, what: str) -> Action:
    if value is Action.ALLOW:
        raise ValueError(f"cannot be 'allow': {what} (fail closed; use 'quarantine' or 'block')")
    return value


class LicenseRules(Section):
    """Which licenses may be served. Patterns are SPDX or Hub ids, or globs; deny wins over allow."""

    allow: tuple[LicensePattern, ...] = (
        "apache-2.0",
        "mit",
        "bsd",
        "bsd-*",
        "0bsd",
        "isc",
        "unlicense",
        "cc0-1.0",
        "cc-by-2.0",
        "cc-by-2.5",
        "cc-by-3.0",
        "cc-by-4.0",
        "mpl-2.0",
        "zlib",
        "bsl-1.0",
        "postgresql",
        "ncsa",
        "afl-3.0",
        "ecl-2.0",
        "ms-pl",
        "wtfpl",
        "pddl",
        "odc-by",
        "cdla-permissive-1.0",
        "cdla-permissive-2.0",
        "openmdw-1.0",
    )
    deny: tuple[LicensePattern, ...] = (
        "cc-by-nc-*",
        "fair-noncommercial-research-license",
        "deepfloyd-if-license",
        "h-research",
        "intel-research",
        "apple-amlr",
    )
    deny_action: Action = Action.BLOCK
    unknown: Action = Action.QUARANTINE  # a license in neither list (copyleft, openrail, llama, other:...)
    missing: Action = Action.QUARANTINE  # no license anywhere (or the Hub's `unknown`)
    lineage: StrictBool = True  # check the licenses of the card's `base_model`(s) with the same rules

    @field_validator("deny_action")
    @classmethod
    def _deny_is_strict(cls, value: Action) -> Action:
        return _at_least_quarantine(value, "a denied license must not be served")


class CardRules(Section):
    """Whether a model card (README front matter) must exist and which fields it must carry."""

    required: StrictBool = False  # a missing card still means a missing license, hence quarantine by default
    required_fields: tuple[FieldName, ...] = ()
    missing_action: Action = Action.QUARANTINE

    @field_validator("missing_action")
    @classmethod
    def _strict(cls, value: Action) -> Action:
        return _at_least_quarantine(value, "a required card or field that is missing is not a pass")


class PublisherRules(Section):
    """Who may publish what we serve: globs on `org` or `org/name`. A non-empty allow means only these."""

    allow: tuple[RepoPattern, ...] = ()
    deny: tuple[RepoPattern, ...] = ()
    deny_action: Action = Action.BLOCK
    unlisted_action: Action = Action.BLOCK  # when `allow` is non-empty and the repo matches none of it

    @field_validator("deny_action", "unlisted_action")
    @classmethod
    def _strict(cls, value: Action) -> Action:
        return _at_least_quarantine(value, "a denied or unlisted publisher must not be served")


# Families that carry weights; `format.weights` sets them all at once ("safetensors-only" in two lines).
WEIGHT_FAMILIES: frozenset[FormatFamily] = frozenset(
    {
        FormatFamily.PICKLE,
        FormatFamily.TORCHSCRIPT,
        FormatFamily.SAFETENSORS,
        FormatFamily.GGUF,
        FormatFamily.ONNX,
        FormatFamily.KERAS,
        FormatFamily.TENSORFLOW,
        FormatFamily.NUMPY,
    }
)

# What a family gets when neither its own line nor `weights` says otherwise.
BUILTIN_FORMAT_ACTIONS: dict[FormatFamily, Action] = {
    FormatFamily.PICKLE: Action.ALLOW,  # the scan rules decide: a clean pickle passes, a payload does not
    FormatFamily.TORCHSCRIPT: Action.BLOCK,  # runs serialized code on load; no scanner can vouch for it
    FormatFamily.SAFETENSORS: Action.ALLOW,
    FormatFamily.GGUF: Action.ALLOW,
    FormatFamily.ONNX: Action.ALLOW,
    FormatFamily.KERAS: Action.ALLOW,  # Lambda layers are scan findings
    FormatFamily.TENSORFLOW: Action.ALLOW,  # file-system / PyFunc ops are scan findings
    FormatFamily.NUMPY: Action.ALLOW,  # object arrays are pickles, scanned as such
    FormatFamily.ARCHIVE: Action.ALLOW,  # members are scanned recursively; their families are listed too
    FormatFamily.CUSTOM_CODE: Action.QUARANTINE,  # trust_remote_code / .py: a human reads it first
    FormatFamily.CONFIG: Action.ALLOW,
    FormatFamily.TEXT: Action.ALLOW,
    FormatFamily.UNKNOWN: Action.QUARANTINE,  # nothing could read it, so nothing vouches for it
}


class FormatRules(Section):
    """Action per format family (as the scanner identified it by content). Unset fields fall back."""

    weights: Action | None = None
    pickle: Action | None = None
    torchscript: Action | None = None
    safetensors: Action | None = None
    gguf: Action | None = None
    onnx: Action | None = None
    keras: Action | None = None
    tensorflow: Action | None = None
    numpy: Action | None = None
    archive: Action | None = None
    custom_code: Action | None = Field(default=None, alias="custom-code")
    config: Action | None = None
    text: Action | None = None
    unknown: Action | None = None

    @field_validator("unknown")
    @classmethod
    def _unknown_strict(cls, value: Action | None) -> Action | None:
        if value is not None:
            _at_least_quarantine(value, "a format nothing could identify proves nothing")
        return value

    def action_for(self, family: FormatFamily) -> Action:
        explicit: Action | None = getattr(self, _attr(family))
        if explicit is not None:
            return explicit
        if family in WEIGHT_FAMILIES and self.weights is not None:
            return self.weights
        return BUILTIN_FORMAT_ACTIONS[family]

    def resolved(self) -> dict[FormatFamily, Action]:
        """The action of every family: what this section means, however it was written."""
        return {family: self.action_for(family) for family in FormatFamily}

    def overridden_by(self, scope: FormatRules) -> FormatRules:
        """This section with a scope's lines applied. A scope's `weights` covers every weight family the
        scope does not name itself, whatever the base said, so the result depends only on `resolved()`."""
        actions = self.resolved()
        named = {f for f in FormatFamily if _attr(f) in scope.model_fields_set}
        for family in FormatFamily:
            if family in named:
                actions[family] = scope.action_for(family)
            elif family in WEIGHT_FAMILIES and "weights" in scope.model_fields_set and scope.weights:
                actions[family] = scope.weights
        return FormatRules.model_validate({f.value: a for f, a in actions.items()})


def _attr(family: FormatFamily) -> str:
    return family.value.replace("-", "_")


class ScanRules(Section):
    """Action per finding severity, for scanner errors/timeouts, and for engines that disagree."""

    critical: Action = Action.BLOCK
    high: Action = Action.BLOCK
    medium: Action = Action.QUARANTINE
    low: Action = Action.ALLOW
    info: Action = Action.ALLOW
    error: Action = Action.QUARANTINE  # an engine crashed, timed out or could not read the file
    disagreement: Action = Action.QUARANTINE  # findings with rule `engines.disagree`

    @field_validator("error")
    @classmethod
    def _error_strict(cls, value: Action) -> Action:
        return _at_least_quarantine(value, "a scan that did not finish proves nothing")

    def action_for(self, severity: Severity) -> Action:
        action: Action = getattr(self, severity.value)
        return action


class Scope(Section):
    """Overrides for repos matching `match`; each section given here replaces only the fields it sets."""

    match: tuple[RepoPattern, ...] = Field(min_length=1)
    note: str = ""
    mode: Mode | None = None
    license: LicenseRules | None = None
    card: CardRules | None = None
    publisher: PublisherRules | None = None
    format: FormatRules | None = None
    scan: ScanRules | None = None

    def canonical(self) -> dict[str, Any]:
        """Only what changes decisions: the patterns, the mode, and the fields each section sets
        (an unset field inherits the base, so it differs from one set to the base's value)."""
        data: dict[str, Any] = {"match": list(self.match)}
        if self.mode is not None:
            data["mode"] = self.mode.value
        for name in ("license", "card", "publisher", "format", "scan"):
            section = getattr(self, name)
            if section is not None:
                data[name] = section.model_dump(mode="json", by_alias=True, exclude_unset=True)
        return data


class Policy(Section):
    """A whole policy file. `hash` identifies its content (not its comments) in every verdict."""

    version: Literal[1] = 1
    mode: Mode = Mode.ENFORCE
    license: LicenseRules = Field(default_factory=LicenseRules)
    card: CardRules = Field(default_factory=CardRules)
    publisher: PublisherRules = Field(default_factory=PublisherRules)
    format: FormatRules = Field(default_factory=FormatRules)
    scan: ScanRules = Field(default_factory=ScanRules)
    scope: tuple[Scope, ...] = ()

    def canonical(self) -> dict[str, Any]:
        """What the policy means: formats resolved per family, scopes as written (only the fields set)."""
        data = self.model_dump(mode="json", by_alias=True, exclude={"format", "scope"})
        data["format"] = {f.value: a.value for f, a in self.format.resolved().items()}
        data["scope"] = [scope.canonical() for scope in self.scope]
        return data

    @cached_property
    def hash(self) -> str:
        """12 hex digits of sha256 over `canonical()`: comments and spelling do not change it."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]
