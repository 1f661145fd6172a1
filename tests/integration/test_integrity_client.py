"""A hash mismatch reaches the real client at once, with hubgate's explanation in the exception text."""

from __future__ import annotations

import time

from tests.clients import run_client
from tests.fakes.hf_hub import FakeHub
from tests.integration.test_pipeline_http import add_model


def test_corrupted_upstream_bytes_fail_fast_with_the_reason(make_hubgate, fake_hub: FakeHub) -> None:
    add_model(fake_hub)
    fake_hub.add_fault("model.safetensors", origin="cdn", corrupt=True)
    gate = make_hubgate(hf_upstream=fake_hub.url)
    started = time.monotonic()
    result = run_client(
        """
from huggingface_hub import hf_hub_download
emit(r=attempt(hf_hub_download, "acme/model", "model.safetensors"))
""",
        endpoint=gate.url,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    assert result.ok, result.output
    outcome = result.data["r"]
    assert outcome["type"] == "GatedRepoError"
    assert "sha256 mismatch" in outcome["message"] and "nothing was kept" in outcome["message"]
    assert elapsed < 15, f"the client should not retry a refusal ({elapsed:.1f} s)"
