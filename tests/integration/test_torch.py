"""PyTorch Hub end to end: real torch 2.13 against hubgate against a fake download.pytorch.org and GitHub.

Weights through `/torch/models/`, refusals as torch shows them, hub repos through the client shim with the
admin's approval, and the TORCH_HOME mirror loaded with the network blocked (an audit hook in a subprocess
raises on any socket or urllib event, and the test asserts none happened).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.hub

from proxy.upstreams.github import archive_ref
from tests.fakes.torch_upstream import (
    FakePyTorch,
    Marker,
    hashed_name,
    hubconf,
    malicious_pth,
    running,
    state_dict_bytes,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
ORIGINAL = "https://download.pytorch.org/models/"
pytestmark = pytest.mark.slow

# Runs in a child process: every network attempt raises (and is counted) before it can happen.
NO_NETWORK = textwrap.dedent(
    """
    import json, sys
    attempts = []
    def hook(event, args):
        if event.startswith("socket.") or event == "urllib.Request":
            attempts.append(event)
            raise RuntimeError(f"network blocked: {event} {args[:1]!r}")
    sys.addaudithook(hook)
    """
)


@pytest.fixture
def fake_torch() -> Iterator[FakePyTorch]:
    with running(FakePyTorch()) as fake:
        yield fake


@pytest.fixture
def tiny(fake_torch: FakePyTorch) -> tuple[str, bytes]:
    body = state_dict_bytes(3)
    name = hashed_name("tiny", body)
    fake_torch.models[name] = body
    return name, body


# download.pytorch.org publishes no license metadata, so the shipped policy holds its files for an admin
# (license.missing); docs/pytorch.md recommends this scope once legal has reviewed torchvision's weights.
TORCH_SCOPE = """
[[scope]]
match = ["download.pytorch.org"]
note = "torchvision weights: terms reviewed by legal"
license.missing = "allow"
"""


def _gate(make_hubgate: Any, fake: FakePyTorch, tmp_path: Path, *, scope: bool = True) -> Any:
    policy = tmp_path / "policy.toml"
    policy.write_text((REPO_ROOT / "config" / "policy.toml").read_text() + (TORCH_SCOPE if scope else ""))
    return make_hubgate(torch_upstream=fake.url, github_upstream=fake.url, github_api_upstream=fake.url, policy=policy)


def _http_error(url: str, tmp_path: Path) -> urllib.error.HTTPError:
    with pytest.raises(urllib.error.HTTPError) as info:
        torch.hub.load_state_dict_from_url(url, model_dir=str(tmp_path / "cache"), check_hash=True)
    return info.value


def _child(code: str, env: dict[str, str], timeout: float = 120) -> dict[str, Any]:
    """Run `code` (which prints one JSON line last) in a fresh interpreter; returns that JSON."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("TORCH_", "HUBGATE_", "XDG_"))}
    full_env.update(env)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full_env, cwd=REPO_ROOT, timeout=timeout
    )
    assert done.returncode == 0, f"child failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- weights through /torch/models/ --------------------------------------------------------------


def test_state_dict_loads_through_hubgate(make_hubgate: Any, fake_torch: FakePyTorch, tiny, tmp_path: Path) -> None:
    name, body = tiny
    gate = _gate(make_hubgate, fake_torch, tmp_path)
    state = torch.hub.load_state_dict_from_url(
        f"{gate.url}/torch/models/{name}", model_dir=str(tmp_path / "cache"), check_hash=True
    )
    torch.manual_seed(3)
    assert torch.equal(state["weight"], torch.nn.Linear(4, 2).weight.detach())
    assert (tmp_path / "cache" / name).read_bytes() == body  # torch's cache name is the upstream basename
    with urllib.request.urlopen(urllib.request.Request(f"{gate.url}/torch/models/{name}", method="HEAD")) as resp:
        assert resp.headers["X-Hubgate-Sha256"] == hashlib.sha256(body).hexdigest()
    assert fake_torch.count(f"GET /models/{name}") == 1  # vetted once, then served from the blob store
    missing = _http_error(f"{gate.url}/torch/models/missing-12345678.pth", tmp_path)
    assert missing.code == 404 and missing.reason.startswith("hubgate upstream answered 404"), missing.reason


