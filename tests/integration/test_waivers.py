"""Waivers end to end: each scope over HTTP, expiry and revocation take effect at once, audit once, reject wins."""

from __future__ import annotations

import io
import json
import pickle
import time

from tests.fakes.hf_hub import FakeHub
from tests.integration.http import get_until_done, request
from tests.integration.test_pipeline_http import NC_CARD, Payload, add_model, safetensors_bytes

ADMIN = {"Authorization": "Bearer test-admin-token-0123456789", "X-Hubgate-Admin": "alice"}


def api(gate, method: str, path: str, body: dict | None = None):  # type: ignore[no-untyped-def]
    data = json.dumps(body).encode() if body is not None else None
    headers = {**ADMIN, "Content-Type": "application/json"} if data else ADMIN
    return request(method, gate.url + path, headers=headers, body=data)


def artifact_of(message: str) -> str:
    return message.split("(artifact ")[1].split(")")[0]


def test_artifact_waiver_serves_until_revoked_and_is_audited_once(make_hubgate, fake_hub: FakeHub) -> None:
    weights = safetensors_bytes()
    add_model(fake_hub, card=None, **{"model.safetensors": weights})  # no license: quarantined
    gate = make_hubgate(hf_upstream=fake_hub.url)
    url = f"{gate.url}/acme/model/resolve/main/model.safetensors"
    held = get_until_done(url)
    assert held.status == 403
    aid = artifact_of(held.header("X-Error-Message") or "")

    made = gate.cli("waive", aid, "--reason", "internal eval only", "--expires", "7d", "--json")
    assert made.returncode == 0, made.stderr
    waiver = json.loads(made.stdout)
    assert waiver["scope"] == "artifact" and waiver["created_by"] == "alice" and waiver["state"] == "active"
    assert waiver["expires_at"] > time.time() + 6 * 86400

    for _ in range(3):
        served = get_until_done(url)
        assert served.status == 200 and served.body == weights
        assert f"served under waiver {waiver['id']}" in (served.header("X-HF-Warning") or "")
    applied = gate.call(gate.store.read_audit(event="served-under-waiver"))
    assert len(applied) == 1 and applied[0]["artifact_id"] == aid and waiver["id"] in applied[0]["detail"]
    stored = gate.call(gate.store.get_verdict(aid))
    assert stored.status.value == "quarantined"  # the waiver never rewrites the verdict

    listed = gate.cli("waivers", "--json")
    assert [w["id"] for w in json.loads(listed.stdout)] == [waiver["id"]]
    missing_reason = api(gate, "DELETE", f"/admin/api/waivers/{waiver['id']}")
    assert missing_reason.status == 400
    revoked = gate.cli("unwaive", waiver["id"], "--reason", "eval finished")
    assert revoked.returncode == 0, revoked.stderr
    again = request("GET", url)
    assert again.status == 403 and "quarantined by policy" in (again.header("X-Error-Message") or "")
    assert json.loads(gate.cli("waivers", "--json").stdout) == []
    everything = json.loads(gate.cli("waivers", "--all", "--json").stdout)
    assert everything[0]["state"] == "revoked" and everything[0]["revoked_by"] == "alice"
    events = [e["event"] for e in gate.call(gate.store.read_audit())]
    assert "waive" in events and "unwaive" in events
    assert fake_hub.count("GET", origin="cdn") == 1


def test_repo_waiver_fetches_and_scans_an_early_blocked_file(make_hubgate, fake_hub: FakeHub) -> None:
    weights = safetensors_bytes()
    add_model(fake_hub, card=NC_CARD, **{"model.safetensors": weights})
    gate = make_hubgate(hf_upstream=fake_hub.url)
    url = f"{gate.url}/acme/model/resolve/main/model.safetensors"
    blocked = get_until_done(url)
    assert blocked.status == 403 and "cc-by-nc-4.0" in (blocked.header("X-Error-Message") or "")
    assert fake_hub.count("GET", origin="cdn") == 0  # refused on the license alone
    aid = artifact_of(blocked.header("X-Error-Message") or "")

    made = api(gate, "POST", "/admin/api/waivers", {"target": "acme/model", "reason": "research licence signed"})
    assert made.status == 201, made.body
    assert made.json()["scope"] == "repo"
    served = get_until_done(url)
    assert served.status == 200 and served.body == weights
    assert fake_hub.count("GET", origin="cdn") == 1  # the bytes were fetched for the waiver...
    verdict = gate.call(gate.store.get_verdict(aid))
    assert verdict.status.value == "blocked" and verdict.scan_verdict is not None  # ...and scanned
    assert gate.call(gate.store.get_scan(verdict.sha256)) is not None
    # a dataset of the same name is not covered (repo type aware)
    fake_hub.add_repo("acme/model", files={"data.csv": b"a,b\n1,2\n"}, card=NC_CARD, repo_type="dataset")
    other = get_until_done(f"{gate.url}/datasets/acme/model/resolve/main/data.csv")
    assert other.status == 403


