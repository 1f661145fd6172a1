"""torch weight names, hub specs and the client shim's URL mapping: pure functions against torch's rules."""

from __future__ import annotations

import re
import urllib.request
import warnings
from pathlib import Path

import pytest
import torch.hub
from hypothesis import given
from hypothesis import strategies as st

from proxy.errors import BadRequest
from proxy.models import Verdict, VerdictStatus
from proxy.torch_command import weight_names
from proxy.upstreams.github import HubSpec, match_ref, parse_hub_spec
from proxy.upstreams.torch import TORCH_HASH_RE, parse_weight_path, torch_hash_prefix, weight_meta, weight_ref
from proxy.web.torch import reason_phrase, verdict_reason

with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # imported without HUBGATE_URL: nothing installed
    from proxy import torch_redirect


def test_hash_regex_is_torchs() -> None:
    assert TORCH_HASH_RE.pattern == torch.hub.HASH_REGEX.pattern


@given(st.text(alphabet="abcdef0123456789-_.xyzp", max_size=30))
def test_prefix_matches_what_torch_would_check(name: str) -> None:
    match = re.search(torch.hub.HASH_REGEX, name)
    expected = match.group(1) if match and match.group(1) else None
    assert torch_hash_prefix(name) == expected


@pytest.mark.parametrize(
    ("path", "basename", "prefix", "hint"),
    [
        ("resnet18-f37072fd.pth", "resnet18-f37072fd.pth", "f37072fd", None),
        (
            "mnasnet0.5_top1_67.823-3ffadce67e.pth",
            "mnasnet0.5_top1_67.823-3ffadce67e.pth",
            "3ffadce67e",
            None,
        ),
        ("quantized/resnet18_fbgemm_16fa66dd.pth", "resnet18_fbgemm_16fa66dd.pth", None, "16fa66dd"),
        (
            "quantized/mobilenet_v3_large_qnnpack-5bcacf28.pth",
            "mobilenet_v3_large_qnnpack-5bcacf28.pth",
            "5bcacf28",
            None,
        ),
        ("x-.pth", "x-.pth", None, None),  # torch passes an empty prefix trivially: treated as unchecked
        ("plain.pth", "plain.pth", None, None),
    ],
)
def test_parse_weight_path(path: str, basename: str, prefix: str | None, hint: str | None) -> None:
    name = parse_weight_path(path)
    assert (name.basename, name.hash_prefix, name.unchecked_hint) == (basename, prefix, hint)
    assert name.checked_by_torch is (prefix is not None)
    assert (name.warning is None) is (prefix is not None)
    assert weight_meta(name).sha256_prefix == prefix
    assert weight_ref(name).path == f"models/{path}"
    assert weight_ref(name).source == "torch"


def test_artifact_id_is_per_path() -> None:
    a = weight_ref(parse_weight_path("a-12345678.pth")).artifact_id
    b = weight_ref(parse_weight_path("quantized/a-12345678.pth")).artifact_id
    assert a != b and len(a) == 12


@pytest.mark.parametrize("path", ["", "/etc/passwd", "../x.pth", "a/../b.pth", "a//b.pth", "a\\b.pth", "a/./b", ".x"])
def test_bad_weight_paths(path: str) -> None:
    with pytest.raises(BadRequest, match="invalid torch weight path"):
        parse_weight_path(path)


def test_hub_spec() -> None:
    spec = parse_hub_spec("pytorch/vision:v0.10.0")
    assert spec == HubSpec("pytorch", "vision", "v0.10.0")
    assert spec.dir_name == "pytorch_vision_v0.10.0"
    assert spec.trusted_name == "pytorch_vision"
    assert parse_hub_spec("o/r:release/1.0").dir_name == "o_r_release_1.0"
    assert str(spec) == "pytorch/vision:v0.10.0"


@pytest.mark.parametrize(
    ("text", "why"),
    [("o/r", "needs a ref"), ("o/r:", "needs a ref"), ("o:r", "not owner/repo"),
     ("o/r/x:main", "not owner/repo"), ("o/r:../x", "invalid git ref"), ("o/..:main", "invalid GitHub"),
     ("o/r:a b", "invalid git ref")],
)  # fmt: skip
def test_bad_hub_specs(text: str, why: str) -> None:
    with pytest.raises(BadRequest, match=why):
        parse_hub_spec(text)


