"""Prefetch: `hubgate vet` and `POST /admin/api/vet` fetch and vet a repo through the running server."""

from __future__ import annotations

import io
import json
import pickle
import time
from pathlib import Path

from tests.fakes.hf_hub import FakeHub
from tests.integration.http import request
from tests.integration.test_pipeline_http import Payload, add_model, safetensors_bytes
from tests.integration.test_waivers import api


def test_vet_command_prefetches_and_prints_a_verdict_table(make_hubgate, fake_hub: FakeHub, tmp_path: Path) -> None:
    buf = io.BytesIO()
    pickle.dump({"w": Payload(tmp_path / "ran")}, buf, protocol=2)
    weights = safetensors_bytes()
    add_model(
        fake_hub,
        **{
            "model.safetensors": weights,
            "pytorch_model.bin": buf.getvalue(),
            "config.json": b'{"model_type": "bert"}',
            "notes/big.onnx": b"x" * 100,
        },
    )
    gate = make_hubgate(hf_upstream=fake_hub.url)
    done = gate.cli("vet", "acme/model", "--exclude", "notes/*", "--json")
    assert done.returncode == 1, done.stderr  # one file is refused
    job = json.loads(done.stdout)
    assert job["state"] == "done" and job["total"] == job["done"] == 5  # 3 files + README.md + .gitattributes
    files = {f["path"]: f for f in job["files"]}
    assert "notes/big.onnx" not in files
    assert files["model.safetensors"]["status"] == "approved" and files["model.safetensors"]["served"]
    assert files["pytorch_model.bin"]["status"] == "blocked" and not files["pytorch_model.bin"]["served"]
    assert any("os" in r for r in files["pytorch_model.bin"]["reasons"])
    assert not (tmp_path / "ran").exists()

    # ahead of use: the client's first request is answered from the vetted cache, not the upstream
    cdn_before = fake_hub.count("GET", origin="cdn")
    answer = request("GET", f"{gate.url}/acme/model/resolve/main/model.safetensors")
    assert answer.status == 200 and answer.body == weights
    assert fake_hub.count("GET", origin="cdn") == cdn_before

    table = gate.cli("vet", "acme/model", "--include", "*.safetensors", "config.json")
    assert table.returncode == 0, table.stderr
    assert "model.safetensors" in table.stdout and "approved" in table.stdout
    assert "pytorch_model.bin" not in table.stdout


def test_vet_api_returns_a_job_any_replica_can_answer(make_hubgate, fake_hub: FakeHub) -> None:
    commit = add_model(fake_hub)
    first = make_hubgate(hf_upstream=fake_hub.url)
    second = make_hubgate(hf_upstream=fake_hub.url)  # same Redis and prefix: another replica
    started = api(first, "POST", "/admin/api/vet", {"repo": "acme/model", "include": ["*.json"]})
    assert started.status == 202, started.body
    job_id = started.json()["id"]
    deadline = time.monotonic() + 30
    while (job := api(second, "GET", f"/admin/api/vet/{job_id}").json())["state"] not in ("done", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert job["state"] == "done" and job["commit"] == commit
    assert [f["path"] for f in job["files"]] == ["config.json"] and job["files"][0]["status"] == "approved"
    audit = first.call(first.store.read_audit(event="vet-job"))
    assert audit[0]["job"] == job_id and audit[0]["actor"] == "admin:alice"

    assert api(first, "GET", "/admin/api/vet/vnope").status == 404
    assert api(first, "POST", "/admin/api/vet", {"repo": "not a repo"}).status == 400
    assert api(first, "POST", "/admin/api/vet", {"repo": "acme/model", "include": "*.json"}).status == 400
    assert request("POST", f"{first.url}/admin/api/vet", body=b"{}").status == 401


def test_vet_of_a_missing_repo_fails_with_a_message(make_hubgate, fake_hub: FakeHub) -> None:
    gate = make_hubgate(hf_upstream=fake_hub.url)
    result = gate.cli("vet", "acme/absent")
    assert result.returncode == 2
    assert "acme/absent" in " ".join(result.stderr.split())
