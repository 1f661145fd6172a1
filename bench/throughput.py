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
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import bench_servers

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
    blob = safetensors_blob(args.size_mib * 1024 * 1024)
    size = len(blob)
    path = "model.safetensors"
    with bench_servers("bench/model", {path: blob}, card=APACHE_CARD, static_file=path) as bench:
        del blob
        hub, gate = bench.hub, bench.gate_url
        if args.upstream_mibps:
            hub.add_fault(path, origin="cdn", chunk_size=1024 * 1024, chunk_delay=1 / args.upstream_mibps)
        # A model download lands on disk (hf_hub_download writes the file), so both cold runs write one.
        to_disk = str(bench.work / "client.bin")
        upstream_url, gate_file = (
            f"{hub.url}/bench/model/resolve/main/{path}",
            f"{gate}/bench/model/resolve/main/{path}",
        )
        plain = [curl(upstream_url, to_disk)[0] for _ in range(args.repeat)]
        plain_null = [curl(upstream_url)[0] for _ in range(args.repeat)]
        cold_s, status, got = curl(gate_file, to_disk)
        assert status == 200 and got == size, (status, got)
        warm = [curl(gate_file)[0] for _ in range(args.repeat)]
        static = [curl(bench.static_url)[0] for _ in range(args.repeat)]

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
        print(f"hubgate peak RSS: {bench.peak_rss_mib():.0f} MiB")
        for line in bench.log_path.read_text().splitlines():
            if '"vetted"' in line:
                entry = json.loads(line)
                print(f"phases: fetch {entry['fetch_s']} s, scan {entry['scan_s']} s, record {entry['record_s']} s")


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
