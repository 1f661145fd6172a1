"""The vetting pipeline over HTTP against the fake Hub: serving, verification, single-flight, fail closed."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np
from safetensors.numpy import save

from proxy.redis_embedded import EmbeddedRedis
from tests.fakes.hf_hub import FakeHub
from tests.integration.http import get_until_done, request

APACHE_CARD = "---\nlicense: apache-2.0\n---\n# A model\n"
NC_CARD = "---\nlicense: cc-by-nc-4.0\n---\n# Non-commercial\n"


def safetensors_bytes(n: int = 1000) -> bytes:
    return save({"weight": np.arange(n, dtype=np.float32).reshape(-1, 10)})


class Payload:
    """A harmless `__reduce__` payload: it would create a marker file if it ever ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def add_model(hub: FakeHub, repo_id: str = "acme/model", *, card: str | None = APACHE_CARD, **files: bytes) -> str:
    files = files or {"model.safetensors": safetensors_bytes(), "config.json": b'{"model_type": "bert"}'}
    return hub.add_repo(repo_id, files=files, card=card)[0]


def test_lfs_file_served_from_cache_with_hub_headers(make_hubgate, fake_hub: FakeHub) -> None:
    weights = safetensors_bytes(50_000)
    commit = add_model(fake_hub, **{"model.safetensors": weights})
    gate = make_hubgate(hf_upstream=fake_hub.url)
    url = f"{gate.url}/acme/model/resolve/main/model.safetensors"

    answer = get_until_done(url)
    assert answer.status == 200, answer.headers
    assert answer.body == weights
    assert answer.header("ETag") == f'"{hashlib.sha256(weights).hexdigest()}"'
    assert answer.header("X-Repo-Commit") == commit
    assert answer.header("Accept-Ranges") == "bytes"
    assert answer.header("Content-Length") == str(len(weights))
    assert answer.header("X-Request-Id")

    head = request("HEAD", url)
    assert head.status == 200 and head.body == b"" and head.header("Content-Length") == str(len(weights))

    part = request("GET", url, headers={"Range": "bytes=10-19"})
    assert part.status == 206 and part.body == weights[10:20]
    assert part.header("Content-Range") == f"bytes 10-19/{len(weights)}"
    beyond = request("GET", url, headers={"Range": f"bytes={len(weights) + 5}-"})
    assert beyond.status == 416 and beyond.header("Content-Range") == f"bytes */{len(weights)}"
    assert fake_hub.count("GET", origin="cdn") == 1  # every answer above came from the vetted cache
    assert fake_hub.count("HEAD", path_contains="model.safetensors") == 1  # one metadata HEAD, reused for the GET


def test_small_gzip_text_is_decoded_and_tagged_with_git_oid(make_hubgate, fake_hub: FakeHub) -> None:
    config = ('{"model_type": "bert", "pad": "' + "x" * 4000 + '"}').encode()
    add_model(fake_hub, **{"config.json": config})
    gate = make_hubgate(hf_upstream=fake_hub.url)
    answer = get_until_done(f"{gate.url}/acme/model/resolve/main/config.json")
    assert answer.status == 200 and answer.body == config
    git_oid = hashlib.sha1(b"blob %d\0" % len(config) + config).hexdigest()
    assert answer.header("ETag") == f'"{git_oid}"'
    assert any(r.status == 200 and "resolve-cache" in r.path for r in fake_hub.requests("GET"))


def test_concurrent_cold_requests_cause_one_upstream_download(make_hubgate, fake_hub: FakeHub) -> None:
    weights = safetensors_bytes(400_000)
    add_model(fake_hub, **{"model.safetensors": weights})
    fake_hub.add_fault("model.safetensors", origin="cdn", chunk_delay=0.05, chunk_size=256 * 1024)
    gate = make_hubgate(hf_upstream=fake_hub.url)
    url = f"{gate.url}/acme/model/resolve/main/model.safetensors"
    results: list[bytes] = []

    def fetch() -> None:
        results.append(get_until_done(url).body)

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [weights] * 8
    assert fake_hub.count("GET", origin="cdn") == 1


