"""The README and docs/ stay true: policy examples parse, every `hubgate ...` command line they show is accepted
by the real argument parser, relative links resolve, and config/hubgate.toml lists every setting with its
default."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from proxy.cli import build_parser
from proxy.policy import parse_policy
from proxy.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
# A shell prompt (`outside$ `) or env assignments (`HUBGATE_OFFLINE=1 `) may precede the command.
COMMAND_LINE = re.compile(r"^(?:[a-z]+\$\s+)?(?:[A-Z_]+=\S+\s+)*hubgate\s+(?P<args>.*)$")


def _blocks(path: Path, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", path.read_text(), re.S)


def _command_lines(path: Path) -> list[str]:
    """Every `hubgate ...` line of the sh/console blocks, continuation lines joined, comments dropped."""
    lines: list[str] = []
    for block in _blocks(path, "sh") + _blocks(path, "console"):
        for line in block.replace("\\\n", " ").splitlines():
            match = COMMAND_LINE.match(line.strip())
            if match:
                lines.append(match["args"])
    return lines


def _subcommands() -> dict[str, Any]:
    choices: dict[str, Any] = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr,assignment]
    return choices


def test_readme_policy_example_parses() -> None:
    blocks = _blocks(README, "toml")
    assert blocks, "the README shows a policy file"
    for block in blocks:
        parse_policy(block, "README.md")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_toml_block_in_the_docs_is_a_valid_policy(doc: Path) -> None:
    for block in _blocks(doc, "toml"):
        parse_policy(block, doc.name)


def test_readme_commands_exist() -> None:
    text = README.read_text()
    shell = "\n".join(_blocks(README, "sh"))
    commands = set(re.findall(r"^hubgate ([a-z-]+)", shell, re.M)) | set(re.findall(r"`hubgate ([a-z-]+)", text))
    assert commands, "the README shows commands"
    assert commands <= set(_subcommands()), commands - set(_subcommands())


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_command_line_in_the_docs_parses(doc: Path) -> None:
    """Subcommands, flags and required arguments as the docs show them; placeholders stand in for values."""
    lines = _command_lines(doc)
    if doc.name in ("README.md", "admin.md", "airgap.md", "pytorch.md", "policy.md"):
        assert lines, f"{doc.name} shows hubgate commands"
    for args in lines:
        argv = shlex.split(args, comments=True)
        try:
            build_parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"{doc.name}: `hubgate {args}` is not a valid command line")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_inline_commands_in_the_docs_exist(doc: Path) -> None:
    named = set(re.findall(r"`hubgate ([a-z][a-z-]*)", doc.read_text()))
    assert named <= set(_subcommands()), named - set(_subcommands())


def test_refused_download_sample_has_the_real_shape() -> None:
    """The README's sample is what huggingface_hub prints for hubgate's 403 (see pipeline.refusal)."""
    text = README.read_text()
    sample = text[text.index("### What a refused download looks like") :].split("```")[1]
    assert "huggingface_hub.errors.GatedRepoError: 403 Client Error." in sample
    last = sample.strip().splitlines()[-1]
    found = re.search(
        r"\(artifact ([0-9a-f]{12})\); if this is a false positive, ask an admin: hubgate approve (\w+)", last
    )
    assert last.startswith("hubgate: blocked by policy: ") and found and found[1] == found[2], last


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(doc: Path) -> None:
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
        assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"


def test_hubgate_toml_lists_every_setting_with_its_default() -> None:
    text = (ROOT / "config" / "hubgate.toml").read_text()
    listed: dict[str, Any] = {}
    for line in text.splitlines():
        match = re.match(r"^# ([a-z_]+) = (.*?)(?:\s+#.*)?$", line)
        if match:
            value = match[2]
            listed[match[1]] = None if value == "..." else tomllib.loads(f"v = {value}")["v"]
    assert set(listed) == set(Settings.model_fields), set(Settings.model_fields) ^ set(listed)
    for key, value in listed.items():
        default = Settings.model_fields[key].get_default(call_default_factory=True)
        if key in ("redis_url", "webhooks", "hf_token", "admin_token"):  # examples, not defaults (unset/empty)
            continue
        annotation: Any = Settings.model_fields[key].annotation
        assert TypeAdapter(annotation).validate_python(value) == default, (key, value)


def test_shipped_policy_scope_example_parses() -> None:
    """config/policy.toml ends with a commented [[scope]] example; uncommented, it must be valid."""
    text = (ROOT / "config" / "policy.toml").read_text()
    example = "\n".join(line.removeprefix("# ") for line in text[text.index("# [[scope]]") :].splitlines())
    policy = parse_policy(text + "\n" + example, "policy.toml")
    assert policy.scope and policy.scope[0].match == ("my-org/*", "partner-org/special-model")
