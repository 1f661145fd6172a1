"""Run the real HF clients (huggingface_hub, transformers) in a subprocess against a given endpoint.

`HF_ENDPOINT` is read once at import time, so every client run is a fresh Python process with a clean
environment: a fresh `HF_HOME` (unless given), `HF_ENDPOINT`, telemetry and progress bars off, no token,
no proxy variables, no offline switches. The snippet gets helpers from a prelude:

- `emit(**values)`: report JSON-serialisable values back to the test (`result.data`, merged);
- `attempt(fn, *args, **kwargs)`: call and return `{"ok": True, "value": ...}` or
  `{"ok": False, "type": "GatedRepoError", "types": [...MRO names...], "message": str(exc),
  "cause": str(exc.__cause__)}` — so one subprocess can check several outcomes.

    result = run_client(f"from huggingface_hub import hf_hub_download\\n"
                        f"emit(path=hf_hub_download('acme/m', 'config.json'))", endpoint=hub.url)
    assert result.ok, result.output
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULT_MARK = "@@HUBGATE-TEST-RESULT@@"

_PRELUDE = f"""
import json as _json, sys as _sys, traceback as _tb

def emit(**values):
    print({RESULT_MARK!r} + _json.dumps(values, default=str), flush=True)

def _describe(exc):
    return {{
        "ok": False,
        "type": type(exc).__name__,
        "types": [c.__name__ for c in type(exc).__mro__],
        "message": str(exc),
        "cause": None if exc.__cause__ is None else f"{{type(exc.__cause__).__name__}}: {{exc.__cause__}}",
        "traceback": _tb.format_exc()[-4000:],
    }}

def attempt(fn, *args, **kwargs):
    try:
        return {{"ok": True, "value": fn(*args, **kwargs)}}
    except Exception as exc:
        return _describe(exc)
"""

# Variables that would change what the client does, or where it goes, if inherited from the test runner.
_DROPPED_PREFIXES = ("HF_", "HUGGING", "TRANSFORMERS_", "HUBGATE_", "TORCH_HOME", "XDG_CACHE")
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@dataclass
class ClientResult:
    returncode: int
    stdout: str
    stderr: str
    data: dict[str, Any] = field(default_factory=dict)
    hf_home: Path | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def output(self) -> str:
        """Both streams, for assertion messages."""
        return f"exit {self.returncode}\n--- stdout\n{self.stdout[-6000:]}\n--- stderr\n{self.stderr[-6000:]}"


def client_env(endpoint: str, hf_home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith(_DROPPED_PREFIXES) and k.lower() not in _PROXY_VARS
    }
    env.update(
        {
            "HF_ENDPOINT": endpoint,
            "HF_HOME": str(hf_home),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
            "NO_PROXY": "127.0.0.1,localhost",
            "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1",  # two shared cores: keep torch from spawning a thread per core
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


def run_client(
    snippet: str,
    *,
    endpoint: str,
    hf_home: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 180.0,
    disable_xet: bool = False,
) -> ClientResult:
    """Run `snippet` (dedented) after the prelude in a fresh interpreter; never raises on client errors.

    `hf_home`: reuse a cache between runs (else a new temp dir, kept for inspection via `result.hf_home`
    until the OS cleans /tmp). `env` is applied last (e.g. `{"HF_TOKEN": ...}`).
    """
    home = hf_home or Path(tempfile.mkdtemp(prefix="hf-home-"))
    extra = dict(env or {})
    if disable_xet:
        extra.setdefault("HF_HUB_DISABLE_XET", "1")
    code = _PRELUDE + "\n" + textwrap.dedent(snippet)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=client_env(endpoint, home, extra),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    data: dict[str, Any] = {}
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            data.update(json.loads(line[len(RESULT_MARK) :]))
    return ClientResult(proc.returncode, proc.stdout, proc.stderr, data, home)
