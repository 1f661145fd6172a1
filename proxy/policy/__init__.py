"""Policy: what may be served. A typed policy file, Hub-aware license and card reading, and `decide`.

    load_policy(path) / parse_policy(text) / default_policy()  -> Policy      (loader.py; PolicyError)
    decide(report | None, ref, repo, policy)                     -> Decision    (engine.py; pure)
    licenses_of(repo), base_models_of(repo)                      -> list[str]   (licenses.py)
    front_matter(readme_text) / parse_card(readme_text)                         (card.py)
    check_command(path, as_json=...)                             -> exit code   (command.py)

Nothing here does network or Redis I/O; only the loader and the command read files.
"""

from proxy.policy.card import CardFrontMatter, CardStatus, front_matter, parse_card
from proxy.policy.engine import decide, effective_policy, repo_matches
from proxy.policy.licenses import base_models_of, licenses_of, normalize_license
from proxy.policy.loader import default_policy, load_policy, parse_policy
from proxy.policy.model import Mode, Policy, PolicyError

__all__ = [
    "CardFrontMatter",
    "CardStatus",
    "Mode",
    "Policy",
    "PolicyError",
    "base_models_of",
    "decide",
    "default_policy",
    "effective_policy",
    "front_matter",
    "licenses_of",
    "load_policy",
    "normalize_license",
    "parse_card",
    "parse_policy",
    "repo_matches",
]
