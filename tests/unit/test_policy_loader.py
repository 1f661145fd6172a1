"""Policy files: the shipped default, precise errors (file:line: field: problem), hashing."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from proxy.models import Action, FormatFamily, Severity
from proxy.policy import PolicyError, default_policy, load_policy, parse_policy
from proxy.policy.loader import default_policy_text
from proxy.policy.model import LicenseRules, Mode

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_POLICY = REPO_ROOT / "config" / "policy.toml"
PACKAGED_POLICY = REPO_ROOT / "proxy" / "policy" / "default_policy.toml"


def parse(text: str) -> object:
    return parse_policy(textwrap.dedent(text), source="config/policy.toml")


def test_packaged_default_is_identical_to_config_file() -> None:
    assert PACKAGED_POLICY.read_bytes() == CONFIG_POLICY.read_bytes()
    assert default_policy_text() == CONFIG_POLICY.read_text(encoding="utf-8")


def test_default_policy_is_the_issue_2_defaults() -> None:
    policy = default_policy()
    assert policy == load_policy(CONFIG_POLICY)
    assert policy.mode is Mode.ENFORCE
    lic = policy.license
    for allowed in ["apache-2.0", "mit", "bsd-*", "cc-by-4.0", "cc0-1.0", "isc", "unlicense", "mpl-2.0"]:
        assert allowed in lic.allow
    assert "cc-by-nc-*" in lic.deny
    assert lic.deny_action is Action.BLOCK
    assert lic.unknown is Action.QUARANTINE
    assert lic.missing is Action.QUARANTINE
    assert lic.lineage is True
    assert policy.scan.critical is Action.BLOCK
    assert policy.scan.high is Action.BLOCK
    assert policy.scan.medium is Action.QUARANTINE
    assert policy.scan.low is Action.ALLOW
    assert policy.scan.info is Action.ALLOW
    assert policy.scan.error is Action.QUARANTINE
    formats = policy.format.resolved()
    assert formats[FormatFamily.CUSTOM_CODE] is Action.QUARANTINE
    assert formats[FormatFamily.TORCHSCRIPT] is Action.BLOCK
    assert formats[FormatFamily.UNKNOWN] is Action.QUARANTINE
    assert formats[FormatFamily.PICKLE] is Action.ALLOW
    assert formats[FormatFamily.SAFETENSORS] is Action.ALLOW
    assert policy.card.required is False
    assert policy.publisher.allow == () and policy.publisher.deny == ()


def test_empty_file_means_the_defaults() -> None:
    assert parse_policy("").hash == default_policy().hash
    assert parse_policy("").canonical() == default_policy().canonical()


def test_model_defaults_are_already_normalised() -> None:
    # field defaults are not validated by pydantic: prove they would survive validation unchanged
    defaults = LicenseRules()
    assert LicenseRules.model_validate(defaults.model_dump()) == defaults


def test_hash_is_stable_short_and_content_based() -> None:
    policy = default_policy()
    assert len(policy.hash) == 12 and int(policy.hash, 16) >= 0
    assert policy.hash == parse_policy(default_policy_text()).hash
    # comments, spelling and key order do not change it; content does
    assert (
        parse('# a comment\n[license]\nallow = ["Apache-2.0"]\n').hash
        == parse('[license]\nallow = ["apache-2.0"] # same\n').hash
    )
    assert parse('mode = "audit"').hash != policy.hash
    # two spellings of the same format stance hash alike
    assert (
        parse('[format]\nweights = "block"\nsafetensors = "allow"\n').hash
        == parse(
            "[format]\n"
            + "".join(f'{f} = "block"\n' for f in ["pickle", "gguf", "onnx", "keras", "tensorflow", "numpy"])
            + 'safetensors = "allow"\n'
        ).hash
    )


def test_every_severity_and_family_has_a_policy_field() -> None:
    policy = default_policy()
    for severity in Severity:
        assert isinstance(policy.scan.action_for(severity), Action)
    for family in FormatFamily:
        assert isinstance(policy.format.action_for(family), Action)
        key = family.value
        assert parse(f'[format]\n"{key}" = "block"\n').format.action_for(family) is Action.BLOCK


def test_every_action_and_mode_spelling_is_accepted() -> None:
    for action in Action:
        assert parse(f'[license]\nunknown = "{action.value}"\n').license.unknown is action
    for mode in Mode:
        assert parse(f'mode = "{mode.value}"\n').mode is mode


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            """\
            [license]
            deny = [
              "cc-by-nc-*",
              "gpl-3.0",
              "cc-by-nc",
            ]
            """,
            r"^config/policy\.toml:5: license\.deny\[2\]: 'cc-by-nc' is not a known license id or glob",
        ),
        (
            '[license]\nallow = ["mit", "apache"]\n',
            r"^config/policy\.toml:2: license\.allow\[1\]: 'apache' is not a known license id or glob",
        ),
        (
            '\n[license]\ndenny = ["mit"]\n',
            r"^config/policy\.toml:3: license\.denny: unknown field 'denny' \(did you mean 'deny'\?",
        ),
        ('mode = "enforcing"\n', r"^config/policy\.toml:1: mode: 'enforcing' is not valid; expected 'enforce'"),
        (
            '[scan]\ncritical = "block"\nerror = "allow"\n',
            r"^config/policy\.toml:3: scan\.error: cannot be 'allow'",
        ),
        ('[scan]\nhigh = "blok"\n', r"^config/policy\.toml:2: scan\.high: 'blok' is not valid; expected 'allow'"),
        (
            '[format]\ncustom-code = "maybe"\n',
            r"^config/policy\.toml:2: format\.custom-code: 'maybe' is not valid",
        ),
        ('[format]\nsafetensor = "allow"\n', r"format\.safetensor: unknown field .*did you mean 'safetensors'"),
        (
            '[publisher]\ndeny = ["ok-org", "bad org/*"]\n',
            r"^config/policy\.toml:2: publisher\.deny\[1\]: 'bad org/\*' is not an 'org', 'org/name' or glob",
        ),
        (
            '[[scope]]\nmatch = ["a/*"]\n\n[[scope]]\nmatch = ["b/*"]\nlicense.deny = ["nope"]\n',
            r"^config/policy\.toml:6: scope\[1\]\.license\.deny\[0\]: 'nope' is not a known license",
        ),
        (
            '[[scope]]\nmatch = ["a/*"]\n[scope.scan]\nerror = "allow"\n',
            r"^config/policy\.toml:4: scope\[0\]\.scan\.error: cannot be 'allow'",
        ),
        ('[[scope]]\nnote = "no match"\n', r"^config/policy\.toml:1: scope\[0\]\.match: required field is missing"),
        ("[[scope]]\nmatch = []\n", r"^config/policy\.toml:2: scope\[0\]\.match: "),
        ('[card]\nrequired = "yes"\n', r"^config/policy\.toml:2: card\.required: .*'yes'"),
        ("version = 2\n", r"^config/policy\.toml:1: version: 2 is not valid; expected 1"),
        ("[license]\ninline = { a = 1 }\n", r"^config/policy\.toml:2: license\.inline: unknown field"),
        ("[license\n", r"^config/policy\.toml:1: TOML syntax error: "),
        ('mode = "enforce"\nmode = "audit"\n', r"^config/policy\.toml:2: TOML syntax error: "),
        ("x = [1,", r"^config/policy\.toml:1: TOML syntax error: .*at end of file"),
    ],
)
def test_precise_errors(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse(text)


def test_all_errors_reported_in_line_order() -> None:
    text = '[license]\nunknown = "x"\n[scan]\nhigh = "y"\n[format]\nfoo = 1\n'
    with pytest.raises(PolicyError) as info:
        parse(text)
    lines = [e.split(":")[1] for e in info.value.errors]
    assert lines == ["2", "4", "6"]
    assert str(info.value).count("\n") == 2


def test_load_policy_file_errors(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"no such policy file"):
        load_policy(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'mode = "\xff"\n')
    with pytest.raises(PolicyError, match=r"bad\.toml: policy file is not UTF-8"):
        load_policy(bad)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('[license]\nmissing = "nope"\n')
    with pytest.raises(PolicyError, match=rf"^{tmp_path}/wrong\.toml:2: license\.missing: 'nope'"):
        load_policy(wrong)


def test_safetensors_only_is_two_lines() -> None:
    policy = parse('[format]\nweights = "block"\nsafetensors = "allow"\n')
    formats = policy.format.resolved()
    assert formats[FormatFamily.SAFETENSORS] is Action.ALLOW
    for family in [FormatFamily.PICKLE, FormatFamily.TORCHSCRIPT, FormatFamily.GGUF, FormatFamily.NUMPY]:
        assert formats[family] is Action.BLOCK
    # configs, tokenizers and READMEs still flow
    assert formats[FormatFamily.CONFIG] is Action.ALLOW
    assert formats[FormatFamily.TEXT] is Action.ALLOW


def test_the_same_two_lines_in_the_shipped_file_give_safetensors_only() -> None:
    text = default_policy_text().replace('weights = "allow"', 'weights = "block"\nsafetensors = "allow"')
    formats = parse_policy(text).format.resolved()
    assert formats[FormatFamily.PICKLE] is Action.BLOCK
    assert formats[FormatFamily.SAFETENSORS] is Action.ALLOW


def test_every_toml_example_in_the_docs_is_a_valid_policy() -> None:
    docs = (REPO_ROOT / "docs" / "policy.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", docs, flags=re.DOTALL)
    assert len(blocks) >= 3
    for block in blocks:
        parse_policy(block, source="docs/policy.md")
