"""End to end: the real huggingface_hub and transformers clients, with `HF_ENDPOINT` = hubgate, in front of
the fake Hub (tests/fakes/hf_hub.py). Nothing on the client side changes but the endpoint.

Every test also checks that the client never talked to the fake Hub or its CDN itself: the fake's log must
hold no request with the client's user agent (`hf_hub/<version>`), only hubgate's.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save

from tests.clients import ClientResult, run_client
from tests.fakes.hf_hub import VALID_TOKEN, FakeHub
from tests.fakes.minilm import MINILM_REPO, add_minilm, minilm_dir

pytestmark = pytest.mark.slow

APACHE = "---\nlicense: apache-2.0\n---\n# A model\n"
NON_COMMERCIAL = "---\nlicense: cc-by-nc-4.0\n---\n# Research only\n"
NO_LICENSE = "---\ntags:\n- demo\n---\n# Nobody said\n"


def safetensors_bytes(rows: int) -> bytes:
    return save({"weight": np.arange(rows * 16, dtype=np.float32).reshape(rows, 16)})


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_client_only_talked_to_hubgate(hub: FakeHub) -> None:
    direct = [f"{r.method} {r.origin}{r.path}" for r in hub.log if "hf_hub/" in r.headers.get("user-agent", "")]
    assert direct == [], f"the client bypassed hubgate: {direct}"


def checked(result: ClientResult) -> dict[str, Any]:
    assert result.ok, result.output
    return result.data


class Payload:
    """A `__reduce__` payload that would create a marker file if anything ever unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_hf_hub_download_branch_tag_commit_and_dataset(make_hubgate: Any, fake_hub: FakeHub) -> None:
    v1, v2 = safetensors_bytes(100), safetensors_bytes(200)
    first, second = fake_hub.add_repo(
        "acme/model",
        files={"config.json": b'{"v": 1}', "model.safetensors": v1},
        card=APACHE,
        extra_commits=[{"config.json": b'{"v": 2}', "model.safetensors": v2}],
    )
    fake_hub.tag("acme/model", "v1.0", first)
    fake_hub.add_repo(
        "acme/data", repo_type="dataset", files={"train.csv": b"a,b\n1,2\n"}, card="---\nlicense: cc-by-4.0\n---\n"
    )
    gate = make_hubgate(hf_upstream=fake_hub.url)
    snippet = f"""
        import hashlib
        from huggingface_hub import hf_hub_download as get
        digest = lambda *a, **k: hashlib.sha256(open(get(*a, **k), "rb").read()).hexdigest()
        text = lambda *a, **k: open(get(*a, **k)).read()
        emit(branch=text("acme/model", "config.json"), tag=text("acme/model", "config.json", revision="v1.0"),
             commit=text("acme/model", "config.json", revision="{first}"),
             lfs_main=digest("acme/model", "model.safetensors"),
             lfs_tag=digest("acme/model", "model.safetensors", revision="v1.0"),
             csv=text("acme/data", "train.csv", repo_type="dataset"))
        """
    d = checked(run_client(snippet, endpoint=gate.url))
    assert (d["branch"], d["tag"], d["commit"], d["csv"]) == ('{"v": 2}', '{"v": 1}', '{"v": 1}', "a,b\n1,2\n")
    assert (d["lfs_main"], d["lfs_tag"]) == (sha256(v2), sha256(v1))
    assert_client_only_talked_to_hubgate(fake_hub)

    # A second client with an empty cache is served from hubgate's vetted cache: no new upstream download.
    cdn_before = fake_hub.count("GET", origin="cdn")
    again = checked(run_client(snippet, endpoint=gate.url))
    assert again == d
    assert fake_hub.count("GET", origin="cdn") == cdn_before == 2
    assert second == fake_hub.repo("acme/model").branches["main"]


def test_snapshot_download_pagination_and_model_info(make_hubgate: Any, fake_hub: FakeHub) -> None:
    fake_hub.page_size = 2  # upstream Link pages must be rewritten to hubgate
    files = {f"configs/c{i}.json": json.dumps({"i": i}).encode() for i in range(5)}
    files["model.safetensors"] = safetensors_bytes(50)
    [commit] = fake_hub.add_repo("acme/paged", files=files, card=APACHE, hub_tags=["demo"])
    gate = make_hubgate(hf_upstream=fake_hub.url)
    d = checked(
        run_client(
            """
            import os
            from huggingface_hub import HfApi, snapshot_download
            root = snapshot_download("acme/paged")
            got = sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)
            info = HfApi().model_info("acme/paged")
            emit(root=root, files=got, sha=info.sha, license=info.card_data.license, tags=info.tags,
                 siblings=sorted(s.rfilename for s in info.siblings),
                 listed=sorted(HfApi().list_repo_files("acme/paged")))
            """,
            endpoint=gate.url,
        )
    )
    expected = sorted([*files, ".gitattributes", "README.md"])
    assert d["root"].endswith(commit) and d["files"] == expected
    assert d["sha"] == commit and d["license"] == "apache-2.0" and "license:apache-2.0" in d["tags"]
    assert d["siblings"] == expected == d["listed"]
    assert fake_hub.count("GET", path_contains="/api/models/acme/paged/tree/") >= 4  # 9 entries, pages of 2
    assert_client_only_talked_to_hubgate(fake_hub)


