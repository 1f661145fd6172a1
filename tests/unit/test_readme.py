"""The README's examples stay true: its policy file parses, and the commands it names exist."""

from __future__ import annotations

import re
from pathlib import Path

from proxy.cli import build_parser
from proxy.policy import parse_policy

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_policy_example_parses() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", README.read_text(), re.S)
    assert blocks, "the README shows a policy file"
    for block in blocks:
        parse_policy(block, "README.md")


def test_readme_commands_exist() -> None:
    text = README.read_text()
    shell = "\n".join(re.findall(r"```sh\n(.*?)```", text, re.S))
    commands = set(re.findall(r"^hubgate ([a-z-]+)", shell, re.M)) | set(re.findall(r"`hubgate ([a-z-]+)", text))
    choices = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert commands, "the README shows commands"
    assert commands <= set(choices), commands - set(choices)
