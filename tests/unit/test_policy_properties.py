"""Property tests: random policies, repos and reports never make decide() raise, and the decision is
exactly the strictest reason (allow only when no reason is stricter)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.models import (
    Action,
    ArtifactRef,
    Finding,
    FormatFamily,
    RepoMeta,
    ScanReport,
    ScanVerdict,
    Severity,
)
from proxy.policy import PolicyError, decide, parse_policy
from proxy.policy.model import Policy

ACTIONS = st.sampled_from([a.value for a in Action])
STRICT = st.sampled_from([Action.QUARANTINE.value, Action.BLOCK.value])
LICENSES = st.sampled_from(
    ["mit", "apache-2.0", "cc-by-nc-4.0", "cc-by-nc-*", "llama3", "gpl-*", "bsd-*", "other:acme", "gemma"]
)
REPO_IDS = st.sampled_from(["org/model", "Org/Other", "gpt2", "evil/model", "research/x", "a/b"])
PATTERNS = st.sampled_from(["org", "org/*", "evil", "*", "research/*", "a/b", "gpt2"])


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    lines = [f'mode = "{draw(st.sampled_from(["enforce", "audit"]))}"', "[license]"]
    lines.append(f"allow = {_toml_list(draw(st.lists(LICENSES, max_size=4)))}")
    lines.append(f"deny = {_toml_list(draw(st.lists(LICENSES, max_size=3)))}")
    lines += [f'deny_action = "{draw(STRICT)}"', f'unknown = "{draw(ACTIONS)}"', f'missing = "{draw(ACTIONS)}"']
    lines.append(f"lineage = {'true' if draw(st.booleans()) else 'false'}")
    lines += ["[card]", f"required = {'true' if draw(st.booleans()) else 'false'}"]
    lines.append(f"required_fields = {_toml_list(draw(st.lists(st.sampled_from(['license', 'datasets']))))}")
    lines += ["[publisher]", f"allow = {_toml_list(draw(st.lists(PATTERNS, max_size=2)))}"]
    lines.append(f"deny = {_toml_list(draw(st.lists(PATTERNS, max_size=2)))}")
    lines += ["[format]"]
    for family in draw(st.lists(st.sampled_from([*FormatFamily, "weights"]), unique=True)):
        key = family.value if isinstance(family, FormatFamily) else family
        lines.append(f'"{key}" = "{draw(STRICT if key == "unknown" else ACTIONS)}"')
    lines += ["[scan]"] + [f'{s.value} = "{draw(ACTIONS)}"' for s in Severity]
    lines += [f'error = "{draw(STRICT)}"', f'disagreement = "{draw(ACTIONS)}"']
    for _ in range(draw(st.integers(0, 2))):
        lines += ["[[scope]]", f"match = {_toml_list(draw(st.lists(PATTERNS, min_size=1, max_size=2)))}"]
        if draw(st.booleans()):
            lines.append(f'license.unknown = "{draw(ACTIONS)}"')
        if draw(st.booleans()):
            lines.append(f'format.weights = "{draw(ACTIONS)}"')
        if draw(st.booleans()):
            lines.append(f'scan.critical = "{draw(ACTIONS)}"')
    return parse_policy("\n".join(lines) + "\n")


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20) | LICENSES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def repos(draw: st.DrawFn) -> RepoMeta:
    card: dict[str, Any] | None = draw(
        st.none()
        | st.fixed_dictionaries(
            {},
            optional={
                "license": JSONISH,
                "license_name": JSONISH,
                "license_link": JSONISH,
                "base_model": st.one_of(REPO_IDS, st.lists(REPO_IDS, max_size=3), JSONISH),
                "datasets": JSONISH,
            },
        )
    )
    tags = draw(st.lists(st.one_of(LICENSES.map(lambda x: f"license:{x}"), st.text(max_size=12)), max_size=4))
    bases = draw(st.dictionaries(REPO_IDS, st.lists(LICENSES, max_size=2), max_size=2))
    return RepoMeta(repo_id=draw(REPO_IDS), card_data=card, tags=tags, base_model_licenses=bases)


FINDINGS = st.builds(
    Finding,
    engine=st.sampled_from(["allowlist", "fickling", "modelscan"]),
    severity=st.sampled_from(list(Severity)),
    rule=st.sampled_from(["pickle.global", "engines.disagree", "scan.timeout", "x"]),
    message=st.text(max_size=30),
    location=st.text(max_size=10),
)

REPORTS = st.none() | st.builds(
    ScanReport,
    sha256=st.just("0" * 64),
    size=st.integers(0, 10**12),
    families=st.lists(st.sampled_from(list(FormatFamily)), max_size=4),
    verdict=st.sampled_from(list(ScanVerdict)),
    findings=st.lists(FINDINGS, max_size=15),
)

REF = ArtifactRef(repo_id="org/model", commit="c" * 40, path="pytorch_model.bin")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=policies(), repo=repos(), report=REPORTS)
def test_decide_never_raises_and_is_the_strictest_reason(
    policy: Policy, repo: RepoMeta, report: ScanReport | None
) -> None:
    decision = decide(report, REF, repo, policy)
    ranks = [r.action.rank for r in decision.reasons]
    assert decision.action.rank == max(ranks, default=Action.ALLOW.rank)
    assert all(r.action is not Action.ALLOW for r in decision.reasons)
    assert (decision.action is Action.ALLOW) == (decision.reasons == [])
    assert ranks == sorted(ranks, reverse=True)
    assert all(r.message.endswith(f"(rule {r.rule})") for r in decision.reasons)
    assert decision.policy_hash == policy.hash
    assert decision.mode in ("enforce", "audit")
    # fail closed: a scan that did not finish is never a pass
    if report is not None and report.verdict is ScanVerdict.ERROR:
        assert decision.action is not Action.ALLOW
    # the file decision is never laxer than the repo-level one used to refuse early
    assert decision.action.rank >= decide(None, REF, repo, policy).action.rank


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_parse_policy_only_raises_policy_error(text: str) -> None:
    try:
        parse_policy(text)
    except PolicyError as exc:
        assert str(exc)
        assert all(line.startswith("<policy>") for line in exc.errors)


@settings(max_examples=100, deadline=None)
@given(policy=policies())
def test_hash_is_deterministic(policy: Policy) -> None:
    # scope sections mean "only the fields written", so the faithful round trip keeps unset fields unset
    again = Policy.model_validate(policy.model_dump(by_alias=True, exclude_unset=True))
    assert again.hash == policy.hash
    assert again.canonical() == policy.canonical()
