"""Audit mode: everything is decided and recorded, but served, with an X-HF-Warning that the real
huggingface_hub client prints; an admin's reject is still refused."""

from __future__ import annotations

from pathlib import Path

from tests.clients import run_client
from tests.fakes.hf_hub import FakeHub
from tests.integration.http import get_until_done, request
from tests.integration.test_pipeline_http import NC_CARD, add_model, safetensors_bytes


def test_audit_mode_serves_with_a_warning_the_client_prints(make_hubgate, fake_hub: FakeHub, tmp_path: Path) -> None:
    weights = safetensors_bytes()
    add_model(fake_hub, card=NC_CARD, **{"model.safetensors": weights, "config.json": b'{"model_type": "bert"}'})
    policy = tmp_path / "policy.toml"
    policy.write_text('version = 1\nmode = "audit"\n')
    gate = make_hubgate(hf_upstream=fake_hub.url, policy=policy)

    result = run_client(
        """
        from huggingface_hub import hf_hub_download
        path = hf_hub_download("acme/model", "model.safetensors")
        emit(size=len(open(path, "rb").read()))
        """,
        endpoint=gate.url,
    )
    assert result.ok, result.output
    assert result.data["size"] == len(weights)
    # huggingface_hub logs X-HF-Warning through its logger (stderr by default)
    assert "audit mode: blocked by policy but served" in result.stderr, result.output
    assert "cc-by-nc-4.0" in result.stderr

    verdicts = {v.path: v for v in gate.call(gate.store.list_verdicts())}
    recorded = verdicts["model.safetensors"]
    assert recorded.status.value == "blocked" and recorded.mode == "audit"  # decided and recorded as usual
    assert recorded.scan_verdict is not None  # fetched and scanned although the license alone blocks it
    answer = request("GET", f"{gate.url}/acme/model/resolve/main/model.safetensors")
    assert answer.status == 200 and "audit mode" in (answer.header("X-HF-Warning") or "")

    assert gate.cli("reject", recorded.artifact_id, "--reason", "no, not even in audit mode").returncode == 0
    refused = request("GET", f"{gate.url}/acme/model/resolve/main/model.safetensors")
    assert refused.status == 403 and "rejected by alice" in (refused.header("X-Error-Message") or "")


def test_enforce_mode_has_no_warning_on_approved_files(make_hubgate, fake_hub: FakeHub) -> None:
    add_model(fake_hub)
    gate = make_hubgate(hf_upstream=fake_hub.url)
    answer = get_until_done(f"{gate.url}/acme/model/resolve/main/model.safetensors")
    assert answer.status == 200 and answer.header("X-HF-Warning") is None
