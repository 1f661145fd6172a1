"""Opt-in client shim: send torch.hub's hard-coded download.pytorch.org and GitHub URLs to hubgate.

torch has no mirror setting (protocol/torch.md §1); every torch.hub request goes through urllib's global
opener. This module installs one (`urllib.request.install_opener`) whose handler rewrites four prefixes
before any connection is made:

    https://download.pytorch.org/   -> <hubgate>/torch/
    https://github.com/             -> <hubgate>/torch/github/
    https://api.github.com/         -> <hubgate>/torch/github-api/
    https://codeload.github.com/    -> <hubgate>/torch/codeload/

Use it from the process that runs torch:

    import proxy.torch_redirect          # installs with $HUBGATE_URL (e.g. http://hubgate:8080)
    # or explicitly:
    from proxy.torch_redirect import install; install("http://hubgate:8080")

or from a `sitecustomize.py` on the interpreter's path with the same two lines. Importing the module is the
opt-in act, which is why it reads `HUBGATE_URL` at import time. It is process-global and covers urllib users
only (all of torch.hub). The file name and hash torch checks come from the *original* URL, so caches are
shared.
"""

from __future__ import annotations

import os
import urllib.request
import warnings

PREFIXES: tuple[tuple[str, str], ...] = (
    ("https://download.pytorch.org/", "/torch/"),
    ("https://github.com/", "/torch/github/"),
    ("https://api.github.com/", "/torch/github-api/"),
    ("https://codeload.github.com/", "/torch/codeload/"),
)
_installed: urllib.request.OpenerDirector | None = None


def rewrite(url: str, base: str) -> str | None:
    """The hubgate URL for `url`, or None when `url` is not one of the four hosts."""
    base = base.rstrip("/")
    for prefix, mount in PREFIXES:
        if url.startswith(prefix):
            return f"{base}{mount}{url[len(prefix) :]}"
    return None


class HubgateRedirectHandler(urllib.request.BaseHandler):
    """Rewrites requests for the four hosts to hubgate before urllib opens a connection."""

    handler_order = 100  # before every other pre-processor

    def __init__(self, base: str) -> None:
        if not base.startswith(("http://", "https://")):
            raise ValueError(f"hubgate URL must be http(s)://host[:port], got {base!r}")
        self.base = base.rstrip("/")

    def _rewrite(self, req: urllib.request.Request) -> urllib.request.Request:
        target = rewrite(req.full_url, self.base)
        if target is not None:
            req.full_url = target  # re-parses type and host: the plain-http handler takes it from here
            # A GITHUB_TOKEN is for GitHub, not for hubgate.
            for name in ("Authorization", "authorization"):
                req.headers.pop(name, None)
                req.unredirected_hdrs.pop(name, None)
        return req

    https_request = _rewrite
    http_request = _rewrite


def install(base: str) -> urllib.request.OpenerDirector:
    """Install a global urllib opener routing the four torch hosts to hubgate at `base`; returns it."""
    global _installed
    opener = urllib.request.build_opener(HubgateRedirectHandler(base))
    urllib.request.install_opener(opener)
    _installed = opener
    return opener


def uninstall() -> None:
    """Restore urllib's default opener (only if ours is the one installed)."""
    global _installed
    # urllib keeps the installed opener private; read it without relying on the name being typed.
    if _installed is not None and getattr(urllib.request, "_opener", None) is _installed:
        urllib.request.install_opener(None)  # None restores the default opener
    _installed = None


_env = os.environ.get("HUBGATE_URL")
if _env:
    install(_env)
else:
    warnings.warn(
        "proxy.torch_redirect imported without HUBGATE_URL: torch.hub URLs are NOT redirected to hubgate;"
        " set HUBGATE_URL or call proxy.torch_redirect.install(url)",
        RuntimeWarning,
        stacklevel=2,
    )
