"""The air-gap story end to end: hubgate A (fed by the fake Hub) vets a real model; `hubgate export` writes a
signed bundle; hubgate B, offline, with its own Redis and data dir, imports it; then real huggingface_hub
and transformers runs against B succeed with the upstream stopped and A gone."""

from __future__ import annotations

import contextlib
import shutil
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from proxy.redis_embedded import EmbeddedRedis
from tests.clients import run_client
from tests.fakes.hf_hub import FakeHub, FakeHubThread
from tests.fakes.minilm import HIDDEN_SIZE, MINILM_REPO, add_minilm

REPO_ROOT = Path(__file__).resolve().parents[2]

LOAD = f"""
from huggingface_hub import hf_hub_download, snapshot_download
from transformers import AutoModel, AutoTokenizer
import torch
tok = AutoTokenizer.from_pretrained({MINILM_REPO!r})
model = AutoModel.from_pretrained({MINILM_REPO!r})
with torch.no_grad():
    out = model(**tok(["air-gapped"], return_tensors="pt")).last_hidden_state
emit(shape=list(out.shape))
emit(config=attempt(lambda: open(hf_hub_download({MINILM_REPO!r}, "config.json", revision="main")).read()))
emit(snapshot=attempt(lambda: snapshot_download({MINILM_REPO!r}, allow_patterns=["*.json", "*.txt"])))
"""


class Tripwire:
    """A TCP listener standing in for the upstream: it counts every connection made to it."""

    def __init__(self) -> None:
        self.hits = 0
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                owner.hits += 1

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Tripwire:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class _SocketAudit:
    """`socket.connect` audit events of this process (where B runs), recorded only while watching.
    An audit hook cannot be removed, so one is installed once and switched on and off."""

    def __init__(self) -> None:
        self._log: list[object] | None = None
        self._installed = False

    def _hook(self, event: str, args: tuple[object, ...]) -> None:
        log = self._log
        if log is not None and event == "socket.connect" and isinstance(args[1], tuple):
            log.append(args[1])  # (host, port): TCP; Unix sockets (Redis) have a str address

    @contextlib.contextmanager
    def watching(self) -> Iterator[list[object]]:
        if not self._installed:
            sys.addaudithook(self._hook)
            self._installed = True
        self._log = log = []
        try:
            yield log
        finally:
            self._log = None


_SOCKETS = _SocketAudit()


def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), "HUBGATE_CONFIG": str(cwd / "none.toml")}
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args], env=full | env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_vetted_on_a_exported_imported_into_offline_b(
    make_hubgate, tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    upstream = FakeHubThread()
    fake_hub = upstream.__enter__()
    try:
        _scenario(make_hubgate, upstream, fake_hub, tmp_path, redis_url, redis_prefix)
    finally:
        if upstream._thread.is_alive():
            upstream.__exit__(None, None, None)


def _scenario(
    make_hubgate, upstream: FakeHubThread, fake_hub: FakeHub, tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    commit = add_minilm(fake_hub)
    a = make_hubgate(hf_upstream=fake_hub.url)
    warm = run_client(LOAD, endpoint=a.url, timeout=300)
    assert warm.ok and warm.data["shape"] == [1, 6, HIDDEN_SIZE], warm.output

    work = tmp_path / "work"
    work.mkdir()
    assert _cli("keygen", "--out", "site", env={}, cwd=work).returncode == 0
    outside = {
        "HUBGATE_REDIS_URL": redis_url,
        "HUBGATE_REDIS_PREFIX": redis_prefix,
        "HUBGATE_DATA_DIR": str(a.settings.data_dir),
    }
    export = _cli("export", "--out", "minilm.tar", "--key", "site.key", f"{MINILM_REPO}@main", env=outside, cwd=work)
    assert export.returncode == 0, export.stderr
    a.stop()

    # B: its own Redis (a second embedded server), its own data dir, offline, and the upstream is gone.
    redis_dir = Path(tempfile.mkdtemp(prefix="hgb-", dir="/tmp"))
    try:
        with EmbeddedRedis(redis_dir) as inside_redis:
            inside = {"HUBGATE_REDIS_URL": inside_redis.url, "HUBGATE_DATA_DIR": str(tmp_path / "b")}
            imported = _cli("import", "minilm.tar", "--trust-key", "site.pub", "--json", env=inside, cwd=work)
            assert imported.returncode == 0, imported.stdout + imported.stderr
            upstream.__exit__(None, None, None)  # the real upstream is gone from here on
            with Tripwire() as tripwire:
                with _SOCKETS.watching() as probe:  # self-check: the audit and the tripwire both see a connect
                    socket.create_connection(("127.0.0.1", tripwire.port), timeout=5).close()
                assert probe == [("127.0.0.1", tripwire.port)]
                _wait_for(lambda: tripwire.hits == 1)
                b = make_hubgate(
                    hf_upstream=tripwire.url,  # any contact would be counted
                    offline=True,
                    redis_url=inside_redis.url,
                    redis_prefix="hubgate:",
                    data_dir=tmp_path / "b",
                )
                never_vetted = f"emit(readme=attempt(lambda: hf_hub_download({MINILM_REPO!r}, 'README.md')))"
                with _SOCKETS.watching() as connects:
                    result = run_client(LOAD + never_vetted, endpoint=b.url, timeout=300)
                assert tripwire.hits == 1  # the self-check's, nothing more
                # Socket audit of the process hosting B: no TCP connection at all while it served.
                assert connects == [], connects
            assert result.ok, result.output
            assert result.data["shape"] == [1, 6, HIDDEN_SIZE]
            assert result.data["config"]["ok"], result.data["config"]
            assert result.data["snapshot"]["ok"], result.data["snapshot"]
            assert commit in result.data["snapshot"]["value"]
            # never vetted on A, so not in the bundle: a clear refusal, not a hang or an upstream call
            readme = result.data["readme"]
            assert not readme["ok"] and "offline" in readme["message"] + str(readme["cause"]), readme
            b.stop()
    finally:
        shutil.rmtree(redis_dir, ignore_errors=True)
