"""Request latency for already-vetted files: hubgate vs. a plain static server, in the same run.

Measures what every cache hit pays (revision, metadata, verdict and waiver look-ups in Redis, then sendfile)
for a small file (config.json) with HEAD and GET, at a given concurrency, and prints p50/p95/p99 and req/s
beside a plain aiohttp static server serving the same bytes. The load generator runs in its own process.

    .venv/bin/python bench/latency.py [--requests 2000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import bench_servers

CONFIG = json.dumps({"model_type": "bert", "hidden_size": 384, "pad": "x" * 600}).encode()
LOAD = r"""
import asyncio, json, sys, time
import aiohttp

async def main(url, method, total, concurrency):
    latencies = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        queue = asyncio.Queue()
        for _ in range(total):
            queue.put_nowait(None)
        async def worker():
            while not queue.empty():
                queue.get_nowait()
                started = time.perf_counter()
                async with session.request(method, url) as resp:
                    await resp.read()
                    assert resp.status == 200, resp.status
                latencies.append(time.perf_counter() - started)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    print(json.dumps({"latencies": latencies, "elapsed": elapsed}))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
"""


def load(url: str, method: str, total: int, concurrency: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", LOAD, url, method, str(total), str(concurrency)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = json.loads(out)
    lat = sorted(result["latencies"])

    def pct(p: float) -> float:
        return 1000 * lat[min(len(lat) - 1, int(p * len(lat)))]

    return {
        "p50": pct(0.50),
        "p95": pct(0.95),
        "p99": pct(0.99),
        "mean": 1000 * statistics.mean(lat),
        "rps": len(lat) / result["elapsed"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    card = "---\nlicense: mit\n---\n"
    with bench_servers("bench/model", {"config.json": CONFIG}, card=card, static_file="config.json") as bench:
        url = f"{bench.gate_url}/bench/model/resolve/main/config.json"
        subprocess.run(["curl", "-sf", "-o", "/dev/null", "--retry", "5", url], check=True)  # vet it once
        print(f"{args.requests} requests, concurrency {args.concurrency}, {len(CONFIG)}-byte vetted file")
        print(f"{'':24} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'req/s':>8}")
        rows = [
            ("hubgate GET", url, "GET"),
            ("hubgate HEAD", url, "HEAD"),
            ("static server GET", bench.static_url, "GET"),
        ]
        results = {}
        for name, target, method in rows:
            r = load(target, method, args.requests, args.concurrency)
            results[name] = r
            print(f"{name:24} {r['p50']:8.2f} {r['p95']:8.2f} {r['p99']:8.2f} {r['rps']:8.0f}")
        ratio = results["hubgate GET"]["rps"] / results["static server GET"]["rps"]
        print(f"hubgate/static req/s ratio: {ratio:.2f}; hubgate peak RSS {bench.peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