def test_repo_waiver_does_not_cover_a_malicious_pickle_but_a_sha256_waiver_does(
    make_hubgate, fake_hub: FakeHub, tmp_path
) -> None:
    buf = io.BytesIO()
    pickle.dump({"w": Payload(tmp_path / "ran")}, buf, protocol=2)
    add_model(fake_hub, card=NC_CARD, **{"pytorch_model.bin": buf.getvalue()})
    gate = make_hubgate(hf_upstream=fake_hub.url)
    url = f"{gate.url}/acme/model/resolve/main/pytorch_model.bin"
    assert gate.cli("waive", "acme/model", "--reason", "licence ok").returncode == 0
    refused = get_until_done(url)
    assert refused.status == 403 and "os" in (refused.header("X-Error-Message") or "")
    aid = artifact_of(refused.header("X-Error-Message") or "")
    sha = gate.call(gate.store.get_verdict(aid)).sha256
    assert sha and not (tmp_path / "ran").exists()
    assert gate.cli("waive", sha, "--reason", "known test fixture, never loaded").returncode == 0
    assert get_until_done(url).status == 200


def test_commit_waiver_and_expiry_stop_serving_at_once(make_hubgate, fake_hub: FakeHub) -> None:
    commit = add_model(fake_hub, card=None)
    gate = make_hubgate(hf_upstream=fake_hub.url)
    url = f"{gate.url}/acme/model/resolve/main/model.safetensors"
    config = f"{gate.url}/acme/model/resolve/main/config.json"
    assert get_until_done(url).status == 403 and get_until_done(config).status == 403  # both vetted and held
    made = api(
        gate, "POST", "/admin/api/waivers", {"target": f"acme/model@{commit[:12]}", "reason": "demo", "expires": "3s"}
    )
    assert made.status == 201, made.body
    expires = made.json()["expires_at"]
    assert request("GET", url).status == 200 and request("GET", config).status == 200
    assert time.time() < expires, "the machine was too slow to observe the waiver before it expired"
    time.sleep(max(0.0, expires - time.time()) + 0.1)
    assert request("GET", url).status == 403 and request("GET", config).status == 403
    assert json.loads(gate.cli("waivers", "--all", "--json").stdout)[0]["state"] == "expired"


def test_reject_beats_waivers_and_policy(make_hubgate, fake_hub: FakeHub) -> None:
    add_model(fake_hub, card=None)
    gate = make_hubgate(hf_upstream=fake_hub.url)
    url = f"{gate.url}/acme/model/resolve/main/model.safetensors"
    aid = artifact_of(get_until_done(url).header("X-Error-Message") or "")
    assert gate.cli("reject", aid, "--reason", "unknown provenance").returncode == 0
    refused = gate.cli("waive", aid, "--reason", "try anyway")
    assert refused.returncode == 2 and "does not override a rejection" in " ".join(refused.stderr.split())
    assert gate.cli("waive", "acme/model", "--reason", "whole repo").returncode == 0
    answer = request("GET", url)
    assert answer.status == 403 and "rejected by alice" in (answer.header("X-Error-Message") or "")


def test_bad_waiver_requests_are_explained(make_hubgate, fake_hub: FakeHub) -> None:
    gate = make_hubgate(hf_upstream=fake_hub.url)
    cases = [
        ({"target": "acme/model", "reason": ""}, "reason"),
        ({"target": "not a target!", "reason": "x"}, "cannot tell"),
        ({"target": "acme/model", "reason": "x", "expires": "2001-01-01"}, "in the past"),
        ({"target": "0123456789ab", "reason": "x"}, "no artifact"),
        ({"target": "acme/model", "reason": "x", "scope": "sha256"}, "not a sha256 one"),
    ]
    for body, words in cases:
        answer = api(gate, "POST", "/admin/api/waivers", body)
        assert answer.status in (400, 404) and words in (answer.header("X-Error-Message") or ""), (body, answer)
    assert request("GET", gate.url + "/admin/api/waivers").status == 401
    assert api(gate, "DELETE", "/admin/api/waivers/wnope", {"reason": "x"}).status == 404


def test_cli_shows_what_the_console_shows(make_hubgate, fake_hub: FakeHub) -> None:
    add_model(fake_hub, card=NC_CARD)
    gate = make_hubgate(hf_upstream=fake_hub.url)
    aid = artifact_of(
        get_until_done(f"{gate.url}/acme/model/resolve/main/model.safetensors").header("X-Error-Message") or ""
    )
    assert gate.cli("waive", aid, "--reason", "legal ok").returncode == 0
    assert get_until_done(f"{gate.url}/acme/model/resolve/main/model.safetensors").status == 200
    shown = json.loads(gate.cli("verdict", aid, "--json").stdout)
    assert shown["card"]["licenses"] == ["cc-by-nc-4.0"] and shown["waivers"][0]["reason"] == "legal ok"
    assert [e["event"] for e in shown["history"]][-1] == "served-under-waiver"
    text = gate.cli("verdict", aid).stdout
    assert "cc-by-nc-4.0" in text and "legal ok" in text
    by_alice = json.loads(gate.cli("audit", "--actor", "alice", "--event", "waive", "--json").stdout)
    assert len(by_alice) == 1 and by_alice[0]["actor"] == "admin:alice"
    assert json.loads(gate.cli("audit", "--actor", "bob", "--json").stdout) == []