def test_cut_transfer_leaves_nothing_and_recovers(make_hubgate, fake_hub: FakeHub) -> None:
    weights = safetensors_bytes(100_000)
    add_model(fake_hub, **{"model.safetensors": weights})
    fake_hub.add_fault("model.safetensors", origin="cdn", cut_after=50_000, times=1)
    gate = make_hubgate(hf_upstream=fake_hub.url)
    url = f"{gate.url}/acme/model/resolve/main/model.safetensors"

    first = get_until_done(url)
    assert first.status == 502, first.body
    assert weights[:1000] not in first.body
    assert "nothing was kept" in (first.header("X-Error-Message") or "")
    data = gate.settings.data_dir
    assert list((data / "tmp").iterdir()) == []
    assert list((data / "quarantine").iterdir()) == []
    assert not any(p.is_file() for p in (data / "blobs").rglob("*"))

    second = get_until_done(url)
    assert second.status == 200 and second.body == weights


def test_corrupt_bytes_are_refused_and_audited(make_hubgate, fake_hub: FakeHub) -> None:
    add_model(fake_hub)
    fake_hub.add_fault("model.safetensors", origin="cdn", corrupt=True)
    gate = make_hubgate(hf_upstream=fake_hub.url)
    answer = get_until_done(f"{gate.url}/acme/model/resolve/main/model.safetensors")
    assert answer.status == 403 and answer.header("X-Error-Code") == "GatedRepo"  # a refusal clients show at once
    assert "sha256 mismatch" in (answer.header("X-Error-Message") or "")
    events = gate.call(gate.store.read_audit(event="integrity-failure"))
    assert len(events) == 1 and "sha256 mismatch" in events[0]["detail"]
    assert not any(p.is_file() for p in (gate.settings.data_dir / "blobs").rglob("*"))


