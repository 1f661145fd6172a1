"""The policy in force: loaded once, reloadable; a bad file on reload is rejected and the old one stays."""

from __future__ import annotations

from pathlib import Path

from proxy.policy import Policy, PolicyError, default_policy, load_policy


class PolicyState:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.current: Policy = load_policy(path) if path.is_file() else default_policy()
        self.source = str(path) if path.is_file() else "built-in default"

    def reload(self) -> tuple[Policy, Policy]:
        """(old, new); raises PolicyError and keeps the old policy when the file is invalid."""
        old = self.current
        new = load_policy(self.path) if self.path.is_file() else default_policy()
        self.current = new
        self.source = str(self.path) if self.path.is_file() else "built-in default"
        return old, new


__all__ = ["PolicyError", "PolicyState"]
