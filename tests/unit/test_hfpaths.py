"""URL parsing of Hub routes: raw segments decoded one by one, and hostile paths refused precisely."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.errors import BadRequest, HubgateError
from proxy.hfpaths import parse_api, parse_resolve, resolve_url_path
from proxy.models import RepoType


@pytest.mark.parametrize(
    ("raw", "repo_type", "repo_id", "revision", "path"),
    [
        ("/acme/m/resolve/main/config.json", RepoType.MODEL, "acme/m", "main", "config.json"),
        ("/gpt2/resolve/main/config.json", RepoType.MODEL, "gpt2", "main", "config.json"),
        ("/datasets/acme/d/resolve/v1/data/train.csv", RepoType.DATASET, "acme/d", "v1", "data/train.csv"),
        ("/acme/m/resolve/refs%2Fpr%2F1/a%20b%26c.txt", RepoType.MODEL, "acme/m", "refs/pr/1", "a b&c.txt"),
        ("/acme/m/resolve/" + "a" * 40 + "/x/y.bin", RepoType.MODEL, "acme/m", "a" * 40, "x/y.bin"),
    ],
)
def test_parse_resolve(raw: str, repo_type: RepoType, repo_id: str, revision: str, path: str) -> None:
    target = parse_resolve(raw)
    assert target is not None
    assert (target.repo_type, target.repo_id, target.revision, target.path) == (repo_type, repo_id, revision, path)


def test_resolve_url_round_trip() -> None:
    url = resolve_url_path(RepoType.DATASET, "acme/d", "refs/convert/parquet", "notes/a b.txt")
    assert url == "/datasets/acme/d/resolve/refs%2Fconvert%2Fparquet/notes/a%20b.txt"
    target = parse_resolve(url)
    assert target is not None and target.revision == "refs/convert/parquet" and target.path == "notes/a b.txt"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("/acme/m/resolve/main/../../etc/passwd", "'..' segments are refused"),
        ("/acme/m/resolve/main/a/%2E%2E/b", "'..' segments are refused"),
        ("/acme/m/resolve/main/a//b", "empty"),
        ("/acme/m/resolve/main/a%5Cb", "backslashes"),
        ("/acme/m/resolve/main/a%00b", "NUL"),
        ("/ac..me/m/resolve/main/x", "malformed repo id"),
        ("/-acme/m/resolve/main/x", "malformed repo id"),
        ("/acme/m/resolve/main", "expected /{repo}/resolve/{revision}/{path}"),
        ("/acme/m/resolve/ma..in/x", "malformed revision"),
    ],
)
def test_parse_resolve_refuses(raw: str, message: str) -> None:
    with pytest.raises(BadRequest, match=message.replace("{", r"\{").replace("}", r"\}").replace("(", r"\(")):
        parse_resolve(raw)


def test_not_a_resolve_url() -> None:
    assert parse_resolve("/favicon.ico") is None
    assert parse_resolve("/acme/m/blob/main/x") is None


@pytest.mark.parametrize(
    ("rest", "repo_id", "action", "revision", "path"),
    [
        ("acme/m", "acme/m", "", None, ""),
        ("gpt2", "gpt2", "", None, ""),
        ("acme/m/revision/refs%2Fpr%2F2", "acme/m", "revision", "refs/pr/2", ""),
        ("gpt2/revision/main", "gpt2", "revision", "main", ""),
        ("acme/m/tree/main", "acme/m", "tree", "main", ""),
        ("acme/m/tree/main/sub%2Fdir", "acme/m", "tree", "main", "sub/dir"),
        ("acme/m/paths-info/main", "acme/m", "paths-info", "main", ""),
        ("acme/m/refs", "acme/m", "refs", None, ""),
        ("acme/m/xet-read-token/main", "acme/m", "xet-read-token", "main", ""),
    ],
)
def test_parse_api(rest: str, repo_id: str, action: str, revision: str | None, path: str) -> None:
    target = parse_api("models", rest)
    assert (target.repo_id, target.action, target.revision, target.path) == (repo_id, action, revision, path)


def test_parse_api_unknown_type() -> None:
    with pytest.raises(BadRequest, match="unknown repo type"):
        parse_api("kernels", "a/b")


@given(st.text(max_size=200))
def test_parse_resolve_never_crashes(raw: str) -> None:
    try:
        target = parse_resolve("/" + raw)
    except HubgateError:
        return
    if target is not None:
        assert ".." not in target.path.split("/")
        assert not target.path.startswith("/")
