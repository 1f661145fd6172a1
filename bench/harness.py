"""What every HTTP benchmark needs: a fake Hub, a real `hubgate serve` process on its own Redis, and a plain
static server for the baseline, all on 127.0.0.1 and all torn down afterwards."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from proxy.redis_embedded import EmbeddedRedis
from tests.fakes.hf_hub import FakeHub, FakeHubThread


@dataclass
class Bench:
    work: Path
    hub: FakeHub
    gate_url: str
    static_url: str
    server_pid: int
    log_path: Path

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.server_pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if subprocess.run(["curl", "-s", "-o", "/dev/null", url]).returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def _static_server(path: Path, port: int) -> None:
    async def handler(request: web.Request) -> web.FileResponse:
        return web.FileResponse(path)

    def run() -> None:
        app = web.Application()
        app.router.add_get("/file", handler)
        web.run_app(app, host="127.0.0.1", port=port, print=None, handle_signals=False, access_log=None)

    threading.Thread(target=run, daemon=True).start()


@contextmanager
def bench_servers(repo_id: str, files: Mapping[str, bytes], *, card: str, static_file: str) -> Iterator[Bench]:
    """The fake Hub holding `repo_id`, hubgate in front of it, and `files[static_file]` on a static server."""
    work = Path(tempfile.mkdtemp(prefix="hgbench-", dir="/tmp"))
    redis = EmbeddedRedis(work / "redis")
    server: subprocess.Popen[bytes] | None = None
    try:
        (work / "static").write_bytes(files[static_file])
        with FakeHubThread() as hub:
            hub.add_repo(repo_id, files=files, card=card)
            static_port, gate_port = free_port(), free_port()
            _static_server(work / "static", static_port)
            env = {
                **os.environ,
                "HUBGATE_HOST": "127.0.0.1",
                "HUBGATE_PORT": str(gate_port),
                "HUBGATE_DATA_DIR": str(work / "data"),
                "HUBGATE_REDIS_URL": redis.start(),
                "HUBGATE_HF_UPSTREAM": hub.url,
                "HUBGATE_LOG_JSON": "true",
            }
            log_path = work / "server.log"
            with log_path.open("wb") as log:
                server = subprocess.Popen([sys.executable, "-m", "proxy", "serve"], env=env, stdout=log, stderr=log)
            bench = Bench(
                work, hub, f"http://127.0.0.1:{gate_port}", f"http://127.0.0.1:{static_port}/file", server.pid, log_path
            )
            wait_http(f"{bench.gate_url}/healthz")
            wait_http(bench.static_url)
            yield bench
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)
