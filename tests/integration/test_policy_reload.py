"""Policy reloads (API, file watch, SIGHUP): re-decision from stored scans without re-download or re-scan;
a bad file is rejected and audited while the old policy stays; an admin's reject outlives policy changes."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from proxy.policy import parse_policy
from tests.fakes.hf_hub import FakeHub
from tests.integration.conftest import ADMIN_TOKEN, REPO_ROOT
from tests.integration.http import get_until_done, request
from tests.integration.test_pipeline_http import add_model

BLOCK_SAFETENSORS = 'version = 1\n[format]\nsafetensors = "block"\n'
BAD = 'version = 1\n[format]\nsafetensor = "block"\n'


def scans_done(gate) -> float:  # type: ignore[no-untyped-def]
    """Scans that ran in a worker (the scan-duration histogram's count), read from /metrics."""
    text = request("GET", f"{gate.url}/metrics").body.decode()
    match = re.search(r"^hubgate_scan_duration_seconds_count (\S+)$", text, re.M)
    assert match, "scan histogram missing from /metrics"
    return float(match[1])


def test_policy_change_redecides_from_stored_scans_without_rescanning(
    make_hubgate, fake_hub: FakeHub, tmp_path: Path
) -> None:
    add_model(fake_hub)
    policy = tmp_path / "policy.toml"
    policy.write_text("version = 1\n")
    gate = make_hubgate(hf_upstream=fake_hub.url, policy=policy, policy_watch_seconds=0.2)
    url = f"{gate.url}/acme/model/resolve/main/model.safetensors"
    assert get_until_done(url).status == 200
    assert scans_done(gate) == 1

    policy.write_text(BLOCK_SAFETENSORS)
    reloaded = gate.cli("policy", "reload", "--json")
    assert reloaded.returncode == 0, reloaded.stderr
    # (the file watch may have been first: either way the blocking policy is in force now)
    assert json.loads(reloaded.stdout)["new"] == parse_policy(BLOCK_SAFETENSORS).hash != parse_policy("").hash
    refused = request("GET", url)
    assert refused.status == 403 and "format.safetensors" in (refused.header("X-Error-Message") or "")
    assert scans_done(gate) == 1 and fake_hub.count("GET", origin="cdn") == 1
    redecided = gate.call(gate.store.read_audit(event="redecide"))
    assert [e["status"] for e in redecided] == ["blocked"]

    policy.write_text(BAD)
    rejected = gate.cli("policy", "reload")
    assert rejected.returncode == 2 and "old one stays in force" in " ".join(rejected.stderr.split())
    assert "safetensor" in gate.call(gate.store.read_audit(event="policy-reload-rejected"))[-1]["error"]
    assert request("GET", url).status == 403  # the blocking policy is still the one in force

    policy.write_text("version = 1\n# back to the defaults\n")  # the file watch picks this one up
    deadline = time.monotonic() + 10
    while request("GET", url).status != 200:
        assert time.monotonic() < deadline, "the edited policy file was not reloaded"
        time.sleep(0.2)
    assert scans_done(gate) == 1 and fake_hub.count("GET", origin="cdn") == 1
    watch = gate.call(gate.store.read_audit(event="policy-reload"))
    assert watch[-1]["actor"] == "hubgate:file-watch"


def test_reject_holds_whatever_policy_later_says(make_hubgate, fake_hub: FakeHub, tmp_path: Path) -> None:
    add_model(fake_hub)
    policy = tmp_path / "policy.toml"
    policy.write_text("version = 1\n")
    gate = make_hubgate(hf_upstream=fake_hub.url, policy=policy, policy_watch_seconds=0)
    url = f"{gate.url}/acme/model/resolve/main/model.safetensors"
    assert get_until_done(url).status == 200
    aid = next(v.artifact_id for v in gate.call(gate.store.list_verdicts()) if v.path == "model.safetensors")
    assert gate.cli("reject", aid, "--reason", "supplier withdrew it").returncode == 0
    for text in (BLOCK_SAFETENSORS, 'version = 1\nmode = "audit"\n', "version = 1\n"):
        policy.write_text(text)
        assert gate.cli("policy", "reload").returncode == 0
        answer = request("GET", url)
        assert answer.status == 403 and "rejected by alice" in (answer.header("X-Error-Message") or ""), text
    assert gate.cli("revoke", aid, "--reason", "supplier re-issued it").returncode == 0
    assert request("GET", url).status == 200  # back to what policy says, from the stored scan
    assert scans_done(gate) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sighup_reloads_the_policy_of_hubgate_serve(redis_url: str, redis_prefix: str, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("version = 1\n")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUBGATE_")} | {
        "HUBGATE_REDIS_URL": redis_url,
        "HUBGATE_REDIS_PREFIX": redis_prefix,
        "HUBGATE_DATA_DIR": str(tmp_path / "data"),
        "HUBGATE_POLICY": str(policy),
        "HUBGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "HUBGATE_POLICY_WATCH_SECONDS": "0",
        "HUBGATE_SCAN_WORKERS": "1",
        "HUBGATE_HF_UPSTREAM": "http://127.0.0.1:9",
        "HUBGATE_CONFIG": str(tmp_path / "none.toml"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def audit(event: str) -> list[dict[str, str]]:
        answer = request("GET", f"{base}/admin/api/audit?event={event}", headers=headers)
        assert answer.status == 200
        return answer.json()  # type: ignore[no-any-return]

    def wait_for(event: str, n: int) -> list[dict[str, str]]:
        deadline = time.monotonic() + 10
        while len(found := audit(event)) < n:
            assert time.monotonic() < deadline, f"no {event} after SIGHUP"
            time.sleep(0.1)
        return found

    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if request("GET", f"{base}/healthz", timeout=2).status == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()  # type: ignore[union-attr]
            time.sleep(0.2)
        policy.write_text(BAD)
        proc.send_signal(signal.SIGHUP)
        assert "safetensor" in wait_for("policy-reload-rejected", 1)[0]["error"]
        policy.write_text(BLOCK_SAFETENSORS)
        proc.send_signal(signal.SIGHUP)
        entry = wait_for("policy-reload", 1)[0]
        assert entry["actor"] == "hubgate:SIGHUP" and entry["old"] != entry["new"]
        assert proc.poll() is None  # SIGHUP did not kill it
    finally:
        proc.terminate()
        proc.wait(15)
