"""Offline mode: everything needed to serve what was vetted comes from hubgate's own store.

One hubgate vets a real model online; a second one on the same store runs with `offline=True` and an
unreachable upstream. Real huggingface_hub and transformers clients (fresh caches) then work through it, the
upstream sees no request at all, and what was never vetted gets a clear, fast refusal.
"""

from __future__ import annotations

import socket

import pytest

from tests.clients import run_client
from tests.fakes.hf_hub import FakeHub
from tests.fakes.minilm import HIDDEN_SIZE, MINILM_REPO, add_minilm

pytestmark = pytest.mark.slow

LOAD_SNIPPET = f"""
from huggingface_hub import hf_hub_download, snapshot_download, model_info
from transformers import AutoModel, AutoTokenizer
import torch
emit(snapshot=attempt(lambda: sorted(__import__("os").listdir(snapshot_download({MINILM_REPO!r})))))
emit(by_branch=attempt(lambda: open(hf_hub_download({MINILM_REPO!r}, "config.json", revision="main")).read()[:1]))
emit(info=attempt(lambda: model_info({MINILM_REPO!r}).sha))
tok = AutoTokenizer.from_pretrained({MINILM_REPO!r})
model = AutoModel.from_pretrained({MINILM_REPO!r})
with torch.no_grad():
    out = model(**tok(["hubgate vets models"], return_tensors="pt"))
emit(hidden=list(out.last_hidden_state.shape))
"""


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_offline_serves_everything_vetted_and_nothing_else(make_hubgate, fake_hub: FakeHub) -> None:
    commit = add_minilm(fake_hub, card="---\nlicense: apache-2.0\n---\n# MiniLM\n")
    online = make_hubgate(hf_upstream=fake_hub.url)
    warm = run_client(LOAD_SNIPPET, endpoint=online.url)
    assert warm.ok, warm.output
    assert warm.data["hidden"][-1] == HIDDEN_SIZE
    data_dir = online.settings.data_dir
    online.stop()

    fake_hub.reset_log()
    offline = make_hubgate(hf_upstream=f"http://127.0.0.1:{dead_port()}", offline=True, data_dir=data_dir)
    result = run_client(LOAD_SNIPPET, endpoint=offline.url)
    assert result.ok, result.output
    assert result.data["snapshot"]["ok"], result.data
    assert "model.safetensors" in result.data["snapshot"]["value"]
    assert result.data["by_branch"] == {"ok": True, "value": "{"}
    assert result.data["info"] == {"ok": True, "value": commit}
    assert result.data["hidden"][-1] == HIDDEN_SIZE
    assert fake_hub.requests() == []

    never = run_client(
        """
from huggingface_hub import hf_hub_download
emit(r=attempt(hf_hub_download, "acme/never-vetted", "config.json"))
""",
        endpoint=offline.url,
        timeout=60,
    )
    assert never.ok, never.output
    assert not never.data["r"]["ok"]
    assert "offline" in (never.data["r"]["message"] + str(never.data["r"]["cause"]))
