"""decide(report, ref, repo, policy) -> Decision: the pure policy function.

Each rule family (publisher, license + lineage, card, format, scan) yields zero or more `Reason`s, each
with an action; the decision is the strictest. Only reasons stricter than allow are kept, strictest
first, so `reasons[0]` is the headline a client sees. Every message stands alone and ends with the rule
that produced it, e.g. "license cc-by-nc-4.0 is not allowed (rule license.deny)".

`report=None` asks for the repo-level decision only (publisher, license, card): the pipeline uses it to
refuse before downloading anything. Scopes are applied first (`effective_policy`).
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Any

from proxy.models import (
    Action,
    ArtifactRef,
    Decision,
    Finding,
    FormatFamily,
    Reason,
    RepoMeta,
    ScanReport,
    ScanVerdict,
)
from proxy.policy.licenses import (
    OTHER,
    UNKNOWN,
    base_models_of,
    license_link,
    license_matches,
    licenses_of,
    normalize_license,
)
from proxy.policy.model import CardRules, LicenseRules, Policy, PublisherRules, Scope

DISAGREE_RULE = "engines.disagree"
MAX_REASONS_PER_RULE = 10  # a pickle with 500 bad globals should not make a 500-line client error
_SECTIONS = ("license", "card", "publisher", "format", "scan")


def repo_matches(repo_id: str, pattern: str) -> bool:
    """`org/name` globs match the whole id; a pattern without `/` matches the org (or a bare repo id)."""
    rid, pat = repo_id.lower(), pattern.lower()
    if "/" in pat:
        return fnmatchcase(rid, pat)
    namespace = rid.split("/", 1)[0] if "/" in rid else ""
    return fnmatchcase(namespace, pat) or fnmatchcase(rid, pat)


def matching_scopes(policy: Policy, repo_id: str) -> list[Scope]:
    return [s for s in policy.scope if any(repo_matches(repo_id, p) for p in s.match)]


def effective_policy(policy: Policy, repo_id: str) -> Policy:
    """The policy with every matching scope applied in file order (later scopes win, field by field).

    Its `hash` stays the source policy's (copied with the model): verdicts record the file's hash.
    """
    scopes = matching_scopes(policy, repo_id)
    if not scopes:
        return policy
    update: dict[str, Any] = {}
    for scope in scopes:
        if scope.mode is not None:
            update["mode"] = scope.mode
        for name in _SECTIONS:
            override = getattr(scope, name)
            if override is None:
                continue
            base = update.get(name, getattr(policy, name))
            if name == "format":
                update[name] = base.overridden_by(override)
            else:
                update[name] = base.model_copy(update={f: getattr(override, f) for f in override.model_fields_set})
    return policy.model_copy(update=update)


def _reason(rule: str, action: Action, text: str) -> Reason:
    """Every message ends with the rule that produced it, so a client error explains itself."""
    return Reason(rule=rule, action=action, message=f"{text} (rule {rule})")


def _verb(action: Action) -> str:
    return "is not allowed" if action is Action.BLOCK else "needs review"


# --- publisher ------------------------------------------------------------------------------------------


def publisher_reasons(repo: RepoMeta, rules: PublisherRules) -> list[Reason]:
    for pattern in rules.deny:
        if repo_matches(repo.repo_id, pattern):
            return [
                _reason(
                    "publisher.deny",
                    rules.deny_action,
                    f"publisher of {repo.repo_id} is denied by pattern {pattern!r}",
                )
            ]
    if rules.allow and not any(repo_matches(repo.repo_id, p) for p in rules.allow):
        who = repo.publisher or repo.repo_id
        return [
            _reason(
                "publisher.allow",
                rules.unlisted_action,
                f"publisher {who} is not on the allowed publishers list",
            )
        ]
    return []


# --- license and lineage --------------------------------------------------------------------------------


def _judge_license(license_id: str, rules: LicenseRules) -> tuple[str, Action] | None:
    """(kind, action) for one normalised id: kind is deny|unknown; None when allowed."""
    if license_matches(license_id, rules.deny):
        return "deny", rules.deny_action
    if license_matches(license_id, rules.allow):
        return None
    return "unknown", rules.unknown


def license_reasons(repo: RepoMeta, rules: LicenseRules) -> list[Reason]:
    reasons: list[Reason] = []
    ids = [i for i in licenses_of(repo) if i != UNKNOWN]
    if not ids:
        where = "no model card and no license tag" if repo.card_data is None else "no license in the model card"
        reasons.append(_reason("license.missing", rules.missing, f"{repo.repo_id} declares no license ({where})"))
    link = license_link(repo)
    for lid in ids:
        judged = _judge_license(lid, rules)
        if judged is None:
            continue
        kind, action = judged
        shown = f"{lid} ({link})" if link and lid.startswith(OTHER) else lid
        text = "is not allowed" if kind == "deny" else "is not on the allow list"
        reasons.append(_reason(f"license.{kind}", action, f"license {shown} {text}"))
    if rules.lineage:
        reasons.extend(_lineage_reasons(repo, rules))
    return reasons


def _lineage_reasons(repo: RepoMeta, rules: LicenseRules) -> list[Reason]:
    known = {k.lower(): v for k, v in repo.base_model_licenses.items()}
    bases = list(dict.fromkeys([*base_models_of(repo), *repo.base_model_licenses]))
    reasons: list[Reason] = []
    for base in bases:
        if base.lower() == repo.repo_id.lower():
            continue
        raw = known.get(base.lower())
        ids = [i for r in raw or [] if isinstance(r, str) for i in normalize_license(r) if i != UNKNOWN]
        if not ids:
            # [] is what the pipeline records for a base it could not reach as well as for one with no
            # license: either way nothing vouches for the base.
            why = "was not resolved" if raw is None else "has no license hubgate could determine"
            reasons.append(_reason("license.lineage", rules.missing, f"base model {base} {why}"))
            continue
        for lid in dict.fromkeys(ids):
            judged = _judge_license(lid, rules)
            if judged is None:
                continue
            kind, action = judged
            text = "is not allowed" if kind == "deny" else "is not on the allow list"
            reasons.append(_reason("license.lineage", action, f"base model {base} has license {lid}, which {text}"))
    return reasons


# --- model card -----------------------------------------------------------------------------------------


def _present(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != {}


def card_reasons(repo: RepoMeta, rules: CardRules) -> list[Reason]:
    if repo.card_data is None and rules.required:
        return [
            _reason(
                "card.missing",
                rules.missing_action,
                f"{repo.repo_id} has no model card (README.md with YAML front matter)",
            )
        ]
    card = repo.card_data or {}
    missing = [f for f in rules.required_fields if not _present(card.get(f))]
    if not missing:
        return []
    return [
        _reason(
            "card.fields",
            rules.missing_action,
            f"model card of {repo.repo_id} lacks required field(s): {', '.join(missing)}",
        )
    ]


# --- format and scan ------------------------------------------------------------------------------------


def format_reasons(report: ScanReport, ref: ArtifactRef, policy: Policy) -> list[Reason]:
    # A report that names no family was not identified: fail closed as `unknown`.
    families = list(dict.fromkeys(report.families)) or [FormatFamily.UNKNOWN]
    reasons: list[Reason] = []
    for family in families:
        action = policy.format.action_for(family)
        if action is Action.ALLOW:
            continue
        reasons.append(_reason(f"format.{family.value}", action, f"{ref.path}: {family.value} format {_verb(action)}"))
    return reasons


def _finding_text(finding: Finding, ref: ArtifactRef) -> str:
    at = f" at {finding.location}" if finding.location else ""
    severity = finding.severity.value
    return f"{ref.path}: {finding.engine} found {finding.message} [{finding.rule}{at}], severity {severity}"


def scan_reasons(report: ScanReport, ref: ArtifactRef, policy: Policy) -> list[Reason]:
    rules = policy.scan
    reasons: list[Reason] = []
    if report.verdict is ScanVerdict.ERROR:
        errors = [f.message for f in report.findings if "error" in f.rule or "timeout" in f.rule]
        detail = f": {errors[0]}" if errors else ""
        reasons.append(_reason("scan.error", rules.error, f"{ref.path}: the scan could not finish{detail}"))
    elif report.verdict is ScanVerdict.UNSAFE and not report.findings:
        reasons.append(
            _reason(
                "scan.unsafe",
                rules.error,
                f"{ref.path}: the scanners reported the file unsafe without details",
            )
        )
    per_rule: dict[str, list[Reason]] = {}
    overflow: dict[str, tuple[Action, int]] = {}
    for finding in report.findings:
        if finding.rule == DISAGREE_RULE:
            rule, action = "scan.disagreement", rules.disagreement
        else:
            rule, action = f"scan.{finding.severity.value}", rules.action_for(finding.severity)
        if action is Action.ALLOW:
            continue
        bucket = per_rule.setdefault(rule, [])
        if len(bucket) < MAX_REASONS_PER_RULE:
            bucket.append(_reason(rule, action, _finding_text(finding, ref)))
        else:
            overflow[rule] = (action, overflow.get(rule, (action, 0))[1] + 1)
    for rule, bucket in per_rule.items():
        reasons.extend(bucket)
        if rule in overflow:
            action, count = overflow[rule]
            reasons.append(_reason(rule, action, f"{ref.path}: and {count} more such findings"))
    return reasons


# --- the decision ---------------------------------------------------------------------------------------


def strictest(actions: Iterable[Action]) -> Action:
    return max(actions, key=lambda a: a.rank, default=Action.ALLOW)


def decide(report: ScanReport | None, ref: ArtifactRef, repo: RepoMeta, policy: Policy) -> Decision:
    """The strictest outcome of every rule for this file (or, with `report=None`, for its repo)."""
    effective = effective_policy(policy, repo.repo_id or ref.repo_id)
    reasons: list[Reason] = [
        *publisher_reasons(repo, effective.publisher),
        *license_reasons(repo, effective.license),
        *card_reasons(repo, effective.card),
    ]
    if report is not None:
        reasons += format_reasons(report, ref, effective)
        reasons += scan_reasons(report, ref, effective)
    kept = list(dict.fromkeys(r for r in reasons if r.action is not Action.ALLOW))
    kept.sort(key=lambda r: -r.action.rank)  # stable: rule order is kept within one action
    return Decision(
        action=strictest(r.action for r in kept),
        reasons=kept,
        policy_hash=policy.hash,
        mode=effective.mode.value,
    )