def test_match_ref_follows_torch() -> None:
    heads = [
        {"name": "main", "commit": {"sha": "a" * 40}},
        {"name": "dev", "commit": {"sha": "b" * 39 + "c"}},
    ]
    assert match_ref("main", heads) == "a" * 40
    assert match_ref("bbbb", heads) == "b" * 39 + "c"  # a sha prefix of a head, as torch accepts
    assert match_ref("nope", heads) is None
    assert match_ref("main", [{"name": "main", "commit": {"sha": "not-a-sha"}}]) is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://download.pytorch.org/models/r-f37072fd.pth", "http://hg:8080/torch/models/r-f37072fd.pth"),
        ("https://github.com/o/r/zipball/main", "http://hg:8080/torch/github/o/r/zipball/main"),
        ("https://api.github.com/repos/o/r/branches?per_page=100&page=1",
         "http://hg:8080/torch/github-api/repos/o/r/branches?per_page=100&page=1"),
        ("https://codeload.github.com/o/r/legacy.zip/refs/heads/main",
         "http://hg:8080/torch/codeload/o/r/legacy.zip/refs/heads/main"),
        ("https://example.com/models/x.pth", None),
        ("https://download.pytorch.org.evil.com/models/x.pth", None),
        ("http://download.pytorch.org/models/x.pth", None),
    ],
)  # fmt: skip
def test_shim_rewrite(url: str, expected: str | None) -> None:
    assert torch_redirect.rewrite(url, "http://hg:8080/") == expected


def test_shim_handler_rewrites_request_and_drops_github_token() -> None:
    handler = torch_redirect.HubgateRedirectHandler("http://127.0.0.1:9")
    req = urllib.request.Request("https://api.github.com/repos/o/r/tags", headers={"Authorization": "token x"})
    req = handler.https_request(req)
    assert req.full_url == "http://127.0.0.1:9/torch/github-api/repos/o/r/tags"
    assert req.type == "http" and req.host == "127.0.0.1:9"
    assert not req.has_header("Authorization")
    with pytest.raises(ValueError, match="http"):
        torch_redirect.HubgateRedirectHandler("127.0.0.1:9")


def test_shim_install_and_uninstall() -> None:
    before = urllib.request._opener
    opener = torch_redirect.install("http://127.0.0.1:9")
    try:
        assert urllib.request._opener is opener
    finally:
        torch_redirect.uninstall()
    assert urllib.request._opener is None or urllib.request._opener is before


def _verdict(status: VerdictStatus, reasons: list[str], **kw: str) -> Verdict:
    return Verdict(
        artifact_id="abcdef012345", status=status, reasons=reasons, sha256="0" * 64, size=1,
        source="torch", repo_id="download.pytorch.org", commit="-", path="models/evil-1234abcd.pth", **kw,
    )  # fmt: skip


def test_reason_phrase_is_short_ascii_and_names_the_artifact() -> None:
    long = "models/evil-1234abcd.pth: hubgate found imports posix.system (code execution) [pickle.x at data.pkl@1]"
    phrase = verdict_reason(
        _verdict(VerdictStatus.BLOCKED, [f"{long} (rule scan.critical) (rule scan.critical)", "b", "c\u2013d"])
    )
    assert phrase == (
        "hubgate blocked: hubgate found imports posix.system (code execution) (+2 more) (artifact abcdef012345)"
    )
    huge = verdict_reason(_verdict(VerdictStatus.QUARANTINED, ["\u00e9" * 500]))
    assert huge.isascii() and len(huge) < 220 and huge.endswith("... (artifact abcdef012345)")
    rejected = _verdict(VerdictStatus.REJECTED, ["x"], admin_by="alice", admin_reason="typosquat")
    assert verdict_reason(rejected) == "hubgate rejected: by alice: typosquat (artifact abcdef012345)"
    for status in VerdictStatus:
        assert verdict_reason(_verdict(status, [])).startswith(f"hubgate {status.value}: ")
    assert reason_phrase("hubgate: x names hash prefix 1 but its sha256 is 2; nothing was kept") == (
        "hubgate x names hash prefix 1 but its sha256 is 2; nothing was kept"
    )


def test_mirror_command_accepts_names_urls_and_files(tmp_path: Path) -> None:
    listing = tmp_path / "models.txt"
    listing.write_text("# torchvision\nresnet18-f37072fd.pth  # v1\n\n/models/quantized/r_fbgemm_16fa66dd.pth\n")
    names = weight_names([str(listing), "https://download.pytorch.org/models/vit_b_16-c867db91.pth", "x-1234.pt"])
    assert [n.path for n in names] == [
        "resnet18-f37072fd.pth", "quantized/r_fbgemm_16fa66dd.pth", "vit_b_16-c867db91.pth", "x-1234.pt",
    ]  # fmt: skip
    with pytest.raises(BadRequest):
        weight_names(["https://download.pytorch.org/models/../etc/passwd"])
