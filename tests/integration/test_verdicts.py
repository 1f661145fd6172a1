"""VerdictStore against a real Redis (the embedded launcher): every method, atomicity, locks, failure."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import redis

from proxy.errors import Unavailable
from proxy.models import (
    ArtifactRef,
    FileFormat,
    FileMeta,
    Finding,
    RepoType,
    ScanReport,
    ScanVerdict,
    Severity,
    Verdict,
    VerdictStatus,
)
from proxy.redis_embedded import EmbeddedRedis
from proxy.verdicts import Keys, VerdictStore

SHA = "a" * 64
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def make_verdict(
    path: str = "model.bin",
    status: VerdictStatus = VerdictStatus.QUARANTINED,
    *,
    repo_id: str = "org/model",
    sha256: str = SHA,
    repo_type: RepoType = RepoType.MODEL,
    updated_at: float | None = None,
) -> Verdict:
    ref = ArtifactRef(repo_type=repo_type, repo_id=repo_id, commit=COMMIT, path=path)
    extra = {"updated_at": updated_at} if updated_at is not None else {}
    return Verdict(
        artifact_id=ref.artifact_id,
        status=status,
        reasons=[f"because {status.value}"],
        sha256=sha256,
        size=123,
        repo_type=repo_type,
        repo_id=repo_id,
        commit=COMMIT,
        path=path,
        **extra,
    )


def raw_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True)


# -- revisions, metadata, documents, scans ----------------------------------------------------------


async def test_revision_with_ttl_expires_but_offline_copy_stays(verdict_store: VerdictStore) -> None:
    await verdict_store.set_revision("model", "org/m", "main", COMMIT, ttl=1)
    assert await verdict_store.get_revision("model", "org/m", "main") == COMMIT
    await asyncio.sleep(1.2)
    assert await verdict_store.get_revision("model", "org/m", "main") is None
    assert await verdict_store.get_revision_offline("model", "org/m", "main") == COMMIT
    assert await verdict_store.list_revisions("model", "org/m") == {"main": COMMIT}


async def test_commit_revision_never_expires(verdict_store: VerdictStore, redis_url: str) -> None:
    await verdict_store.set_revision(RepoType.MODEL, "org/m", COMMIT, COMMIT, ttl=None)
    await verdict_store.set_revision(RepoType.MODEL, "org/m", "v1.0", "b" * 40, ttl=300)
    client = raw_client(redis_url)
    assert client.ttl(verdict_store.keys.revision("model", "org/m", COMMIT)) == -1
    assert 0 < client.ttl(verdict_store.keys.revision("model", "org/m", "v1.0")) <= 300
    assert client.ttl(verdict_store.keys.revisions_offline("model", "org/m")) == -1
    assert await verdict_store.list_revisions("model", "org/m") == {COMMIT: COMMIT, "v1.0": "b" * 40}
    # repo types are separate namespaces
    assert await verdict_store.get_revision("dataset", "org/m", COMMIT) is None
    assert await verdict_store.get_revision_offline("model", "org/m", "nope") is None


async def test_file_meta_roundtrip(verdict_store: VerdictStore) -> None:
    meta = FileMeta(path="sub/dir/model.safetensors", size=10, sha256=SHA, lfs=True)
    assert await verdict_store.get_file_meta("model", "org/m", COMMIT, meta.path) is None
    await verdict_store.set_file_meta("model", "org/m", COMMIT, meta)
    assert await verdict_store.get_file_meta("model", "org/m", COMMIT, meta.path) == meta
    assert await verdict_store.get_file_meta("model", "org/m", "c" * 40, meta.path) is None


async def test_docs_roundtrip_with_and_without_ttl(verdict_store: VerdictStore, redis_url: str) -> None:
    assert await verdict_store.get_doc("model-info", "org/m@main") is None
    await verdict_store.set_doc("model-info", "org/m@main", {"id": "org/m", "siblings": [{"rfilename": "a"}]})
    await verdict_store.set_doc("tree", "org/m@main:", [1, 2, 3], ttl=60)
    assert await verdict_store.get_doc("model-info", "org/m@main") == {
        "id": "org/m",
        "siblings": [{"rfilename": "a"}],
    }
    assert await verdict_store.get_doc("tree", "org/m@main:") == [1, 2, 3]
    client = raw_client(redis_url)
    assert client.ttl(verdict_store.keys.doc("model-info", "org/m@main")) == -1
    assert 0 < client.ttl(verdict_store.keys.doc("tree", "org/m@main:")) <= 60


async def test_scan_report_roundtrip(verdict_store: VerdictStore) -> None:
    report = ScanReport(
        sha256=SHA,
        size=5,
        format=FileFormat.PICKLE,
        verdict=ScanVerdict.UNSAFE,
        findings=[Finding(engine="pickle", severity=Severity.CRITICAL, rule="global.os.system", message="x")],
        engines={"pickle": "1"},
    )
    assert await verdict_store.get_scan(SHA) is None
    await verdict_store.set_scan(report)
    assert await verdict_store.get_scan(SHA) == report


async def test_corrupt_record_fails_closed(verdict_store: VerdictStore, redis_url: str) -> None:
    raw_client(redis_url).set(verdict_store.keys.verdict("deadbeef0000"), "{not json")
    with pytest.raises(Unavailable, match=r"hubgate: the record .*verdict:deadbeef0000.* is unreadable"):
        await verdict_store.get_verdict("deadbeef0000")


# -- verdicts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", list(VerdictStatus))
async def test_put_verdict_indexes_every_status(
    verdict_store: VerdictStore, redis_url: str, status: VerdictStatus
) -> None:
    v = make_verdict(status=status)
    await verdict_store.put_verdict(v, event="decision", actor="policy", detail={"policy_hash": "p1"})
    assert await verdict_store.get_verdict(v.artifact_id) == v
    client = raw_client(redis_url)
    for s in VerdictStatus:
        members = client.smembers(verdict_store.keys.status_index(s))
        assert members == ({v.artifact_id} if s is status else set())
    assert await verdict_store.ids_by_sha256(SHA) == {v.artifact_id}
    assert await verdict_store.ids_by_repo("model", "org/model") == {v.artifact_id}
    assert [x.artifact_id for x in await verdict_store.list_verdicts(status)] == [v.artifact_id]
    counts = await verdict_store.count_by_status()
    assert counts == {s: int(s is status) for s in VerdictStatus}
    assert client.ttl(verdict_store.keys.verdict(v.artifact_id)) == -1  # approvals never expire


async def test_status_change_moves_between_index_sets_and_audits_both(
    verdict_store: VerdictStore, redis_url: str
) -> None:
    v = make_verdict(status=VerdictStatus.QUARANTINED)
    await verdict_store.put_verdict(v, event="decision", actor="policy")
    approved = v.model_copy(
        update={
            "status": VerdictStatus.APPROVED,
            "admin_status": VerdictStatus.APPROVED,
            "decided_by": "admin:ann",
        }
    )
    await verdict_store.put_verdict(approved, event="approve", actor="admin:ann", detail={"reason": "reviewed"})
    assert (await verdict_store.get_verdict(v.artifact_id)) == approved
    assert [x.artifact_id for x in await verdict_store.list_verdicts(VerdictStatus.QUARANTINED)] == []
    assert [x.artifact_id for x in await verdict_store.list_verdicts(VerdictStatus.APPROVED)] == [v.artifact_id]
    entries = await verdict_store.read_audit(artifact_id=v.artifact_id)
    assert [(e["event"], e["actor"], e["status"]) for e in entries] == [
        ("decision", "policy", "quarantined"),
        ("approve", "admin:ann", "approved"),
    ]
    assert json.loads(entries[1]["detail"]) == {"reason": "reviewed"}
    assert json.loads(entries[1]["reasons"]) == ["because quarantined"]
    assert entries[1]["ref"] == f"org/model@{COMMIT[:12]}:model.bin"


async def test_put_verdict_is_atomic_under_concurrent_writers(verdict_store: VerdictStore, redis_url: str) -> None:
    """Many concurrent status flips of one artifact: the record and the index sets always agree."""
    v = make_verdict()
    statuses = list(VerdictStatus) * 10
    await asyncio.gather(
        *(
            verdict_store.put_verdict(v.model_copy(update={"status": s}), event="flip", actor=f"t{i}")
            for i, s in enumerate(statuses)
        )
    )
    final = await verdict_store.get_verdict(v.artifact_id)
    assert final is not None
    client = raw_client(redis_url)
    holding = [s for s in VerdictStatus if client.sismember(verdict_store.keys.status_index(s), v.artifact_id)]
    assert holding == [final.status]
    assert len(await verdict_store.read_audit(artifact_id=v.artifact_id, count=100)) == len(statuses)
    # the last audit entry is the write that won
    assert (await verdict_store.read_audit(artifact_id=v.artifact_id, count=1))[0]["status"] == final.status.value


async def test_list_verdicts_orders_by_update_and_limits(verdict_store: VerdictStore) -> None:
    now = time.time()
    older = make_verdict("a.bin", VerdictStatus.APPROVED, updated_at=now - 10)
    newer = make_verdict("b.bin", VerdictStatus.BLOCKED, updated_at=now)
    for v in (older, newer):
        await verdict_store.put_verdict(v, event="decision", actor="policy")
    assert [v.path for v in await verdict_store.list_verdicts()] == ["b.bin", "a.bin"]
    assert [v.path for v in await verdict_store.list_verdicts(limit=1)] == ["b.bin"]
    assert await verdict_store.list_verdicts(VerdictStatus.REJECTED) == []
    assert await verdict_store.get_verdicts([older.artifact_id, "missing00000", newer.artifact_id]) == [
        older,
        newer,
    ]
    assert await verdict_store.get_verdict("missing00000") is None


async def test_find_verdicts_by_human_reference(verdict_store: VerdictStore) -> None:
    a = make_verdict("a.bin")
    b = make_verdict("b.bin", sha256="b" * 64)
    other = make_verdict("a.bin", repo_id="org/other")
    ds = make_verdict("a.bin", repo_type=RepoType.DATASET)
    for v in (a, b, other, ds):
        await verdict_store.put_verdict(v, event="decision", actor="policy")
    assert {v.artifact_id for v in await verdict_store.find_verdicts("org/model")} == {
        a.artifact_id,
        b.artifact_id,
        ds.artifact_id,
    }
    assert {v.artifact_id for v in await verdict_store.find_verdicts("org/model", "a.bin")} == {
        a.artifact_id,
        ds.artifact_id,
    }
    found = await verdict_store.find_verdicts("org/model", "a.bin", repo_type="model", commit=COMMIT[:12])
    assert [v.artifact_id for v in found] == [a.artifact_id]
    assert await verdict_store.find_verdicts("org/model", "a.bin", commit="ffff") == []
    assert await verdict_store.find_verdicts("org/nothing") == []
    assert await verdict_store.ids_by_sha256("b" * 64) == {b.artifact_id}


async def test_wait_verdict_wakes_on_put(verdict_store: VerdictStore) -> None:
    v = make_verdict()
    waiter = asyncio.create_task(verdict_store.wait_verdict(v.artifact_id, timeout=5))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    start = time.monotonic()
    await verdict_store.put_verdict(v, event="decision", actor="policy")
    assert await waiter == v
    assert time.monotonic() - start < 0.4  # woken by the announcement, not the 0.5 s safety poll


async def test_wait_verdict_times_out_and_returns_existing(verdict_store: VerdictStore) -> None:
    start = time.monotonic()
    assert await verdict_store.wait_verdict("nothing00000", timeout=0.3) is None
    assert 0.25 < time.monotonic() - start < 1.5
    v = make_verdict()
    await verdict_store.put_verdict(v, event="decision", actor="policy")
    assert await verdict_store.wait_verdict(v.artifact_id, timeout=0) == v


# -- audit ------------------------------------------------------------------------------------------


async def test_audit_is_append_only_and_filterable(verdict_store: VerdictStore, redis_url: str) -> None:
    t0 = time.time()
    first = await verdict_store.append_audit("policy.reload", "system", policy_hash="p1")
    await asyncio.sleep(0.01)
    t1 = time.time()
    for i in range(5):
        await verdict_store.append_audit("policy.reload", "system", policy_hash=f"p{i + 2}")
    await verdict_store.put_verdict(make_verdict(), event="decision", actor="policy")
    everything = await verdict_store.read_audit()
    assert len(everything) == 7
    assert everything[0]["id"] == first and everything[0]["policy_hash"] == "p1"
    assert [e["id"] for e in everything] == sorted(e["id"] for e in everything)  # oldest first
    assert all(t0 <= float(e["ts"]) <= time.time() for e in everything)
    assert len(await verdict_store.read_audit(since=t1)) == 6
    assert [e["policy_hash"] for e in await verdict_store.read_audit(since=t0, count=2)] == ["p1", "p2"]
    assert [e["policy_hash"] for e in await verdict_store.read_audit(count=2, event="policy.reload")] == [
        "p5",
        "p6",
    ]
    assert [e["event"] for e in await verdict_store.read_audit(event="decision")] == ["decision"]
    assert await verdict_store.read_audit(since=time.time() + 60) == []
    # appending never rewrites what was there
    before = await verdict_store.read_audit()
    await verdict_store.append_audit("admin.note", "admin:ann")
    after = await verdict_store.read_audit()
    assert after[:-1] == before and after[-1]["event"] == "admin.note"
    assert raw_client(redis_url).ttl(verdict_store.keys.audit) == -1


async def test_read_audit_filters_across_batches(verdict_store: VerdictStore) -> None:
    for i in range(250):
        await verdict_store.append_audit("noise", "t", n=str(i))
    await verdict_store.append_audit("needle", "t")
    for i in range(250):
        await verdict_store.append_audit("noise", "t", n=str(i))
    assert [e["event"] for e in await verdict_store.read_audit(event="needle", count=1)] == ["needle"]
    assert [e["event"] for e in await verdict_store.read_audit(since=0, event="needle", count=1)] == ["needle"]
    assert [e["n"] for e in await verdict_store.read_audit(count=3)] == ["247", "248", "249"]


# -- locks ------------------------------------------------------------------------------------------


async def test_lock_contention_between_two_stores(redis_url: str, redis_prefix: str) -> None:
    a = await VerdictStore.connect(redis_url, prefix=redis_prefix)
    b = await VerdictStore.connect(redis_url, prefix=redis_prefix)
    try:
        results = await asyncio.gather(*(s.acquire_lock("fetch:x", 5000) for s in [a, b] * 5))
        winners = [t for t in results if t is not None]
        assert len(winners) == 1
        token = winners[0]
        assert not await b.release_lock("fetch:x", "not-the-token")
        assert not await b.renew_lock("fetch:x", "not-the-token", 5000)
        assert await a.acquire_lock("fetch:x", 5000) is None
        assert await a.renew_lock("fetch:x", token, 5000)
        assert await b.release_lock("fetch:x", token)  # the token, not the client, proves ownership
        assert await b.acquire_lock("fetch:x", 5000) is not None
    finally:
        await a.close()
        await b.close()


async def test_expired_lock_is_reacquirable_and_old_token_is_dead(verdict_store: VerdictStore) -> None:
    old = await verdict_store.acquire_lock("fetch:y", 100)
    assert old is not None
    await asyncio.sleep(0.2)
    new = await verdict_store.acquire_lock("fetch:y", 5000)
    assert new is not None and new != old
    assert not await verdict_store.renew_lock("fetch:y", old, 5000)
    assert not await verdict_store.release_lock("fetch:y", old)
    assert await verdict_store.acquire_lock("fetch:y", 5000) is None  # still held by `new`


async def test_hold_lock_renews_while_held_and_releases(verdict_store: VerdictStore, redis_url: str) -> None:
    async with verdict_store.hold_lock("fetch:z", 500) as token:
        assert token is not None
        await asyncio.sleep(1.2)  # more than twice the 500 ms TTL: renewal keeps it
        assert await verdict_store.acquire_lock("fetch:z", 1000) is None
        async with verdict_store.hold_lock("fetch:z", 300) as second:
            assert second is None
    assert raw_client(redis_url).exists(verdict_store.keys.lock("fetch:z")) == 0
    assert await verdict_store.acquire_lock("fetch:z", 1000) is not None


async def test_hold_lock_releases_on_error(verdict_store: VerdictStore) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        async with verdict_store.hold_lock("fetch:e", 5000) as token:
            assert token is not None
            raise RuntimeError("boom")
    assert await verdict_store.acquire_lock("fetch:e", 1000) is not None


# -- progress ---------------------------------------------------------------------------------------


async def test_progress_notes_expire(verdict_store: VerdictStore, redis_url: str) -> None:
    assert await verdict_store.get_progress("abc") is None
    await verdict_store.set_progress("abc", {"bytes": 10, "total": 100, "stage": "download"}, ttl=30)
    assert await verdict_store.get_progress("abc") == {"bytes": 10, "total": 100, "stage": "download"}
    assert 0 < raw_client(redis_url).ttl(verdict_store.keys.progress("abc")) <= 30


def test_keys_are_prefixed_and_distinct() -> None:
    keys = Keys("p:")
    names = [
        keys.revision("model", "o/m", "main"),
        keys.revisions_offline("model", "o/m"),
        keys.file_meta("model", "o/m", COMMIT, "main"),
        keys.doc("k", "main"),
        keys.scan(SHA),
        keys.verdict("main"),
        keys.by_sha256(SHA),
        keys.by_repo("model", "o/m"),
        keys.audit,
        keys.lock("main"),
        keys.progress("main"),
        *(keys.status_index(s) for s in VerdictStatus),
    ]
    assert all(n.startswith("p:") for n in names)
    assert len(set(names)) == len(names)
    with pytest.raises(ValueError, match="prefix"):
        Keys("")


# -- Redis down -------------------------------------------------------------------------------------


async def test_redis_stopped_raises_unavailable_everywhere() -> None:
    server = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="hgd-", dir="/tmp")))
    store = await VerdictStore.connect(server.start(), prefix="down:", socket_timeout=1)
    try:
        await store.put_verdict(make_verdict(), event="decision", actor="policy")
        assert await store.ping()
        server.stop()
        assert not await store.ping()
        v = make_verdict()
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: store.get_revision("model", "o/m", "main"),
            lambda: store.set_revision("model", "o/m", "main", COMMIT, ttl=None),
            lambda: store.get_file_meta("model", "o/m", COMMIT, "a"),
            lambda: store.get_scan(SHA),
            lambda: store.get_verdict(v.artifact_id),
            lambda: store.put_verdict(v, event="decision", actor="policy"),
            lambda: store.list_verdicts(),
            lambda: store.read_audit(),
            lambda: store.append_audit("x", "y"),
            lambda: store.acquire_lock("l", 100),
            lambda: store.get_progress("p"),
            lambda: store.wait_verdict(v.artifact_id, timeout=1),
        ]
        for call in calls:
            start = time.monotonic()
            with pytest.raises(
                Unavailable, match=r"hubgate: Redis is unreachable \(.*\); refusing to serve until"
            ) as info:
                await call()
            assert info.value.status == 503
            assert time.monotonic() - start < 2
        with pytest.raises(Unavailable, match="Redis is unreachable"):
            async with store.hold_lock("l", 100):
                raise AssertionError("hold_lock yielded without Redis")
    finally:
        await store.close()
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


async def test_connect_verify_refuses_unreachable(tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match="Redis is unreachable"):
        await VerdictStore.connect(f"unix://{tmp_path}/none.sock", verify=True)
    store = await VerdictStore.connect(f"unix://{tmp_path}/none.sock")  # lazy: starts, then refuses per call
    assert not await store.ping()
    await store.close()
