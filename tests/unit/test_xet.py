"""The Xet bridge removes every xetHash and Xet link; pagination links survive."""

from __future__ import annotations

from proxy.xet import split_link_header, strip_xet_json


def test_strip_xet_json_at_any_depth() -> None:
    listing = [
        {"type": "file", "path": "m.safetensors", "xetHash": "ab", "lfs": {"oid": "x", "xetHash": "cd"}},
        {"type": "directory", "path": "sub"},
    ]
    stripped = strip_xet_json(listing)
    assert "xetHash" not in str(stripped)
    assert stripped[0]["lfs"] == {"oid": "x"}
    assert listing[0]["xetHash"] == "ab"  # the input is not modified


def test_split_link_header() -> None:
    value = '<https://hub/api/t?cursor=a>; rel="next", <https://cas/auth>; rel="xet-auth"'
    assert split_link_header(value) == [("https://hub/api/t?cursor=a", "next"), ("https://cas/auth", "xet-auth")]
    assert split_link_header("") == []
