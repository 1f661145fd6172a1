"""`hubgate policy check [FILE]`: validate a policy file and say what it means, or exactly what is wrong.

Exit 0 when the file is valid, 2 when it is not (or cannot be read). Without FILE, a missing configured file
is not an error: the server then enforces the built-in default, so that is what is checked and summarised.
Errors go to stderr one per line, each `file:line: field: problem`; `--json` prints one object on stdout
either way.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from proxy.models import Action, Severity
from proxy.policy.loader import default_policy, load_policy
from proxy.policy.model import Policy, PolicyError

DEFAULT_POLICY_PATH = Path("config/policy.toml")


def default_policy_path() -> Path:
    """Where the server would read its policy: the `policy` setting (HUBGATE_POLICY), else config/."""
    try:
        from proxy.settings import Settings

        return Settings().policy
    except (ValueError, OSError):  # a broken hubgate.toml must not stop us checking the policy file
        return Path(os.environ.get("HUBGATE_POLICY", str(DEFAULT_POLICY_PATH)))


def summary(policy: Policy) -> list[str]:
    """A few lines an admin can read to confirm the file means what they intended."""
    lic = policy.license
    by_action: dict[Action, list[str]] = {a: [] for a in Action}
    for family, action in policy.format.resolved().items():
        by_action[action].append(family.value)
    formats = "; ".join(f"{a.value} {', '.join(fams)}" for a, fams in by_action.items() if fams)
    scan = ", ".join(f"{s.value} {policy.scan.action_for(s).value}" for s in Severity)
    pub = policy.publisher
    lines = [
        f"license: {len(lic.allow)} allowed, {len(lic.deny)} denied ({lic.deny_action.value}); "
        f"unknown {lic.unknown.value}; missing {lic.missing.value}; lineage {'on' if lic.lineage else 'off'}",
        f"card: {'required' if policy.card.required else 'optional'}"
        + (f"; required fields {', '.join(policy.card.required_fields)}" if policy.card.required_fields else ""),
        f"publisher: {'only ' + ', '.join(pub.allow) if pub.allow else 'any'}"
        + (f"; denied {', '.join(pub.deny)}" if pub.deny else ""),
        f"format: {formats}",
        f"scan: {scan}; error {policy.scan.error.value}; disagreement {policy.scan.disagreement.value}",
    ]
    for i, scope in enumerate(policy.scope):
        note = f" ({scope.note})" if scope.note else ""
        lines.append(f"scope[{i}]: {', '.join(scope.match)}{note}")
    return lines


def check_command(path: Path | None, *, as_json: bool) -> int:
    """Validate `path` (default: the configured policy file). 0 valid, 2 invalid."""
    target = path if path is not None else default_policy_path()
    if path is None and not target.exists():
        # What the server would do: with no policy file it enforces the built-in defaults. Say so, and check those.
        policy = default_policy()
        source = f"{target} (no such file; the server uses the built-in default policy)"
        return _report_valid(policy, source, as_json=as_json)
    if not target.exists():
        if as_json:
            print(json.dumps({"file": str(target), "valid": False, "errors": [f"{target}: no such policy file"]}))
        else:
            print(f"{target}: no such policy file", file=sys.stderr)
        return 2
    try:
        policy = load_policy(target)
    except PolicyError as exc:
        if as_json:
            print(json.dumps({"file": str(target), "valid": False, "errors": exc.errors}))
        else:
            for line in exc.errors:
                print(line, file=sys.stderr)
            print(f"{target}: invalid policy; fix the lines above and run the check again", file=sys.stderr)
        return 2
    return _report_valid(policy, str(target), as_json=as_json)


def _report_valid(policy: Policy, source: str, *, as_json: bool) -> int:
    if as_json:
        out: dict[str, Any] = {
            "file": source,
            "valid": True,
            "hash": policy.hash,
            "mode": policy.mode.value,
            "errors": [],
            "policy": policy.canonical(),
        }
        print(json.dumps(out))
    else:
        scopes = f", {len(policy.scope)} scope(s)" if policy.scope else ""
        print(f"{source}: valid policy (hash {policy.hash}, mode {policy.mode.value}{scopes})")
        for line in summary(policy):
            print(f"  {line}")
    return 0
