"""decide(): every rule type, every enum value, scopes, modes, and the messages clients will read."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from proxy.models import (
    Action,
    ArtifactRef,
    Decision,
    Finding,
    FormatFamily,
    RepoMeta,
    ScanReport,
    ScanVerdict,
    Severity,
)
from proxy.policy import decide, default_policy, parse_policy
from proxy.policy.engine import MAX_REASONS_PER_RULE, effective_policy, repo_matches
from proxy.policy.model import Policy

REF = ArtifactRef(repo_id="org/model", commit="a" * 40, path="model.safetensors")
MIT = {"license": "mit"}


def policy(text: str = "") -> Policy:
    return parse_policy(textwrap.dedent(text), source="test.toml")


def repo(card: dict[str, Any] | None = MIT, repo_id: str = "org/model", **kw: Any) -> RepoMeta:
    return RepoMeta(repo_id=repo_id, card_data=card, **kw)


def report(
    families: list[FormatFamily] | None = None,
    findings: list[Finding] | None = None,
    verdict: ScanVerdict = ScanVerdict.CLEAN,
) -> ScanReport:
    return ScanReport(
        sha256="0" * 64,
        size=10,
        families=[FormatFamily.SAFETENSORS] if families is None else families,
        findings=findings or [],
        verdict=verdict,
    )


def finding(severity: Severity, rule: str = "pickle.global", message: str = "global os.system") -> Finding:
    return Finding(engine="allowlist", severity=severity, rule=rule, message=message, location="data.pkl")


def rules(decision: Decision) -> list[str]:
    return [r.rule for r in decision.reasons]


# --- the baseline -----------------------------------------------------------------------------------


def test_clean_permissive_safetensors_is_allowed() -> None:
    decision = decide(report(), REF, repo(), default_policy())
    assert decision.action is Action.ALLOW
    assert decision.reasons == []
    assert decision.policy_hash == default_policy().hash
    assert decision.mode == "enforce"


def test_repo_level_only_ignores_format_and_scan() -> None:
    decision = decide(None, REF, repo(), default_policy())
    assert decision.action is Action.ALLOW
    decision = decide(None, REF, repo({"license": "cc-by-nc-4.0"}), default_policy())
    assert decision.action is Action.BLOCK


# --- license ----------------------------------------------------------------------------------------


def test_non_commercial_license_is_blocked_with_a_standalone_message() -> None:
    decision = decide(report(), REF, repo({"license": "cc-by-nc-4.0"}), default_policy())
    assert decision.action is Action.BLOCK
    assert decision.reasons[0].rule == "license.deny"
    assert decision.reasons[0].message == "license cc-by-nc-4.0 is not allowed (rule license.deny)"


@pytest.mark.parametrize(
    ("card", "tags", "expected", "rule"),
    [
        ({"license": "Apache-2.0"}, [], Action.ALLOW, None),
        ({"license": "MIT"}, [], Action.ALLOW, None),
        ({"license": "bsd-3-clause"}, [], Action.ALLOW, None),
        ({"license": "cc-by-nc-sa-4.0"}, [], Action.BLOCK, "license.deny"),
        ({"license": ["mit", "cc-by-nc-nd-4.0"]}, [], Action.BLOCK, "license.deny"),
        ({"license": "llama3"}, [], Action.QUARANTINE, "license.unknown"),
        ({"license": "gpl-3.0"}, [], Action.QUARANTINE, "license.unknown"),
        ({"license": "other", "license_name": "acme"}, [], Action.QUARANTINE, "license.unknown"),
        ({"license": "unknown"}, [], Action.QUARANTINE, "license.missing"),
        ({"language": "en"}, [], Action.QUARANTINE, "license.missing"),
        (None, [], Action.QUARANTINE, "license.missing"),
        (None, ["license:apache-2.0"], Action.ALLOW, None),
        (None, ["license:cc-by-nc-4.0"], Action.BLOCK, "license.deny"),
        ({"license": "mit OR cc-by-nc-4.0"}, [], Action.BLOCK, "license.deny"),
    ],
)
def test_license_rules(card: dict[str, Any] | None, tags: list[str], expected: Action, rule: str | None) -> None:
    decision = decide(report(), REF, repo(card, tags=tags), default_policy())
    assert decision.action is expected
    assert (decision.reasons[0].rule if decision.reasons else None) == rule


def test_other_license_message_carries_the_link() -> None:
    card = {"license": "other", "license_name": "Acme License", "license_link": "https://acme.example/l"}
    decision = decide(None, REF, repo(card), default_policy())
    assert decision.reasons[0].message == (
        "license other:acme-license (https://acme.example/l) is not on the allow list (rule license.unknown)"
    )
    allowed = policy('[license]\nallow = ["mit", "other:acme-license"]\n')
    assert decide(None, REF, repo(card), allowed).action is Action.ALLOW


def test_missing_license_message() -> None:
    decision = decide(None, REF, repo(None), default_policy())
    assert decision.reasons[0].message == (
        "org/model declares no license (no model card and no license tag) (rule license.missing)"
    )


@pytest.mark.parametrize("action", list(Action))
def test_license_unknown_and_missing_actions_are_configurable(action: Action) -> None:
    p = policy(f'[license]\nunknown = "{action.value}"\nmissing = "{action.value}"\n')
    assert decide(None, REF, repo({"license": "llama3"}), p).action is action
    assert decide(None, REF, repo(None), p).action is action


def test_deny_wins_over_allow_and_deny_action_is_configurable() -> None:
    p = policy('[license]\nallow = ["cc-by-nc-4.0"]\ndeny = ["cc-by-nc-*"]\ndeny_action = "quarantine"\n')
    decision = decide(None, REF, repo({"license": "cc-by-nc-4.0"}), p)
    assert decision.action is Action.QUARANTINE
    assert rules(decision) == ["license.deny"]


# --- lineage ----------------------------------------------------------------------------------------


def test_fine_tune_cannot_launder_a_non_commercial_base() -> None:
    card = {"license": "apache-2.0", "base_model": "someone/nc-base"}
    meta = repo(card, base_model_licenses={"someone/nc-base": ["cc-by-nc-4.0"]})
    decision = decide(None, REF, meta, default_policy())
    assert decision.action is Action.BLOCK
    assert decision.reasons[0].rule == "license.lineage"
    assert decision.reasons[0].message == (
        "base model someone/nc-base has license cc-by-nc-4.0, which is not allowed (rule license.lineage)"
    )


def test_lineage_list_of_bases_and_unresolved_base() -> None:
    card = {"license": "mit", "base_model": ["a/ok", "b/unresolved"]}
    meta = repo(card, base_model_licenses={"a/ok": ["Apache-2.0"]})
    decision = decide(None, REF, meta, default_policy())
    assert decision.action is Action.QUARANTINE
    assert [r.message for r in decision.reasons] == ["base model b/unresolved was not resolved (rule license.lineage)"]


def test_lineage_base_without_license_and_transitive_entries() -> None:
    card = {"license": "mit", "base_model": "a/parent"}
    # the pipeline may add grandparents it resolved; they are checked too
    meta = repo(card, base_model_licenses={"a/parent": [], "a/grandparent": ["cc-by-nc-sa-4.0"]})
    decision = decide(None, REF, meta, default_policy())
    assert decision.action is Action.BLOCK
    assert rules(decision) == ["license.lineage", "license.lineage"]
    assert "a/parent has no license hubgate could determine" in decision.reasons[1].message


def test_lineage_all_permissive_passes_and_can_be_turned_off() -> None:
    card = {"license": "mit", "base_model": "A/Base"}
    ok = repo(card, base_model_licenses={"a/base": ["apache-2.0"]})  # repo ids compare case-insensitively
    assert decide(None, REF, ok, default_policy()).action is Action.ALLOW
    bad = repo(card, base_model_licenses={"A/Base": ["cc-by-nc-4.0"]})
    assert decide(None, REF, bad, policy("[license]\nlineage = false\n")).action is Action.ALLOW


# --- card -------------------------------------------------------------------------------------------


def test_card_required() -> None:
    p = policy('[card]\nrequired = true\n[license]\nmissing = "allow"\n')
    decision = decide(None, REF, repo(None), p)
    assert decision.action is Action.QUARANTINE
    assert rules(decision) == ["card.missing"]
    assert decide(None, REF, repo({}), p).action is Action.ALLOW


def test_card_required_fields() -> None:
    p = policy('[card]\nrequired_fields = ["license", "datasets"]\nmissing_action = "block"\n')
    decision = decide(None, REF, repo({"license": "mit", "datasets": []}), p)
    assert decision.action is Action.BLOCK
    assert decision.reasons[0].message == (
        "model card of org/model lacks required field(s): datasets (rule card.fields)"
    )
    assert decide(None, REF, repo({"license": "mit", "datasets": ["x/y"]}), p).action is Action.ALLOW


# --- publisher --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("repo_id", "pattern", "matches"),
    [
        ("meta-llama/Llama-3-8B", "meta-llama", True),
        ("meta-llama/Llama-3-8B", "meta-llama/*", True),
        ("Meta-Llama/llama-3-8b", "meta-llama/Llama-3-*", True),
        ("meta-llama-fake/Llama-3-8B", "meta-llama", False),
        ("meta-llama-fake/Llama-3-8B", "meta-llama/*", False),
        ("gpt2", "gpt2", True),
        ("gpt2", "openai/*", False),
        ("org/model", "*", True),
    ],
)
def test_repo_matches(repo_id: str, pattern: str, matches: bool) -> None:
    assert repo_matches(repo_id, pattern) is matches


def test_publisher_deny_and_allow_list() -> None:
    p = policy('[publisher]\nallow = ["trusted", "partner/one-model"]\ndeny = ["trusted/bad-*"]\n')
    assert decide(None, REF, repo(repo_id="trusted/good"), p).action is Action.ALLOW
    assert decide(None, REF, repo(repo_id="partner/one-model"), p).action is Action.ALLOW
    denied = decide(None, REF, repo(repo_id="trusted/bad-one"), p)
    assert denied.action is Action.BLOCK
    assert denied.reasons[0].message == (
        "publisher of trusted/bad-one is denied by pattern 'trusted/bad-*' (rule publisher.deny)"
    )
    unlisted = decide(None, REF, repo(repo_id="trusted-typo/good"), p)
    assert unlisted.action is Action.BLOCK
    assert unlisted.reasons[0].message == (
        "publisher trusted-typo is not on the allowed publishers list (rule publisher.allow)"
    )


def test_publisher_actions_configurable() -> None:
    p = policy('[publisher]\nallow = ["a"]\nunlisted_action = "quarantine"\n')
    assert decide(None, REF, repo(repo_id="b/x"), p).action is Action.QUARANTINE
    assert decide(None, REF, repo(repo_id="b/x"), default_policy()).action is Action.ALLOW


# --- format -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", list(FormatFamily))
@pytest.mark.parametrize("action", list(Action))
def test_every_family_every_action(family: FormatFamily, action: Action) -> None:
    if family is FormatFamily.UNKNOWN and action is Action.ALLOW:
        return  # refused at load time, tested in the loader tests
    p = policy(f'[format]\n"{family.value}" = "{action.value}"\n')
    decision = decide(report([family]), REF, repo(), p)
    assert decision.action is action
    assert rules(decision) == ([] if action is Action.ALLOW else [f"format.{family.value}"])


def test_default_format_stances() -> None:
    expected = {
        FormatFamily.TORCHSCRIPT: Action.BLOCK,
        FormatFamily.CUSTOM_CODE: Action.QUARANTINE,
        FormatFamily.UNKNOWN: Action.QUARANTINE,
        FormatFamily.PICKLE: Action.ALLOW,
        FormatFamily.ARCHIVE: Action.ALLOW,
    }
    for family, action in expected.items():
        assert decide(report([family]), REF, repo(), default_policy()).action is action
    message = decide(report([FormatFamily.CUSTOM_CODE]), REF, repo(), default_policy()).reasons[0].message
    assert message == "model.safetensors: custom-code format needs review (rule format.custom-code)"


def test_report_without_families_is_unknown() -> None:
    decision = decide(report([]), REF, repo(), default_policy())
    assert rules(decision) == ["format.unknown"]


def test_safetensors_only() -> None:
    p = policy('[format]\nweights = "block"\nsafetensors = "allow"\n')
    assert decide(report([FormatFamily.SAFETENSORS]), REF, repo(), p).action is Action.ALLOW
    assert decide(report([FormatFamily.CONFIG]), REF, repo(), p).action is Action.ALLOW
    blocked = decide(report([FormatFamily.PICKLE]), REF, repo(), p)
    assert blocked.action is Action.BLOCK
    assert blocked.reasons[0].message == "model.safetensors: pickle format is not allowed (rule format.pickle)"


# --- scan -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("severity", list(Severity))
def test_default_action_per_severity(severity: Severity) -> None:
    expected = {
        Severity.CRITICAL: Action.BLOCK,
        Severity.HIGH: Action.BLOCK,
        Severity.MEDIUM: Action.QUARANTINE,
        Severity.LOW: Action.ALLOW,
        Severity.INFO: Action.ALLOW,
    }[severity]
    decision = decide(report([FormatFamily.PICKLE], [finding(severity)]), REF, repo(), default_policy())
    assert decision.action is expected
    assert rules(decision) == ([] if expected is Action.ALLOW else [f"scan.{severity.value}"])


@pytest.mark.parametrize("severity", list(Severity))
@pytest.mark.parametrize("action", list(Action))
def test_every_severity_every_action(severity: Severity, action: Action) -> None:
    p = policy(f'[scan]\n{severity.value} = "{action.value}"\n')
    decision = decide(report([FormatFamily.PICKLE], [finding(severity)]), REF, repo(), p)
    assert decision.action is action


def test_finding_message_stands_alone() -> None:
    decision = decide(report([FormatFamily.PICKLE], [finding(Severity.CRITICAL)]), REF, repo(), default_policy())
    assert decision.reasons[0].message == (
        "model.safetensors: allowlist found global os.system [pickle.global at data.pkl], severity critical "
        "(rule scan.critical)"
    )


def test_scan_error_is_at_least_quarantine() -> None:
    err = Finding(engine="pool", severity=Severity.HIGH, rule="scan.timeout", message="timed out after 600 s")
    decision = decide(report([FormatFamily.PICKLE], [err], ScanVerdict.ERROR), REF, repo(), default_policy())
    assert decision.action is Action.BLOCK  # the high finding is stricter than the error
    assert "model.safetensors: the scan could not finish: timed out after 600 s (rule scan.error)" in [
        r.message for r in decision.reasons
    ]
    bare = decide(report([FormatFamily.PICKLE], [], ScanVerdict.ERROR), REF, repo(), default_policy())
    assert bare.action is Action.QUARANTINE
    assert rules(bare) == ["scan.error"]
    strict = policy('[scan]\nerror = "block"\n')
    assert decide(report([FormatFamily.PICKLE], [], ScanVerdict.ERROR), REF, repo(), strict).action is Action.BLOCK


def test_unsafe_without_findings_is_not_a_pass() -> None:
    decision = decide(report([FormatFamily.PICKLE], [], ScanVerdict.UNSAFE), REF, repo(), default_policy())
    assert decision.action is Action.QUARANTINE
    assert rules(decision) == ["scan.unsafe"]


@pytest.mark.parametrize("action", list(Action))
def test_engine_disagreement_is_configurable(action: Action) -> None:
    disagree = finding(Severity.LOW, rule="engines.disagree", message="modelscan flags what the allowlist passes")
    p = policy(f'[scan]\ndisagreement = "{action.value}"\n')
    decision = decide(report([FormatFamily.PICKLE], [disagree]), REF, repo(), p)
    assert decision.action is action
    assert rules(decision) == ([] if action is Action.ALLOW else ["scan.disagreement"])


def test_many_findings_are_capped() -> None:
    findings = [finding(Severity.CRITICAL, message=f"global evil.f{i}") for i in range(MAX_REASONS_PER_RULE + 7)]
    decision = decide(report([FormatFamily.PICKLE], findings), REF, repo(), default_policy())
    assert len(decision.reasons) == MAX_REASONS_PER_RULE + 1
    assert decision.reasons[-1].message == "model.safetensors: and 7 more such findings (rule scan.critical)"


def test_reasons_are_strictest_first() -> None:
    decision = decide(
        report([FormatFamily.CUSTOM_CODE], [finding(Severity.CRITICAL)]),
        REF,
        repo({"license": "llama3"}),
        default_policy(),
    )
    assert decision.action is Action.BLOCK
    assert [r.action for r in decision.reasons] == [Action.BLOCK, Action.QUARANTINE, Action.QUARANTINE]
    assert rules(decision) == ["scan.critical", "license.unknown", "format.custom-code"]


# --- scopes and modes -------------------------------------------------------------------------------

SCOPED = """
[license]
deny = ["cc-by-nc-*"]

