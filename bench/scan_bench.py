"""Scan cost vs file size: hubgate beside the modelscan CLI and the fickling CLI on the same files.

Generates (in a temp dir) a safetensors file, a torch zip checkpoint and a raw pickle of numpy arrays, then
times, per file:
  hubgate/scan_path   in-process `scan_path(..., known_sha256=...)`: what the proxy's worker does (it hashed
                      while downloading), i.e. the scanning cost alone, all engines included
  hubgate/ours-only   the same with only our allowlist engine (no fickling/modelscan)
  hubgate/cli         `hubgate scan FILE --json` end to end (process start, sha256, worker, all engines)
  modelscan/cli       `modelscan -p FILE`
  fickling/cli        `fickling --check-safety FILE`
and prints the ratios third-party / hubgate. Defaults are the issue's sizes (2 GB, 2 GB, 500 MB);
`--quick` uses 200 MB / 200 MB / 100 MB.

    .venv/bin/python bench/scan_bench.py --quick
"""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
MB = 1024 * 1024


def make_safetensors(path: Path, size: int) -> None:
    """A valid safetensors file of `size` bytes (one F32 tensor), data written for real."""
    n = (size // 4) - 64
    header = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, n * 4]}}).encode()
    header += b" " * (-len(header) % 8)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        chunk = b"\x00\x00\x80\x3f" * (MB // 4)
        left = n * 4
        while left > 0:
            f.write(chunk[: min(left, len(chunk))])
            left -= len(chunk)


def make_torch_zip(path: Path, size: int) -> None:
    import torch

    per = 64 * MB
    state = {f"layer{i}.weight": torch.ones(per // 4) for i in range(max(size // per, 1))}
    torch.save(state, path)


def make_pickle(path: Path, size: int) -> None:
    import numpy as np

    per = 50 * MB
    arrays = {f"a{i}": np.ones(per // 8) for i in range(max(size // per, 1))}
    with path.open("wb") as f:
        pickle.dump(arrays, f, protocol=4)


def timed(fn) -> tuple[float, str]:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    out = fn()
    return time.monotonic() - started, out


def run_cli(argv: list[str], timeout: float, cwd: Path | None = None) -> str:
    try:  # cwd: fickling --check-safety writes safety_results.json into the working directory
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd)
    except subprocess.TimeoutExpired:
        return "timeout"
    return f"exit {proc.returncode}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 MB / 200 MB / 100 MB instead of 2 GB / 2 GB / 500 MB")
    parser.add_argument("--safetensors-mb", type=int)
    parser.add_argument("--torch-mb", type=int)
    parser.add_argument("--pickle-mb", type=int)
    parser.add_argument("--timeout", type=float, default=900.0, help="per external tool run")
    parser.add_argument("--dir", type=Path, help="where to generate (default: a temp dir, removed afterwards)")
    args = parser.parse_args()

    from proxy.scan import scan_path
    from proxy.scan.scanner import sha256_file

    sizes = {
        "safetensors": args.safetensors_mb or (200 if args.quick else 2048),
        "torch-zip": args.torch_mb or (200 if args.quick else 2048),
        "raw-pickle": args.pickle_mb or (100 if args.quick else 500),
    }
    makers = {"safetensors": make_safetensors, "torch-zip": make_torch_zip, "raw-pickle": make_pickle}
    names = {"safetensors": "model.safetensors", "torch-zip": "pytorch_model.bin", "raw-pickle": "model.pkl"}
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="hubgate-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for kind, mb in sizes.items():
            path = workdir / names[kind]
            made, _ = timed(lambda kind=kind, path=path, mb=mb: makers[kind](path, mb * MB))
            size = path.stat().st_size
            hash_s, sha = timed(lambda path=path: sha256_file(path))
            ours_s, rep = timed(lambda path=path, sha=sha: scan_path(path, known_sha256=sha))
            only_s, rep2 = timed(lambda path=path, sha=sha: scan_path(path, known_sha256=sha, run_engines=False))
            cli_s, cli_out = timed(
                lambda path=path: run_cli([str(BIN / "hubgate"), "scan", str(path), "--json"], args.timeout)
            )
            ms_s, ms_out = timed(lambda path=path: run_cli([str(BIN / "modelscan"), "-p", str(path)], args.timeout))
            fk_s, fk_out = timed(
                lambda path=path: run_cli(
                    [str(BIN / "fickling"), "--check-safety", str(path)], args.timeout, cwd=workdir
                )
            )
            rows.append(
                {
                    "file": kind,
                    "size_mb": round(size / MB),
                    "generate_s": round(made, 1),
                    "sha256_s": round(hash_s, 2),
                    "hubgate_scan_s": round(ours_s, 3),
                    "hubgate_ours_only_s": round(only_s, 3),
                    "hubgate_verdict": rep.verdict.value,
                    "hubgate_cli_s": round(cli_s, 2),
                    "hubgate_cli": cli_out,
                    "modelscan_cli_s": round(ms_s, 2),
                    "modelscan_cli": ms_out,
                    "fickling_cli_s": round(fk_s, 2),
                    "fickling_cli": fk_out,
                    "ratio_modelscan_vs_hubgate_cli": round(ms_s / cli_s, 2) if cli_s else None,
                    "ratio_fickling_vs_hubgate_cli": round(fk_s / cli_s, 2) if cli_s else None,
                }
            )
            assert rep2.verdict.value == rep.verdict.value
            path.unlink()
            print(json.dumps(rows[-1]), flush=True)
    finally:
        if args.dir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    head = f"{'file':12} {'MB':>6} {'hubgate scan':>13} {'ours only':>10} {'hubgate cli':>12} "
    head += f"{'modelscan':>10} {'fickling':>10} {'ms/hg':>6} {'fk/hg':>6}"
    print(head)
    for r in rows:
        print(
            f"{r['file']:12} {r['size_mb']:>6} {r['hubgate_scan_s']:>12.3f}s {r['hubgate_ours_only_s']:>9.3f}s "
            f"{r['hubgate_cli_s']:>11.2f}s {r['modelscan_cli_s']:>9.2f}s {r['fickling_cli_s']:>9.2f}s "
            f"{r['ratio_modelscan_vs_hubgate_cli']:>6} {r['ratio_fickling_vs_hubgate_cli']:>6}"
        )
    print("(hubgate cli includes process start-up and a full sha256 of the file; scan_path is given the sha256,")
    print(" as the proxy is: it hashes while downloading. ms/hg and fk/hg: CLI wall-time ratios.)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
