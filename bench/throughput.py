"""Serving and cold-vetting throughput, each beside a baseline measured in the same run.

1. Warm: a vetted 1 GiB file served by hubgate (sendfile from the blob store) vs. the same file served by a
   plain aiohttp static server (also sendfile). Goal: ratio >= 0.9.
2. Cold: fetch + verify + scan + promote + serve a 1 GiB safetensors file through hubgate vs. a plain download
   of the same file from the same upstream (the fake Hub). Goal: ratio <= 1.3.

Clients are `curl` processes (no GIL shared with the servers); hubgate runs as a real `hubgate serve` process
on its own embedded-style Redis. Prints figures, and the server's peak RSS.

    .venv/bin/python bench/throughput.py [--size-mib 1024] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from proxy.redis_embedded import EmbeddedRedis
from tests.fakes.hf_hub import FakeHubThread

APACHE_CARD = "---\nlicense: apache-2.0\n---\n"


def safetensors_blob(size: int) -> bytes:
    header = json.dumps({"w": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]}}).encode()
    body_len = size - 8 - len(header) - 200
    header = json.dumps({"w": {"dtype": "U8", "shape": [body_len], "data_offsets": [0, body_len]}}).encode()
    header += b" " * ((8 - len(header) % 8) % 8)
    return (
        len(header).to_bytes(8, "little")
        + header
        + os.urandom(1024 * 1024) * (body_len // (1024 * 1024))
        + (b"\0" * (body_len % (1024 * 1024)))
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def curl(url: str, dest: str = "/dev/null") -> tuple[float, int, int]:
    """(seconds, http status, bytes) for one download; retries 429 like huggingface_hub does."""
    started = time.perf_counter()
    while True:
        out = subprocess.run(
            ["curl", "-sS", "-L", "-o", dest, "-w", "%{http_code} %{size_download}", url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        status, size = int(out[0]), int(out[1])
        if status != 429:
            return time.perf_counter() - started, status, size
        time.sleep(1.0)


def static_server(path: Path, port: int) -> threading.Thread:
    async def handler(request: web.Request) -> web.FileResponse:
        return web.FileResponse(path)

    def run() -> None:
        app = web.Application()
        app.router.add_get("/file", handler)
        web.run_app(app, host="127.0.0.1", port=port, print=None, handle_signals=False, access_log=None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if subprocess.run(["curl", "-s", "-o", "/dev/null", url]).returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--upstream-mibps",
        type=float,
        default=0,
        help="pace the fake upstream's CDN (MiB/s) like a real link; 0 = as fast as the local fake can send",
    )
    args = parser.parse_args()
    size = args.size_mib * 1024 * 1024
    work = Path(tempfile.mkdtemp(prefix="hgbench-", dir="/tmp"))
    redis = EmbeddedRedis(work / "redis")
    server: subprocess.Popen[bytes] | None = None
    try:
        blob = safetensors_blob(size)
        size = len(blob)
        (work / "model.safetensors").write_bytes(blob)
        with FakeHubThread() as hub:
            hub.add_repo("bench/model", files={"model.safetensors": blob}, card=APACHE_CARD)
            if args.upstream_mibps:
                chunk = 1024 * 1024
                hub.add_fault("model.safetensors", origin="cdn", chunk_size=chunk, chunk_delay=1 / args.upstream_mibps)
            del blob
            static_port, gate_port = free_port(), free_port()
            log_file = (work / "server.log").open("wb")
            static_server(work / "model.safetensors", static_port)
            env = {
                **os.environ,
                "HUBGATE_HOST": "127.0.0.1",
                "HUBGATE_PORT": str(gate_port),
                "HUBGATE_DATA_DIR": str(work / "data"),
                "HUBGATE_REDIS_URL": redis.start(),
                "HUBGATE_HF_UPSTREAM": hub.url,
            }
            server = subprocess.Popen(
                [sys.executable, "-m", "proxy", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=log_file
            )
            gate = f"http://127.0.0.1:{gate_port}"
            wait_http(f"{gate}/healthz")
            wait_http(f"http://127.0.0.1:{static_port}/file")

            # A model download lands on disk (hf_hub_download writes the file), so both cold runs write one.
            to_disk = str(work / "client.bin")
            plain = [
                curl(f"{hub.url}/bench/model/resolve/main/model.safetensors", to_disk)[0] for _ in range(args.repeat)
            ]
            plain_null = [curl(f"{hub.url}/bench/model/resolve/main/model.safetensors")[0] for _ in range(args.repeat)]
            cold_s, status, got = curl(f"{gate}/bench/model/resolve/main/model.safetensors", to_disk)
            assert status == 200 and got == size, (status, got)
            warm = [curl(f"{gate}/bench/model/resolve/main/model.safetensors")[0] for _ in range(args.repeat)]
            static = [curl(f"http://127.0.0.1:{static_port}/file")[0] for _ in range(args.repeat)]

            mib = size / 1024 / 1024
            plain_s, warm_s, static_s = statistics.median(plain), statistics.median(warm), statistics.median(static)
            pace = f"upstream paced at {args.upstream_mibps:.0f} MiB/s" if args.upstream_mibps else "upstream unpaced"
            print(f"file: {mib:.0f} MiB safetensors; medians of {args.repeat} runs; client: curl; {pace}")
            print(f"warm  hubgate (vetted, sendfile) : {warm_s:7.3f} s  {mib / warm_s:8.0f} MiB/s")
            print(f"warm  plain static server       : {static_s:7.3f} s  {mib / static_s:8.0f} MiB/s")
            print(f"      throughput ratio hubgate/static = {static_s / warm_s:.2f}  (goal >= 0.9)")
            print(f"cold  hubgate fetch+vet+serve   : {cold_s:7.3f} s")
            print(f"cold  plain download from upstream, to disk: {plain_s:7.3f} s")
            print(f"      time ratio cold/plain = {cold_s / plain_s:.2f}  (goal <= 1.3)")
            print(f"      (the same plain download to /dev/null: {statistics.median(plain_null):.3f} s)")
            print(f"hubgate peak RSS: {peak_rss_mib(server.pid):.0f} MiB")
            for line in (work / "server.log").read_text().splitlines():
                if '"vetted"' in line:
                    entry = json.loads(line)
                    print(f"phases: fetch {entry['fetch_s']} s, scan {entry['scan_s']} s, record {entry['record_s']} s")
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
