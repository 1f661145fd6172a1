"""Console sessions: a signed cookie `payload.signature` holding the admin's name, an expiry and a CSRF token.

The signature is an HMAC keyed by a key derived from the admin token, so rotating the token ends every session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from aiohttp import web

from proxy.web.keys import SETTINGS

COOKIE = "hubgate_session"
SESSION_SECONDS = 8 * 3600


def session_key(request: web.Request) -> bytes | None:
    """The signing key, or None when the admin token (and so the console) is not configured."""
    token = request.app[SETTINGS].admin_token
    if token is None:
        return None
    return hmac.new(token.get_secret_value().encode(), b"hubgate-console-session-v1", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_cookie(key: bytes, name: str, now: float) -> tuple[str, dict[str, Any]]:
    session = {"n": name, "e": int(now + SESSION_SECONDS), "c": secrets.token_urlsafe(24)}
    payload = _b64(json.dumps(session, separators=(",", ":")).encode())
    signature = _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())
    return f"{payload}.{signature}", session


def read_cookie(key: bytes, value: str, now: float) -> dict[str, Any] | None:
    """The session if the cookie is ours, intact and unexpired; None otherwise."""
    payload, _, signature = value.partition(".")
    expected = _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())
    if not signature or not hmac.compare_digest(signature.encode(), expected.encode()):
        return None
    try:
        session = json.loads(_unb64(payload))
    except ValueError:
        return None
    if not isinstance(session, dict) or not isinstance(session.get("e"), int) or session["e"] <= now:
        return None
    return session


def current_session(request: web.Request) -> dict[str, Any] | None:
    key = session_key(request)
    value = request.cookies.get(COOKIE)
    if key is None or not value:
        return None
    return read_cookie(key, value, time.time())