def test_malicious_pickle_is_refused_with_the_reason(
    make_hubgate: Any, fake_torch: FakePyTorch, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    zip_body = malicious_pth(str(marker))
    legacy = _legacy(marker, tmp_path)
    gate = _gate(make_hubgate, fake_torch, tmp_path)
    for body, stem in ((zip_body, "evil"), (legacy, "quantized/evil_legacy")):
        name = hashed_name(stem, body)
        fake_torch.models[name] = body
        error = _http_error(f"{gate.url}/torch/models/{name}", tmp_path)
        assert error.code == 403
        assert error.reason.startswith("hubgate blocked") and "(artifact " in error.reason, error.reason
        assert "os.system" in error.reason or "system" in error.reason, error.reason
        assert "HTTP Error 403: hubgate blocked" in str(error)
    assert not marker.exists()


def _legacy(marker: Path, tmp_path: Path) -> bytes:
    """The same payload in torch's legacy (non-zip) serialization."""
    path = tmp_path / "legacy.pth"
    torch.save({"payload": Marker(f"touch {marker}")}, path, _use_new_zipfile_serialization=False)
    return path.read_bytes()


def test_wrong_hash_prefix_is_refused(make_hubgate: Any, fake_torch: FakePyTorch, tmp_path: Path) -> None:
    body = state_dict_bytes(4)
    wrong = "tiny-" + ("0" if hashlib.sha256(body).hexdigest()[0] != "0" else "1") * 8 + ".pth"
    fake_torch.models[wrong] = body
    gate = _gate(make_hubgate, fake_torch, tmp_path)
    error = _http_error(f"{gate.url}/torch/models/{wrong}", tmp_path)
    assert error.code in (403, 502)
    assert "hash prefix" in error.reason, error.reason
    assert not (tmp_path / "cache" / wrong).exists()


def test_torchscript_is_blocked_and_hashless_names_are_flagged(
    make_hubgate: Any, fake_torch: FakePyTorch, tmp_path: Path
) -> None:
    script = tmp_path / "s.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(script))
    body = script.read_bytes()
    fake_torch.models[hashed_name("scripted", body)] = body
    plain = state_dict_bytes(5)
    fake_torch.models["quantized/plain_fbgemm_16fa66dd.pth"] = plain
    gate = _gate(make_hubgate, fake_torch, tmp_path)
    error = _http_error(f"{gate.url}/torch/models/{hashed_name('scripted', body)}", tmp_path)
    assert error.code == 403 and "hubgate" in error.reason
    for _ in range(2):
        with urllib.request.urlopen(f"{gate.url}/torch/models/quantized/plain_fbgemm_16fa66dd.pth") as resp:
            assert resp.read() == plain
            assert "torch's check_hash" in resp.headers["X-Hubgate-Warning"]
            aid = resp.headers["X-Hubgate-Artifact"]
    flagged = gate.call(gate.store.read_audit(event="torch-unchecked-name"))
    assert [(e["artifact_id"], "check_hash" in e["detail"]) for e in flagged] == [(aid, True)]  # once


# ---- hub repos through the shim, held for an admin -----------------------------------------------


def _hub_repo(fake: FakePyTorch, weights_name: str) -> str:
    repo = fake.add_repo("acme", "tinyhub", {"hubconf.py": hubconf(ORIGINAL + weights_name)}, tag="v1")
    for i in range(130):  # two pages of branches, then []: hubgate and torch must both page
        fake.repos[("acme", "tinyhub")].branches[f"b{i:03d}"] = "f" * 40
    return repo


SHIM_LOAD = textwrap.dedent(
    """
    import json, os, urllib.error, torch, torch.hub
    import proxy.torch_redirect
    out = {}
    try:
        model = torch.hub.load("acme/tinyhub:v1", "tiny", trust_repo=True)
        out["weight"] = model.weight.tolist()
    except urllib.error.HTTPError as exc:
        out["error"] = str(exc)
    sd = torch.hub.load_state_dict_from_url(os.environ["WEIGHTS_URL"], check_hash=True)
    out["sd_keys"] = sorted(sd)
    print(json.dumps(out))
    """
)


def test_hub_repo_is_held_then_loads_through_the_shim(
    make_hubgate: Any, fake_torch: FakePyTorch, tiny, tmp_path: Path
) -> None:
    name, _ = tiny
    commit = _hub_repo(fake_torch, name)
    gate = _gate(make_hubgate, fake_torch, tmp_path)
    env = {"HUBGATE_URL": gate.url, "TORCH_HOME": str(tmp_path / "th"), "WEIGHTS_URL": ORIGINAL + name}
    first = _child(SHIM_LOAD, env)
    aid = archive_ref("acme", "tinyhub", commit).artifact_id
    assert "HTTP Error 403: hubgate quarantined" in first["error"] and aid in first["error"], first
    assert first["sd_keys"] == ["bias", "weight"]  # weights via the original URL went through hubgate
    assert fake_torch.count(f"GET /models/{name}") == 1
    with pytest.raises(urllib.error.HTTPError, match="401"):
        urllib.request.urlopen(f"{gate.url}/torch/api/hub/acme/tinyhub/{commit}")
    report = _admin_json(gate, f"/torch/api/hub/acme/tinyhub/{commit}")
    assert report["report"]["has_hubconf"] and report["report"]["entrypoints"] == ["tiny"]
    approved = gate.cli("approve", aid, "--reason", "reviewed hubconf.py")
    assert approved.returncode == 0, approved.stderr
    second = _child(SHIM_LOAD, env)
    torch.manual_seed(3)
    assert second["weight"] == torch.nn.Linear(4, 2).weight.tolist()
    assert fake_torch.count(f"/zipball/{commit}") == 1  # hubgate pinned the tag to its commit and fetched once
    with urllib.request.urlopen(f"{gate.url}/torch/codeload/acme/tinyhub/legacy.zip/refs/heads/main") as resp:
        assert resp.headers["X-Hubgate-Commit"] == commit and resp.read()[:2] == b"PK"


def _admin_json(gate: Any, path: str) -> Any:
    req = urllib.request.Request(gate.url + path, headers={"Authorization": f"Bearer {gate.admin_token}"})
    with urllib.request.urlopen(req) as resp:
        return json.loads(resp.read())


# ---- the TORCH_HOME mirror -----------------------------------------------------------------------

MIRROR_LOAD = NO_NETWORK + textwrap.dedent(
    """
    import os, torch, torch.hub
    sd = torch.hub.load_state_dict_from_url(os.environ["WEIGHTS_URL"], check_hash=True)
    model = torch.hub.load("acme/tinyhub:v1", "tiny")   # default trust_repo="check", no TTY
    print(json.dumps({"sd_keys": sorted(sd), "weight": model.weight.tolist(), "attempts": attempts}))
    """
)


def test_mirror_works_offline_and_verify_catches_a_swap(
    make_hubgate: Any, fake_torch: FakePyTorch, tiny, tmp_path: Path
) -> None:
    name, body = tiny
    commit = _hub_repo(fake_torch, name)
    gate = _gate(make_hubgate, fake_torch, tmp_path)
    mirror = tmp_path / "mirror"
    refused = gate.cli("torch-mirror", str(mirror), "--models", ORIGINAL + name, "--hub", "acme/tinyhub:v1")
    aid = archive_ref("acme", "tinyhub", commit).artifact_id
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "refused  acme/tinyhub:v1: hubgate: quarantined by policy" in refused.stdout and aid in refused.stdout
    assert not (mirror / "hub" / "acme_tinyhub_v1").exists()  # only approved content is written
    assert gate.cli("approve", aid, "--reason", "reviewed").returncode == 0
    built = gate.cli("torch-mirror", str(mirror), "--hub", "acme/tinyhub:v1", "--json")
    assert built.returncode == 0, built.stdout + built.stderr
    assert json.loads(built.stdout)["written"][0]["commit"] == commit
    assert (mirror / "hub" / "checkpoints" / name).read_bytes() == body

    result = _child(MIRROR_LOAD, {"TORCH_HOME": str(mirror), "WEIGHTS_URL": ORIGINAL + name})
    assert result["attempts"] == [] and result["sd_keys"] == ["bias", "weight"]
    torch.manual_seed(3)
    assert result["weight"] == torch.nn.Linear(4, 2).weight.tolist()

    assert gate.cli("torch-mirror", str(mirror), "--verify").returncode == 0
    (mirror / "hub" / "checkpoints" / name).write_bytes(state_dict_bytes(7))  # torch would load it silently
    verify = gate.cli("torch-mirror", str(mirror), "--verify", "--json")
    assert verify.returncode == 1
    problems = json.loads(verify.stdout)["problems"]
    assert [(p["kind"], p["path"]) for p in problems] == [("modified", f"hub/checkpoints/{name}")]
    (mirror / "hub" / "checkpoints" / name).write_bytes(body)
    assert gate.cli("revoke", aid, "--reason", "second thoughts").returncode == 0
    revoked = gate.cli("torch-mirror", str(mirror), "--verify")
    assert revoked.returncode == 1
    assert "not-approved     hub/acme_tinyhub_v1: artifact" in revoked.stdout and "quarantined" in revoked.stdout