def test_transformers_loads_minilm_through_hubgate(make_hubgate: Any, fake_hub: FakeHub) -> None:
    add_minilm(fake_hub)
    gate = make_hubgate(hf_upstream=fake_hub.url)
    d = checked(
        run_client(
            f"""
            import torch
            from transformers import AutoModel, AutoTokenizer
            tok = AutoTokenizer.from_pretrained({MINILM_REPO!r})
            model = AutoModel.from_pretrained({MINILM_REPO!r})
            reference = AutoModel.from_pretrained({str(minilm_dir())!r})
            batch = tok(["a vetted sentence embedding"], return_tensors="pt")
            with torch.no_grad():
                got = model(**batch).last_hidden_state.mean(dim=1)
                want = reference(**batch).last_hidden_state.mean(dim=1)
            emit(shape=list(got.shape), same=bool(torch.equal(got, want)), norm=float(got.norm()))
            """,
            endpoint=gate.url,
            timeout=300,
        )
    )
    assert d["shape"] == [1, 384] and d["same"] and d["norm"] > 0
    assert fake_hub.count("GET", origin="cdn", file="model.safetensors", status=200) == 1
    assert_client_only_talked_to_hubgate(fake_hub)


def test_xet_enabled_client_never_touches_xet_storage(make_hubgate: Any, fake_hub: FakeHub) -> None:
    weights = safetensors_bytes(300)
    fake_hub.add_repo("acme/xet", files={"config.json": b"{}", "model.safetensors": weights}, card=APACHE)
    fake_hub.xet = True  # the upstream advertises Xet everywhere: headers, xetHash, read tokens
    gate = make_hubgate(hf_upstream=fake_hub.url)
    d = checked(
        run_client(  # hf_xet is installed and not disabled: the client would use Xet if offered
            """
            import hashlib, os
            import hf_xet
            from huggingface_hub import HfApi, hf_hub_download, snapshot_download
            digest = lambda p: hashlib.sha256(open(p, "rb").read()).hexdigest()
            one = digest(hf_hub_download("acme/xet", "model.safetensors"))
            root = snapshot_download("acme/xet", cache_dir=os.path.join(os.environ["HF_HOME"], "second"))
            tree = [getattr(f, "xet_hash", None) for f in HfApi().list_repo_tree("acme/xet", recursive=True)]
            emit(one=one, snap=digest(os.path.join(root, "model.safetensors")), xet_hashes=tree)
            """,
            endpoint=gate.url,
        )
    )
    assert d["one"] == d["snap"] == sha256(weights)
    assert d["xet_hashes"] == [None] * len(d["xet_hashes"])
    assert fake_hub.xet_accesses() == [], "someone used the upstream's Xet storage"
    assert_client_only_talked_to_hubgate(fake_hub)


def test_malicious_pickle_is_blocked_with_the_reason_in_the_exception(
    make_hubgate: Any, fake_hub: FakeHub, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"state": Payload(marker)}, protocol=2)  # generated here, never committed
    fake_hub.add_repo(
        "evil/model", files={"config.json": b'{"model_type": "bert"}', "pytorch_model.bin": payload}, card=APACHE
    )
    gate = make_hubgate(hf_upstream=fake_hub.url)
    d = checked(
        run_client(
            """
            from huggingface_hub import hf_hub_download
            emit(weights=attempt(hf_hub_download, "evil/model", "pytorch_model.bin"),
                 config=attempt(lambda: open(hf_hub_download("evil/model", "config.json")).read()))
            """,
            endpoint=gate.url,
        )
    )
    blocked = d["weights"]
    assert blocked["type"] == "GatedRepoError", blocked
    assert "hubgate: blocked" in blocked["message"] and "system" in blocked["message"], blocked["message"]
    assert d["config"] == {"ok": True, "value": '{"model_type": "bert"}'}  # a file-level block
    assert not marker.exists()
    assert_client_only_talked_to_hubgate(fake_hub)