def test_malicious_pickle_is_blocked_with_a_clear_message(make_hubgate, fake_hub: FakeHub, tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    buf = io.BytesIO()
    pickle.dump({"state": Payload(marker)}, buf, protocol=2)
    add_model(fake_hub, **{"pytorch_model.bin": buf.getvalue(), "config.json": b"{}"})
    gate = make_hubgate(hf_upstream=fake_hub.url)
    answer = get_until_done(f"{gate.url}/acme/model/resolve/main/pytorch_model.bin")
    assert answer.status == 403
    assert answer.header("X-Error-Code") == "GatedRepo"
    assert answer.header("X-Repo-Commit")
    message = answer.header("X-Error-Message") or ""
    assert message.startswith("hubgate: blocked by policy:") and "os.system" in message.replace("posix", "os")
    assert answer.json() == {"error": message}
    assert not marker.exists()
    head = request("HEAD", f"{gate.url}/acme/model/resolve/main/pytorch_model.bin")
    assert head.status == 403 and head.header("X-Error-Message") == message
    # the rest of the repo is still served
    assert get_until_done(f"{gate.url}/acme/model/resolve/main/config.json").status == 200


def test_non_commercial_repo_blocked_without_downloading(make_hubgate, fake_hub: FakeHub) -> None:
    add_model(fake_hub, card=NC_CARD)
    gate = make_hubgate(hf_upstream=fake_hub.url)
    answer = get_until_done(f"{gate.url}/acme/model/resolve/main/model.safetensors")
    assert answer.status == 403
    assert "cc-by-nc-4.0" in (answer.header("X-Error-Message") or "")
    assert fake_hub.count("GET", origin="cdn") == 0


def test_unlicensed_repo_quarantined_then_approved_with_the_cli(make_hubgate, fake_hub: FakeHub) -> None:
    add_model(fake_hub, card=None)
    gate = make_hubgate(hf_upstream=fake_hub.url)
    url = f"{gate.url}/acme/model/resolve/main/model.safetensors"
    held = get_until_done(url)
    assert held.status == 403
    message = held.header("X-Error-Message") or ""
    assert message.startswith("hubgate: quarantined by policy:") and "hubgate approve" in message
    listed = gate.cli("quarantine", "--json")
    assert listed.returncode == 0, listed.stderr
    artifact = message.split("(artifact ")[1].split(")")[0]
    assert artifact in listed.stdout
    approved = gate.cli("approve", artifact, "--reason", "reviewed the card with legal")
    assert approved.returncode == 0, approved.stderr
    served = get_until_done(url)
    assert served.status == 200
    verdict = gate.cli("verdict", artifact, "--json")
    assert '"decided_by": "admin:alice"' in verdict.stdout
    audit = gate.cli("audit", "--json", "--artifact", artifact)
    assert '"event": "approve"' in audit.stdout


def test_upstream_errors_pass_through_with_their_codes(make_hubgate, fake_hub: FakeHub) -> None:
    commit = add_model(fake_hub)
    gate = make_hubgate(hf_upstream=fake_hub.url)
    missing_file = request("HEAD", f"{gate.url}/acme/model/resolve/main/added_tokens.json")
    assert missing_file.status == 404
    assert missing_file.header("X-Error-Code") == "EntryNotFound"
    assert missing_file.header("X-Repo-Commit") == commit
    missing_repo = request("GET", f"{gate.url}/acme/nope/resolve/main/config.json")
    assert missing_repo.header("X-Error-Code") == "RepoNotFound"
    missing_rev = request("GET", f"{gate.url}/acme/model/resolve/v9/config.json")
    assert missing_rev.header("X-Error-Code") == "RevisionNotFound"
    bad = request("GET", f"{gate.url}/acme/model/resolve/main/a/%2E%2E/%2E%2E/etc/passwd")
    assert bad.status == 400 and "'..' segments are refused" in (bad.header("X-Error-Message") or "")


def test_xet_is_bridged_and_pagination_points_back(make_hubgate, fake_hub: FakeHub) -> None:
    fake_hub.xet = True
    fake_hub.page_size = 2
    files = {f"f{i}.txt": f"{i}".encode() for i in range(5)} | {"model.safetensors": safetensors_bytes()}
    add_model(fake_hub, **files)
    gate = make_hubgate(hf_upstream=fake_hub.url)
    url = f"{gate.url}/api/models/acme/model/tree/main?recursive=true&expand=false"
    paths = []
    while url:
        page = request("GET", url)
        assert page.status == 200
        assert "xetHash" not in page.body.decode()
        paths += [e["path"] for e in page.json()]
        link = page.header("Link")
        url = link.split(">")[0].lstrip("<") if link else ""
        assert not url or url.startswith(gate.url)
    assert sorted(paths) == sorted([*files, ".gitattributes", "README.md"])
    head = request("HEAD", f"{gate.url}/acme/model/resolve/main/model.safetensors")
    assert not [h for h in head.headers if h.startswith("x-xet-")]
    assert request("GET", f"{gate.url}/api/models/acme/model/xet-read-token/main").status == 404
    assert fake_hub.xet_accesses() == []


def test_restart_keeps_verdicts_and_cache(make_hubgate, fake_hub: FakeHub) -> None:
    weights = safetensors_bytes()
    add_model(fake_hub, **{"model.safetensors": weights})
    gate = make_hubgate(hf_upstream=fake_hub.url)
    url = f"{gate.url}/acme/model/resolve/main/model.safetensors"
    assert get_until_done(url).status == 200
    gate.restart()
    assert get_until_done(url).body == weights
    assert fake_hub.count("GET", origin="cdn") == 1


def test_redis_down_means_503_and_no_bytes(make_hubgate, fake_hub: FakeHub) -> None:
    add_model(fake_hub)
    directory = Path(tempfile.mkdtemp(prefix="hgr-", dir="/tmp"))
    redis = EmbeddedRedis(directory)
    try:
        gate = make_hubgate(hf_upstream=fake_hub.url, redis_url=redis.start())
        url = f"{gate.url}/acme/model/resolve/main/model.safetensors"
        assert get_until_done(url).status == 200
        redis.stop()
        for method in ("GET", "HEAD"):
            answer = request(method, url)
            assert answer.status == 503
            assert "Redis is unreachable" in (answer.header("X-Error-Message") or "")
            assert b"weight" not in answer.body
        assert request("GET", f"{gate.url}/healthz").status == 503
    finally:
        redis.stop()
        shutil.rmtree(directory, ignore_errors=True)


def test_gated_repo_uses_the_server_token_and_never_leaks_it(make_hubgate, fake_hub: FakeHub) -> None:
    from tests.fakes.hf_hub import VALID_TOKEN

    fake_hub.add_repo("acme/gated", files={"config.json": b"{}"}, card=APACHE_CARD, gated=True)
    without = make_hubgate(hf_upstream=fake_hub.url)
    refused = request("GET", f"{without.url}/acme/gated/resolve/main/config.json")
    assert refused.header("X-Error-Code") == "GatedRepo"
    with_token = make_hubgate(hf_upstream=fake_hub.url, hf_token=VALID_TOKEN)
    served = get_until_done(f"{with_token.url}/acme/gated/resolve/main/config.json")
    assert served.status == 200 and served.body == b"{}"
    assert VALID_TOKEN not in str(served.headers)
    assert all("authorization" not in r.headers for r in fake_hub.requests(origin="cdn"))


def test_replicas_sharing_redis_download_once(make_hubgate, fake_hub: FakeHub) -> None:
    weights = safetensors_bytes(300_000)
    add_model(fake_hub, **{"model.safetensors": weights})
    fake_hub.add_fault("model.safetensors", origin="cdn", chunk_delay=0.05, chunk_size=128 * 1024)
    first = make_hubgate(hf_upstream=fake_hub.url)
    second = make_hubgate(hf_upstream=fake_hub.url, data_dir=first.settings.data_dir)
    results: list[int] = []

    def fetch(gate_url: str) -> None:
        results.append(get_until_done(f"{gate_url}/acme/model/resolve/main/model.safetensors").status)

    threads = [threading.Thread(target=fetch, args=(g.url,)) for g in (first, second, first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 4
    assert fake_hub.count("GET", origin="cdn") == 1


def test_slow_vetting_answers_429_with_progress_then_serves(make_hubgate, fake_hub: FakeHub) -> None:
    weights = safetensors_bytes(200_000)
    commit = add_model(fake_hub, **{"model.safetensors": weights})
    fake_hub.add_fault("model.safetensors", origin="cdn", chunk_delay=0.3, chunk_size=64 * 1024)
    gate = make_hubgate(hf_upstream=fake_hub.url, hold_seconds=0.5)
    url = f"{gate.url}/acme/model/resolve/main/model.safetensors"
    first = request("GET", url)
    assert first.status == 429
    assert first.header("Retry-After") == "2"
    assert first.header("X-Repo-Commit") == commit
    assert (first.header("X-Error-Message") or "").startswith("hubgate: vetting acme/model@")
    assert get_until_done(url).body == weights


def test_truncated_pickle_is_refused_and_others_still_served(make_hubgate, fake_hub: FakeHub) -> None:
    broken = pickle.dumps({"a": list(range(1000))}, protocol=4)[:-200]
    add_model(fake_hub, **{"model.bin": broken, "config.json": b"{}"})
    gate = make_hubgate(hf_upstream=fake_hub.url)
    answer = get_until_done(f"{gate.url}/acme/model/resolve/main/model.bin")
    assert answer.status == 403
    assert "pickle" in (answer.header("X-Error-Message") or "")
    assert get_until_done(f"{gate.url}/acme/model/resolve/main/config.json").status == 200


def test_metrics_and_health(make_hubgate, fake_hub: FakeHub) -> None:
    add_model(fake_hub)
    gate = make_hubgate(hf_upstream=fake_hub.url)
    url = f"{gate.url}/acme/model/resolve/main/model.safetensors"
    assert get_until_done(url).status == 200
    assert get_until_done(url).status == 200
    health = request("GET", f"{gate.url}/healthz")
    assert health.status == 200 and health.json()["redis"] is True
    metrics = request("GET", f"{gate.url}/metrics").body.decode()
    assert "hubgate_served_files_total 2.0" in metrics
    assert "hubgate_cache_hits_total 1.0" in metrics  # the second request was answered from the vetted cache
    assert 'hubgate_verdicts_total{decided_by="policy",status="approved"} 1.0' in metrics
    assert "hubgate_upstream_bytes_total" in metrics and "hubgate_scan_duration_seconds_count 1.0" in metrics
    assert request("GET", f"{gate.url}/api/agent-harnesses").json() == {"standardEnvVars": [], "harnesses": {}}


def test_downloads_queue_beyond_the_fetch_limit(make_hubgate, fake_hub: FakeHub) -> None:
    first, second = safetensors_bytes(150_000), safetensors_bytes(160_000)
    add_model(fake_hub, **{"a.safetensors": first, "b.safetensors": second})
    fake_hub.add_fault(".safetensors", origin="cdn", chunk_delay=0.25, chunk_size=64 * 1024)
    gate = make_hubgate(hf_upstream=fake_hub.url, hold_seconds=0.3, max_concurrent_fetches=1)
    a_url, b_url = (f"{gate.url}/acme/model/resolve/main/{name}" for name in ("a.safetensors", "b.safetensors"))
    assert request("GET", a_url).status == 429  # a takes the only download slot
    queued = request("GET", b_url)
    assert queued.status == 429 and "(queued)" in (queued.header("X-Error-Message") or "")
    assert get_until_done(a_url).body == first and get_until_done(b_url).body == second


def test_a_download_that_would_fill_the_disk_is_refused(make_hubgate, fake_hub: FakeHub) -> None:
    add_model(fake_hub)
    gate = make_hubgate(hf_upstream=fake_hub.url, min_free_disk_mb=10**12)  # more reserve than any disk has
    answer = get_until_done(f"{gate.url}/acme/model/resolve/main/model.safetensors")
    assert answer.status == 503
    assert "not enough disk space" in (answer.header("X-Error-Message") or "")
    assert fake_hub.count("GET", origin="cdn") == 0
