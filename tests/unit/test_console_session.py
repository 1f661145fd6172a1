"""Console session cookies: signed, expiring, bound to the admin token's key."""

from __future__ import annotations

import hashlib
import hmac

from proxy.web.session import SESSION_SECONDS, make_cookie, read_cookie

KEY = hmac.new(b"token", b"hubgate-console-session-v1", hashlib.sha256).digest()


def test_round_trip_and_expiry() -> None:
    value, session = make_cookie(KEY, "alice", 1000.0)
    assert read_cookie(KEY, value, 1001.0) == session
    assert session["n"] == "alice" and len(session["c"]) >= 32
    assert read_cookie(KEY, value, 1000.0 + SESSION_SECONDS) is None


def test_tampering_or_another_key_is_refused() -> None:
    value, _ = make_cookie(KEY, "alice", 1000.0)
    payload, signature = value.split(".")
    other_key = hmac.new(b"rotated", b"hubgate-console-session-v1", hashlib.sha256).digest()
    forged_payload, _ = make_cookie(other_key, "mallory", 1000.0)
    assert read_cookie(other_key, value, 1001.0) is None
    assert read_cookie(KEY, forged_payload.split(".")[0] + "." + signature, 1001.0) is None
    assert read_cookie(KEY, payload, 1001.0) is None
    assert read_cookie(KEY, payload + ".", 1001.0) is None
    assert read_cookie(KEY, "garbage", 1001.0) is None


def test_each_session_gets_its_own_csrf_token() -> None:
    assert make_cookie(KEY, "a", 0.0)[1]["c"] != make_cookie(KEY, "a", 0.0)[1]["c"]