def test_non_commercial_license_is_blocked_for_hf_and_transformers(make_hubgate: Any, fake_hub: FakeHub) -> None:
    fake_hub.add_repo(
        "research/nc-model",
        files={"config.json": b'{"model_type": "bert"}', "model.safetensors": safetensors_bytes(10)},
        card=NON_COMMERCIAL,
    )
    gate = make_hubgate(hf_upstream=fake_hub.url)
    d = checked(
        run_client(
            """
            from huggingface_hub import hf_hub_download, snapshot_download
            from transformers import AutoConfig
            emit(file=attempt(hf_hub_download, "research/nc-model", "config.json"),
                 snapshot=attempt(snapshot_download, "research/nc-model"),
                 transformers=attempt(AutoConfig.from_pretrained, "research/nc-model"))
            """,
            endpoint=gate.url,
        )
    )
    for how in ("file", "snapshot", "transformers"):
        outcome = d[how]
        assert not outcome["ok"], (how, outcome)
        assert "cc-by-nc-4.0" in outcome["message"] and "hubgate" in outcome["message"], (how, outcome["message"])
    assert d["file"]["type"] == "GatedRepoError" and d["transformers"]["type"] == "OSError"
    assert_client_only_talked_to_hubgate(fake_hub)


def test_unlicensed_repo_is_quarantined_then_approved_via_the_cli(make_hubgate: Any, fake_hub: FakeHub) -> None:
    config = b'{"model_type": "bert", "hidden_size": 8}'
    fake_hub.add_repo("someone/unlicensed", files={"config.json": config}, card=NO_LICENSE)
    gate = make_hubgate(hf_upstream=fake_hub.url)
    snippet = """
        from huggingface_hub import hf_hub_download
        emit(got=attempt(lambda: open(hf_hub_download("someone/unlicensed", "config.json")).read()))
        """
    first = checked(run_client(snippet, endpoint=gate.url))["got"]
    assert first["type"] == "GatedRepoError", first
    assert "quarantine" in first["message"] and "hubgate approve" in first["message"], first["message"]

    listed = gate.cli("quarantine", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [r for r in json.loads(listed.stdout) if r["repo_id"] == "someone/unlicensed"]
    assert [r["path"] for r in rows] == ["config.json"], rows
    artifact = rows[0]["id"]
    assert artifact in first["message"]  # the client's message names what to approve

    approved = gate.cli("approve", artifact, "--reason", "license checked with the author")
    assert approved.returncode == 0, approved.stderr
    second = checked(run_client(snippet, endpoint=gate.url))["got"]
    assert second == {"ok": True, "value": config.decode()}
    assert fake_hub.count("GET", file="config.json", path_contains="resolve-cache") == 1  # fetched once
    assert_client_only_talked_to_hubgate(fake_hub)


def test_upstream_errors_gated_and_renamed_repos_through_hubgate(make_hubgate: Any, fake_hub: FakeHub) -> None:
    weights = safetensors_bytes(20)
    gated_files = {"config.json": b'{"g": 1}', "model.safetensors": weights}
    fake_hub.add_repo("acme/gated", files=gated_files, card=APACHE, gated=True)
    fake_hub.add_repo("acme/plain", files={"config.json": b"{}"}, card=APACHE)
    fake_hub.add_repo("acme/old-name", files={"config.json": b'{"moved": true}'}, card=APACHE)
    fake_hub.rename("acme/old-name", "acme/new-name")
    with_token = make_hubgate(hf_upstream=fake_hub.url, hf_token=VALID_TOKEN)
    without_token = make_hubgate(hf_upstream=fake_hub.url)
    snippet = """
        import hashlib
        from huggingface_hub import hf_hub_download as get, model_info
        read = lambda *a, **k: open(get(*a, **k), "rb").read()
        emit(no_repo=attempt(get, "acme/nothing", "config.json"),
             no_file=attempt(get, "acme/plain", "nothing.json"),
             no_rev=attempt(get, "acme/plain", "config.json", revision="nothing"),
             gated=attempt(lambda: hashlib.sha256(read("acme/gated", "model.safetensors")).hexdigest()),
             renamed=attempt(lambda: read("acme/old-name", "config.json").decode()),
             renamed_id=attempt(lambda: model_info("acme/old-name").id))
        """
    d = checked(run_client(snippet, endpoint=with_token.url))
    assert d["no_repo"]["type"] == "RepositoryNotFoundError", d["no_repo"]
    assert "EntryNotFoundError" in d["no_file"]["types"], d["no_file"]
    assert d["no_rev"]["type"] == "RevisionNotFoundError", d["no_rev"]
    # hubgate's own token opens the gated repo upstream; the user sent none, and the CDN (which answers
    # 400 to any Authorization header) was reached without it.
    assert d["gated"] == {"ok": True, "value": sha256(weights)}
    assert not any(r.authorized for r in fake_hub.requests(origin="cdn"))
    assert d["renamed"] == {"ok": True, "value": '{"moved": true}'}
    assert d["renamed_id"] == {"ok": True, "value": "acme/new-name"}

    refused = checked(run_client(snippet, endpoint=without_token.url))["gated"]
    assert refused["type"] == "GatedRepoError", refused
    assert_client_only_talked_to_hubgate(fake_hub)