[[scope]]
match = ["research-lab/*", "partner/special"]
note = "research group: non-commercial is fine, custom code reviewed elsewhere"
license.deny = []
license.allow = ["mit", "cc-by-nc-*"]
format.custom-code = "allow"

[[scope]]
match = ["research-lab/secret-*"]
mode = "audit"
[scope.scan]
medium = "block"
"""


def test_scope_overrides_matching_repos_only() -> None:
    p = policy(SCOPED)
    nc = {"license": "cc-by-nc-4.0"}
    assert decide(None, REF, repo(nc, repo_id="research-lab/x"), p).action is Action.ALLOW
    assert decide(None, REF, repo(nc, repo_id="partner/special"), p).action is Action.ALLOW
    assert decide(None, REF, repo(nc, repo_id="partner/other"), p).action is Action.BLOCK
    assert decide(None, REF, repo(nc, repo_id="elsewhere/x"), p).action is Action.BLOCK
    code = report([FormatFamily.CUSTOM_CODE])
    assert decide(code, REF, repo(repo_id="research-lab/x"), p).action is Action.ALLOW
    assert decide(code, REF, repo(repo_id="elsewhere/x"), p).action is Action.QUARANTINE


def test_scopes_merge_field_by_field_later_wins() -> None:
    p = policy(SCOPED)
    eff = effective_policy(p, "research-lab/secret-model")
    assert eff.mode.value == "audit"
    assert eff.scan.medium is Action.BLOCK
    assert eff.scan.critical is Action.BLOCK  # untouched fields keep the base value
    assert eff.license.deny == ()  # from the first scope
    assert eff.license.missing is Action.QUARANTINE
    medium = report([FormatFamily.PICKLE], [finding(Severity.MEDIUM)])
    decision = decide(medium, REF, repo(repo_id="research-lab/secret-model"), p)
    assert decision.action is Action.BLOCK
    assert decision.mode == "audit"
    assert decision.policy_hash == p.hash  # the whole policy's hash, not the effective one


def test_scope_weights_covers_weight_families_the_base_named() -> None:
    p = policy('[format]\npickle = "allow"\n[[scope]]\nmatch = ["strict/*"]\nformat.weights = "block"\n')
    assert decide(report([FormatFamily.PICKLE]), REF, repo(repo_id="strict/x"), p).action is Action.BLOCK
    assert decide(report([FormatFamily.PICKLE]), REF, repo(repo_id="lax/x"), p).action is Action.ALLOW


@pytest.mark.parametrize("mode", ["enforce", "audit"])
def test_mode_is_carried_and_does_not_soften_the_decision(mode: str) -> None:
    p = policy(f'mode = "{mode}"\n')
    decision = decide(report(), REF, repo({"license": "cc-by-nc-4.0"}), p)
    assert decision.mode == mode
    assert decision.action is Action.BLOCK  # audit serves, but the verdict still says what policy decided
