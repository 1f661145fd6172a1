"""BlobStore on real files: tmp clean-up, cut transfers, digests, atomic moves, torn-file recovery."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from proxy.errors import Unavailable
from proxy.store import WRITE_BUFFER, BlobStore, TmpWriter


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    blobs = BlobStore(tmp_path / "data")
    blobs.startup()
    return blobs


async def write_all(writer: TmpWriter, data: bytes, chunk: int) -> None:
    for i in range(0, len(data), chunk):
        await writer.write(data[i : i + chunk])


async def download(store: BlobStore, data: bytes, *, chunk: int = 65536) -> Path:
    async with store.open_tmp(len(data)) as w:
        await write_all(w, data, chunk)
        return await store.quarantine(w)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# -- start-up ---------------------------------------------------------------------------------------


def test_startup_creates_layout_and_empties_tmp(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "tmp" / "partial-dir").mkdir(parents=True)
    (data_dir / "tmp" / "dl-1").write_bytes(b"x" * 1000)
    (data_dir / "tmp" / "partial-dir" / "part").write_bytes(b"y" * 24)
    report = BlobStore(data_dir).startup()
    assert (report.tmp_files_removed, report.tmp_bytes_removed) == (2, 1024)
    assert list((data_dir / "tmp").iterdir()) == []
    for sub in ("quarantine", "blobs/sha256", "pending-durable"):
        assert (data_dir / sub).is_dir()
    assert "removed 2 leftover download(s) (1024 bytes)" in str(report) == report.summary()
    again = BlobStore(data_dir).startup()
    assert (again.tmp_files_removed, again.torn_removed, again.pending_verified) == (0, [], [])


def test_startup_on_unusable_data_dir_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(Unavailable, match=r"hubgate: storage is unavailable \(start-up sweep of .*file"):
        BlobStore(tmp_path / "file").startup()


# -- writing and hashing ----------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 7, 4096, WRITE_BUFFER - 1, WRITE_BUFFER, WRITE_BUFFER + 1])
async def test_digests_match_for_any_chunking(store: BlobStore, chunk: int) -> None:
    data = os.urandom(WRITE_BUFFER * 2 + 12345) if chunk > 7 else os.urandom(50_000)
    async with store.open_tmp(len(data)) as w:
        await write_all(w, data, chunk)
        await w.finish()
        assert (w.size, w.sha256, w.git_sha1) == (len(data), sha256(data), git_oid(data))
        assert w.path.read_bytes() == data


async def test_git_sha1_matches_git_hash_object(store: BlobStore, tmp_path: Path) -> None:
    data = b'{\n  "architectures": ["Bert"]\n}\n'
    (tmp_path / "config.json").write_bytes(data)
    expected = subprocess.run(
        ["git", "hash-object", str(tmp_path / "config.json")], capture_output=True, text=True, check=True
    ).stdout.strip()
    for size in (len(data), None):  # streamed with a known size, re-read when the size was unknown
        async with store.open_tmp(size) as w:
            await w.write(data)
            await w.finish()
            assert w.git_sha1 == expected


async def test_git_sha1_modes(store: BlobStore) -> None:
    data = b"abc" * 1000
    async with store.open_tmp(len(data), git_size_header=False) as w:
        await w.write(data)
        await w.finish()
        assert w.git_sha1 is None and w.sha256 == sha256(data)
    async with store.open_tmp(None, git_size_header=True) as w:
        await w.write(data)
        await w.finish()
        assert w.git_sha1 == git_oid(data)
    # the size promised up front was wrong: the id is of what actually arrived, never of the promise
    async with store.open_tmp(len(data) + 1) as w:
        await w.write(data)
        await w.finish()
        assert w.size == len(data) and w.git_sha1 == git_oid(data)


async def test_empty_file(store: BlobStore) -> None:
    async with store.open_tmp(0) as w:
        await w.finish()
        assert (w.size, w.sha256, w.git_sha1) == (0, sha256(b""), git_oid(b""))
        path = await store.quarantine(w)
    assert path.read_bytes() == b""


async def test_digests_are_not_available_before_finish(store: BlobStore) -> None:
    async with store.open_tmp(3) as w:
        await w.write(b"abc")
        with pytest.raises(RuntimeError, match="before finish"):
            _ = w.sha256
        await w.finish()
        await w.finish()  # idempotent
        with pytest.raises(RuntimeError, match="after finish"):
            await w.write(b"more")


async def test_cut_transfer_leaves_nothing(store: BlobStore) -> None:
    fds = open_fds()
    data = os.urandom(WRITE_BUFFER * 3)
    with pytest.raises(ConnectionResetError):
        async with store.open_tmp(len(data) * 2) as w:
            await write_all(w, data, 65536)  # a buffer is in flight in a thread right now
            assert w.path.exists()
            raise ConnectionResetError("upstream closed the connection")
    assert tree(store.data_dir) == []
    assert open_fds() == fds
    # leaving without quarantine (e.g. a failed verification) also deletes the download
    async with store.open_tmp(10) as w:
        await w.write(b"0123456789")
        await w.finish()
    assert tree(store.data_dir) == []


async def test_cancelled_transfer_leaves_nothing(store: BlobStore) -> None:
    started = asyncio.Event()

    async def transfer() -> None:
        async with store.open_tmp(None) as w:
            await w.write(os.urandom(WRITE_BUFFER + 1))
            started.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(transfer())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.05)
    assert tree(store.data_dir) == []


async def test_missing_tmp_dir_is_unavailable(store: BlobStore) -> None:
    store.tmp_dir.rmdir()
    with pytest.raises(Unavailable, match=r"hubgate: storage is unavailable \(create a file in .*tmp"):
        async with store.open_tmp(1):
            pass


# -- quarantine, promote ----------------------------------------------------------------------------


async def test_quarantine_then_promote(store: BlobStore) -> None:
    data = os.urandom(100_000)
    digest = sha256(data)
    assert store.quarantine_path(digest) is None and store.blob_path(digest) is None
    held = await download(store, data)
    assert held == store.data_dir / "quarantine" / digest == store.quarantine_path(digest)
    assert held.read_bytes() == data
    assert store.blob_path(digest) is None  # quarantined bytes are never a servable path
    assert list(store.tmp_dir.iterdir()) == []
    blob = await store.promote(digest)
    assert blob == store.data_dir / "blobs" / "sha256" / digest[:2] / digest == store.blob_path(digest)
    assert blob.read_bytes() == data
    assert store.quarantine_path(digest) is None
    assert await store.promote(digest) == blob  # idempotent
    await store.drain()
    assert tree(store.data_dir) == [f"blobs/sha256/{digest[:2]}/{digest}"]


async def test_same_content_twice_is_kept_once(store: BlobStore) -> None:
    data = b"weights" * 1000
    first = await download(store, data)
    inode = first.stat().st_ino
    await store.drain()
    second = await download(store, data)
    assert second == first and second.stat().st_ino == inode  # the new copy was dropped
    await store.drain()
    assert tree(store.data_dir) == [f"quarantine/{sha256(data)}"]


async def test_quarantine_replaces_a_wrong_sized_copy(store: BlobStore) -> None:
    data = b"good bytes" * 100
    (store.quarantine_dir / sha256(data)).write_bytes(b"torn")
    path = await download(store, data)
    assert path.read_bytes() == data


async def test_promote_when_already_approved_drops_the_quarantine_copy(store: BlobStore) -> None:
    data = b"x" * 5000
    digest = sha256(data)
    await download(store, data)
    blob = await store.promote(digest)
    await download(store, data)
    assert await store.promote(digest) == blob
    assert store.quarantine_path(digest) is None


async def test_concurrent_promotes_agree(store: BlobStore) -> None:
    data = os.urandom(10_000)
    await download(store, data)
    paths = await asyncio.gather(*(store.promote(sha256(data)) for _ in range(5)))
    assert set(paths) == {store.blob_path(sha256(data))}
    await store.drain()
    assert store.blob_path(sha256(data)) is not None and store.quarantine_path(sha256(data)) is None


async def test_promote_unknown_digest_is_refused(store: BlobStore) -> None:
    with pytest.raises(Unavailable, match=r"cannot approve [0-9a-f]{64}: its bytes are not in quarantine"):
        await store.promote("0" * 64)


async def test_drop_quarantine_is_idempotent(store: BlobStore) -> None:
    data = b"rejected"
    await download(store, data)
    await store.drop_quarantine(sha256(data))
    await store.drop_quarantine(sha256(data))
    assert store.quarantine_path(sha256(data)) is None


@pytest.mark.parametrize("bad", ["", "../../etc/passwd", "A" * 64, "0" * 63, "0" * 64 + "/x", "g" * 64])
async def test_non_digests_never_become_paths(store: BlobStore, bad: str) -> None:
    assert store.blob_path(bad) is None
    assert store.quarantine_path(bad) is None
    assert not store.is_pending_durable(bad)
    with pytest.raises(ValueError, match="is not a lowercase hex sha256 digest"):
        await store.promote(bad)
    with pytest.raises(ValueError, match="is not a lowercase hex sha256 digest"):
        await store.drop_quarantine(bad)


# -- durability -------------------------------------------------------------------------------------


async def test_durability_runs_in_the_background(store: BlobStore) -> None:
    data = os.urandom(8 * 1024 * 1024)
    digest = sha256(data)
    await download(store, data)
    assert store.is_pending_durable(digest)  # quarantine returned before the fsync finished
    await store.promote(digest)
    await store.drain()
    assert not store.is_pending_durable(digest)
    assert list(store.pending_dir.iterdir()) == []


def _plant(store: BlobStore, where: str, content: bytes, *, digest: str, marker_size: int | None) -> Path:
    path = store.quarantine_dir / digest if where == "quarantine" else store.blobs_dir / digest[:2] / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    if marker_size is not None:
        (store.pending_dir / digest).write_text(str(marker_size))
    return path


def test_startup_reverifies_files_of_unconfirmed_durability(store: BlobStore) -> None:
    """A crash before the background fsync: start-up checks size, then the full hash, of marked files."""
    intact = os.urandom(3000)
    short = os.urandom(3000)
    flipped = bytearray(os.urandom(3000))
    good_blob = _plant(store, "blobs", intact, digest=sha256(intact), marker_size=len(intact))
    torn_blob = _plant(store, "blobs", short[:1000], digest=sha256(short), marker_size=len(short))
    flipped_digest = sha256(bytes(flipped))
    flipped[100] ^= 0xFF  # right size, wrong bytes (zeroed or stale pages after a crash)
    torn_held = _plant(store, "quarantine", bytes(flipped), digest=flipped_digest, marker_size=len(flipped))
    (store.pending_dir / ("e" * 64)).write_text("5")  # marker whose file never got its name
    confirmed = os.urandom(100)
    unmarked = _plant(store, "blobs", confirmed[:50], digest=sha256(confirmed), marker_size=None)

    report = BlobStore(store.data_dir).startup()

    assert report.pending_verified == [sha256(intact)]
    assert sorted(report.torn_removed) == sorted(
        [
            f"blobs/{sha256(short)}: 1000 bytes, expected 3000",
            f"quarantine/{flipped_digest}: content does not match its sha256",
        ]
    )
    assert report.stale_markers == 1
    assert good_blob.read_bytes() == intact
    assert not torn_blob.exists() and not torn_held.exists()
    assert list(store.pending_dir.iterdir()) == []
    assert unmarked.exists()  # durability was confirmed: not re-hashed (start-up stays fast)
    assert "deleted 2 torn file(s)" in report.summary()
    assert BlobStore(store.data_dir).blob_path(sha256(short)) is None  # never served torn


async def test_crash_before_background_fsync_is_recovered(tmp_path: Path) -> None:
    """The real sequence: quarantine + promote, then the process dies before the fsync pass ran."""
    data_dir = tmp_path / "data"
    first = BlobStore(data_dir)
    first.startup()
    data = os.urandom(200_000)
    digest = sha256(data)
    async with first.open_tmp(len(data)) as w:
        await w.write(data)
        await first.quarantine(w)
        assert first.is_pending_durable(digest)  # marker is on disk before the file has its name
    # "crash": the pending tasks never ran; a new process starts on the same data dir
    for task in list(first._durability.values()):
        task.cancel()
    report = BlobStore(data_dir).startup()
    assert report.pending_verified == [digest] and report.torn_removed == []
    assert (data_dir / "quarantine" / digest).read_bytes() == data
