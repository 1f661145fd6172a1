"""Everything hubgate keeps in Redis, and the only module that talks to it (redis.asyncio).

Keys are named once, in `Keys`, each with its lifetime. Transitions that touch several keys are atomic
(MULTI/EXEC, or a short Lua script for compare-and-set on locks). Every Redis failure is mapped once, here,
to `proxy.errors.Unavailable`: callers never see a redis-py exception, and an unreachable Redis refuses
(fail closed) instead of serving.

Approvals never expire: verdicts, scan reports, file metadata and commit resolutions have no TTL. Only
branch/tag resolutions, cached upstream documents (when asked), progress notes and locks do.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, ParamSpec, TypeVar

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from proxy.errors import Unavailable
from proxy.models import FileMeta, RepoType, ScanReport, Verdict, VerdictStatus
from proxy.waivers import Waiver

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_PREFIX = "hubgate:"


class Keys:
    """The key schema. Components before the last never contain `:` (repo ids, enums, hex digests)."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        if not prefix:
            raise ValueError("the Redis key prefix must not be empty")
        self.prefix = prefix

    def revision(self, repo_type: str, repo_id: str, revision: str) -> str:
        """STRING commit sha. Branch/tag: TTL (settings.revision_ttl). A commit sha: no TTL."""
        return f"{self.prefix}rev:{repo_type}:{repo_id}:{revision}"

    def revisions_offline(self, repo_type: str, repo_id: str) -> str:
        """HASH revision -> last commit it resolved to. No TTL: offline mode serves from it."""
        return f"{self.prefix}revs:{repo_type}:{repo_id}"

    def file_meta(self, repo_type: str, repo_id: str, commit: str, path: str) -> str:
        """STRING FileMeta JSON. No TTL: a commit's files never change."""
        return f"{self.prefix}file:{repo_type}:{repo_id}:{commit}:{path}"

    def doc(self, kind: str, key: str) -> str:
        """STRING JSON of an upstream API answer. TTL chosen by the caller (None: kept for offline)."""
        return f"{self.prefix}doc:{kind}:{key}"

    def scan(self, sha256: str) -> str:
        """STRING ScanReport JSON, by content. No TTL (re-scanned when engine versions change)."""
        return f"{self.prefix}scan:{sha256}"

    def verdict(self, artifact_id: str) -> str:
        """STRING Verdict JSON. No TTL, ever: approvals never silently expire."""
        return f"{self.prefix}verdict:{artifact_id}"

    def status_index(self, status: VerdictStatus) -> str:
        """SET of artifact ids per status (`...:quarantined` is the admin queue). No TTL."""
        return f"{self.prefix}idx:status:{status.value}"

    def by_sha256(self, sha256: str) -> str:
        """SET of artifact ids with this content. No TTL."""
        return f"{self.prefix}idx:sha256:{sha256}"

    def by_repo(self, repo_type: str, repo_id: str) -> str:
        """SET of artifact ids of this repo (any commit). No TTL."""
        return f"{self.prefix}idx:repo:{repo_type}:{repo_id}"

    @property
    def audit(self) -> str:
        """STREAM of decisions, admin actions, policy reloads. No TTL, never trimmed or rewritten."""
        return f"{self.prefix}audit"

    def verdict_channel(self, artifact_id: str) -> str:
        """Pub/sub channel announcing a new verdict (not a key; nothing is stored)."""
        return f"{self.prefix}chan:verdict:{artifact_id}"

    def lock(self, name: str) -> str:
        """STRING random token. PX TTL, renewed while held (single-flight across replicas)."""
        return f"{self.prefix}lock:{name}"

    def progress(self, key: str) -> str:
        """STRING JSON progress note for 429 messages. TTL (default 1 h)."""
        return f"{self.prefix}progress:{key}"

    @property
    def waivers(self) -> str:
        """HASH waiver id -> Waiver JSON, revoked and expired ones included (history). No TTL."""
        return f"{self.prefix}waivers"

    def waiver_applied(self, waiver_id: str) -> str:
        """SET of artifact ids already served under this waiver (audited once each). No TTL."""
        return f"{self.prefix}waiver-applied:{waiver_id}"

    def vet_job(self, job_id: str) -> str:
        """STRING JSON state of a prefetch (`hubgate vet`) job, readable by any replica. TTL (default 7 d)."""
        return f"{self.prefix}vetjob:{job_id}"


# Compare-token scripts: only the holder may renew or release (a plain DEL could free someone else's lock
# after ours expired).
_RENEW_LUA = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE_LUA = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


def _unavailable(exc: Exception) -> Unavailable:
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError):
        return Unavailable(
            f"hubgate: Redis is unreachable ({type(exc).__name__}: {exc}); refusing to serve until it is back"
        )
    return Unavailable(f"hubgate: Redis answered with an error ({type(exc).__name__}: {exc}); refusing to serve")


def _mapped(method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Map every redis-py (and socket) failure to `Unavailable`, once, at this boundary."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc

    return wrapper


def _corrupt(what: str, key: str, exc: Exception) -> Unavailable:
    return Unavailable(f"hubgate: the record {key} ({what}) in Redis is unreadable ({exc}); refusing to use it")


class VerdictStore:
    """Typed access to hubgate's Redis state. Create with `await VerdictStore.connect(url)`."""

    def __init__(self, client: aioredis.Redis, prefix: str = DEFAULT_PREFIX) -> None:
        # redis-py's stubs type every reply as `bytes | str` whatever `decode_responses` says; with
        # decode_responses=True (set in connect) replies are str, so the client is untyped here.
        self._redis: Any = client
        self.keys = Keys(prefix)
        self._renew = client.register_script(_RENEW_LUA)
        self._release = client.register_script(_RELEASE_LUA)

    @classmethod
    async def connect(
        cls,
        url: str,
        prefix: str = DEFAULT_PREFIX,
        *,
        socket_timeout: float = 5.0,
        verify: bool = False,
    ) -> VerdictStore:
        """A store over a connection pool. Lazy by default: an unreachable Redis shows up per call (and in
        /healthz), so the server can start and come back with it. `verify=True` pings now."""
        client = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=socket_timeout,
            socket_connect_timeout=min(socket_timeout, 2.0),
            # One quick retry survives a dropped pooled connection; more would only delay the 503.
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
            health_check_interval=30,
        )
        store = cls(client, prefix)
        if verify:
            try:
                await client.ping()
            except (RedisError, OSError) as exc:
                await client.aclose()
                raise _unavailable(exc) from exc
        return store

    async def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()

    async def ping(self) -> bool:
        """True when Redis answers; never raises (for /healthz)."""
        try:
            return bool(await self._redis.ping())
        except Exception:
            return False

    # -- revisions ----------------------------------------------------------------------------------

    @_mapped
    async def get_revision(self, repo_type: str, repo_id: str, revision: str) -> str | None:
        value: str | None = await self._redis.get(self.keys.revision(str(repo_type), repo_id, revision))
        return value

    @_mapped
    async def set_revision(self, repo_type: str, repo_id: str, revision: str, commit: str, ttl: int | None) -> None:
        """Cache a resolution (ttl None: never expires, for commit shas) and keep the offline copy."""
        rt = str(repo_type)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.revision(rt, repo_id, revision), commit, ex=ttl)
            pipe.hset(self.keys.revisions_offline(rt, repo_id), revision, commit)
            await pipe.execute()

    @_mapped
    async def get_revision_offline(self, repo_type: str, repo_id: str, revision: str) -> str | None:
        """The last commit `revision` resolved to, however old (offline mode only)."""
        value: str | None = await self._redis.hget(self.keys.revisions_offline(str(repo_type), repo_id), revision)
        return value

    @_mapped
    async def list_revisions(self, repo_type: str, repo_id: str) -> dict[str, str]:
        """Every revision ever resolved for this repo -> its last known commit."""
        result: dict[str, str] = await self._redis.hgetall(self.keys.revisions_offline(str(repo_type), repo_id))
        return result

    # -- file metadata, upstream documents, scan reports ----------------------------------------------

    @_mapped
    async def get_file_meta(self, repo_type: str, repo_id: str, commit: str, path: str) -> FileMeta | None:
        key = self.keys.file_meta(str(repo_type), repo_id, commit, path)
        raw = await self._redis.get(key)
        return None if raw is None else _parse(FileMeta, raw, key)

    @_mapped
    async def set_file_meta(self, repo_type: str, repo_id: str, commit: str, meta: FileMeta) -> None:
        await self._redis.set(self.keys.file_meta(str(repo_type), repo_id, commit, meta.path), meta.model_dump_json())

    @_mapped
    async def get_doc(self, kind: str, key: str) -> dict[str, Any] | list[Any] | None:
        redis_key = self.keys.doc(kind, key)
        raw = await self._redis.get(redis_key)
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise _corrupt("document", redis_key, exc) from exc
        if not isinstance(value, dict | list):
            raise _corrupt("document", redis_key, TypeError(f"expected an object or a list, got {type(value)}"))
        return value

    @_mapped
    async def set_doc(self, kind: str, key: str, value: dict[str, Any] | list[Any], ttl: int | None = None) -> None:
        await self._redis.set(self.keys.doc(kind, key), json.dumps(value, separators=(",", ":")), ex=ttl)

    @_mapped
    async def get_scan(self, sha256: str) -> ScanReport | None:
        key = self.keys.scan(sha256)
        raw = await self._redis.get(key)
        return None if raw is None else _parse(ScanReport, raw, key)

    @_mapped
    async def set_scan(self, report: ScanReport) -> None:
        await self._redis.set(self.keys.scan(report.sha256), report.model_dump_json())

    # -- verdicts -------------------------------------------------------------------------------------

    @_mapped
    async def get_verdict(self, artifact_id: str) -> Verdict | None:
        key = self.keys.verdict(artifact_id)
        raw = await self._redis.get(key)
        return None if raw is None else _parse(Verdict, raw, key)

    @_mapped
    async def get_verdicts(self, artifact_ids: Iterable[str]) -> list[Verdict]:
        """The verdicts that exist among `artifact_ids` (missing ones are skipped), in the given order."""
        keys = [self.keys.verdict(a) for a in artifact_ids]
        if not keys:
            return []
        raws = await self._redis.mget(keys)
        return [_parse(Verdict, raw, key) for key, raw in zip(keys, raws, strict=True) if raw is not None]

    @_mapped
    async def put_verdict(
        self, verdict: Verdict, *, event: str, actor: str, detail: dict[str, Any] | None = None
    ) -> None:
        """Record a verdict atomically: the record, every index, one audit entry, one announcement."""
        k = self.keys
        aid = verdict.artifact_id
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(k.verdict(aid), verdict.model_dump_json())
            for status in VerdictStatus:
                if status is verdict.status:
                    pipe.sadd(k.status_index(status), aid)
                else:
                    pipe.srem(k.status_index(status), aid)
            pipe.sadd(k.by_sha256(verdict.sha256), aid)
            pipe.sadd(k.by_repo(verdict.repo_type.value, verdict.repo_id), aid)
            pipe.xadd(
                k.audit,
                {
                    "ts": repr(time.time()),
                    "event": event,
                    "actor": actor,
                    "artifact_id": aid,
                    "status": verdict.status.value,
                    "reasons": json.dumps(verdict.reasons),
                    "ref": verdict.ref.human,
                    "sha256": verdict.sha256,
                    "detail": json.dumps(detail or {}, default=str),
                },
            )
            pipe.publish(k.verdict_channel(aid), verdict.status.value)
            await pipe.execute()

    @_mapped
    async def ids_by_sha256(self, sha256: str) -> set[str]:
        result: set[str] = await self._redis.smembers(self.keys.by_sha256(sha256))
        return result

    @_mapped
    async def ids_by_repo(self, repo_type: str, repo_id: str) -> set[str]:
        result: set[str] = await self._redis.smembers(self.keys.by_repo(str(repo_type), repo_id))
        return result

    @_mapped
    async def count_by_status(self) -> dict[VerdictStatus, int]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for status in VerdictStatus:
                pipe.scard(self.keys.status_index(status))
            counts = await pipe.execute()
        return dict(zip(VerdictStatus, counts, strict=True))

    @_mapped
    async def list_verdicts(self, status: VerdictStatus | None = None, limit: int = 1000) -> list[Verdict]:
        """Verdicts with `status` (all when None), most recently updated first, at most `limit`."""
        statuses = [status] if status is not None else list(VerdictStatus)
        ids: set[str] = set()
        for s in statuses:
            ids |= await self._redis.smembers(self.keys.status_index(s))
        verdicts = await self.get_verdicts(sorted(ids))
        verdicts.sort(key=lambda v: (v.updated_at, v.artifact_id), reverse=True)
        return verdicts[:limit]

    @_mapped
    async def find_verdicts(
        self,
        repo_id: str,
        path: str | None = None,
        *,
        repo_type: str | None = None,
        commit: str | None = None,
    ) -> list[Verdict]:
        """Verdicts for a human reference `org/name@rev:path`: any repo type unless given; `commit` matches
        as a prefix (refs show 12 hex digits). Most recently updated first."""
        types = [str(repo_type)] if repo_type is not None else [t.value for t in RepoType]
        ids: set[str] = set()
        for rt in types:
            ids |= await self._redis.smembers(self.keys.by_repo(rt, repo_id))
        found = [
            v
            for v in await self.get_verdicts(sorted(ids))
            if (path is None or v.path == path) and (commit is None or v.commit.startswith(commit))
        ]
        found.sort(key=lambda v: (v.updated_at, v.artifact_id), reverse=True)
        return found

    async def wait_verdict(self, artifact_id: str, timeout: float) -> Verdict | None:
        """The verdict once one exists, or None after `timeout` seconds. Listens on the verdict channel
        (subscribed before the first look, so nothing is missed) and re-reads every 0.5 s regardless."""
        deadline = asyncio.get_running_loop().time() + timeout
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            try:
                await pubsub.subscribe(self.keys.verdict_channel(artifact_id))
            except (RedisError, OSError) as exc:
                raise _unavailable(exc) from exc
            while True:
                verdict = await self.get_verdict(artifact_id)
                remaining = deadline - asyncio.get_running_loop().time()
                if verdict is not None or remaining <= 0:
                    return verdict
                try:
                    await pubsub.get_message(timeout=min(0.5, remaining))
                except (RedisError, OSError):
                    await asyncio.sleep(min(0.1, max(remaining, 0)))  # the next get_verdict decides
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()

    # -- audit --------------------------------------------------------------------------------------

    @_mapped
    async def append_audit(self, event: str, actor: str, **fields: str) -> str:
        """Append one audit entry (policy reloads, admin actions without a verdict, ...); returns its id."""
        entry = {
            "ts": repr(time.time()),
            "event": event,
            "actor": actor,
            **{k: str(v) for k, v in fields.items()},
        }
        entry_id: str = await self._redis.xadd(self.keys.audit, entry)
        return entry_id

    @_mapped
    async def read_audit(
        self,
        since: float | None = None,
        count: int = 1000,
        artifact_id: str | None = None,
        event: str | None = None,
    ) -> list[dict[str, str]]:
        """Audit entries, oldest first, each with its stream `id`. With `since` (epoch seconds): the first
        `count` matching entries from then on. Without: the latest `count` matching entries."""

        def wanted(fields: dict[str, str]) -> bool:
            return (artifact_id is None or fields.get("artifact_id") == artifact_id) and (
                event is None or fields.get("event") == event
            )

        batch = max(count, 100)
        found: list[dict[str, str]] = []
        if since is not None:
            start = f"{int(since * 1000)}-0"
            while len(found) < count:
                entries = await self._redis.xrange(self.keys.audit, min=start, max="+", count=batch)
                found += [{"id": eid, **f} for eid, f in entries if wanted(f)]
                if len(entries) < batch:
                    break
                start = "(" + entries[-1][0]
            return found[:count]
        end = "+"
        while len(found) < count:
            entries = await self._redis.xrevrange(self.keys.audit, max=end, min="-", count=batch)
            found += [{"id": eid, **f} for eid, f in entries if wanted(f)]
            if len(entries) < batch:
                break
            end = "(" + entries[-1][0]
        return list(reversed(found[:count]))

    # -- single-flight locks ------------------------------------------------------------------------

    @_mapped
    async def acquire_lock(self, name: str, ttl_ms: int) -> str | None:
        """Take the lock if free: returns the token proving ownership, or None when someone holds it."""
        token = secrets.token_hex(16)
        ok = await self._redis.set(self.keys.lock(name), token, nx=True, px=ttl_ms)
        return token if ok else None

    @_mapped
    async def renew_lock(self, name: str, token: str, ttl_ms: int) -> bool:
        """Extend the lock to `ttl_ms` from now if we still hold it."""
        return bool(await self._renew(keys=[self.keys.lock(name)], args=[token, ttl_ms]))

    @_mapped
    async def release_lock(self, name: str, token: str) -> bool:
        """Free the lock if we still hold it (False: it had expired, maybe taken by someone else)."""
        return bool(await self._release(keys=[self.keys.lock(name)], args=[token]))

    @contextlib.asynccontextmanager
    async def hold_lock(self, name: str, ttl_ms: int) -> AsyncIterator[str | None]:
        """`async with store.hold_lock(name, ttl) as token:` — token is None when another holder has it.
        While held, a background task renews it every ttl/3; on exit the task is cancelled and the lock
        released. A lost lock (renewal refused) is logged: the content-addressed store makes a duplicate
        fetch harmless, so the holder carries on."""
        token = await self.acquire_lock(name, ttl_ms)
        if token is None:
            yield None
            return
        renewer = asyncio.create_task(self._keep_renewed(name, token, ttl_ms), name=f"hubgate-lock:{name}")
        try:
            yield token
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            with contextlib.suppress(Unavailable):  # it expires by itself
                await self.release_lock(name, token)

    async def _keep_renewed(self, name: str, token: str, ttl_ms: int) -> None:
        interval = max(ttl_ms / 3000, 0.01)
        while True:
            await asyncio.sleep(interval)
            try:
                if not await self.renew_lock(name, token, ttl_ms):
                    log.warning("lost the lock %s (expired before renewal)", name)
                    return
            except Unavailable as exc:
                log.warning("could not renew the lock %s: %s", name, exc)

    # -- progress notes -----------------------------------------------------------------------------

    @_mapped
    async def set_progress(self, key: str, info: dict[str, Any], ttl: int = 3600) -> None:
        await self._redis.set(self.keys.progress(key), json.dumps(info, default=str), ex=ttl)

    @_mapped
    async def get_progress(self, key: str) -> dict[str, Any] | None:
        raw = await self._redis.get(self.keys.progress(key))
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            return None  # only a progress note: unreadable means unknown
        return value if isinstance(value, dict) else None

    # -- waivers and prefetch jobs -------------------------------------------------------------------

    @_mapped
    async def put_waiver(self, waiver: Waiver, *, event: str, actor: str) -> None:
        """Store (create or update) a waiver and audit it, atomically."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.waivers, waiver.id, waiver.model_dump_json())
            pipe.xadd(
                self.keys.audit,
                {
                    "ts": repr(time.time()),
                    "event": event,
                    "actor": actor,
                    "waiver": waiver.id,
                    "scope": waiver.scope.value,
                    "ref": waiver.target,
                    "artifact_id": waiver.artifact_id,
                    "sha256": waiver.sha256,
                    "detail": json.dumps(
                        {"reason": waiver.revoke_reason or waiver.reason, "expires_at": waiver.expires_at}
                    ),
                },
            )
            await pipe.execute()

    @_mapped
    async def get_waiver(self, waiver_id: str) -> Waiver | None:
        raw = await self._redis.hget(self.keys.waivers, waiver_id)
        return None if raw is None else _parse(Waiver, raw, f"{self.keys.waivers}[{waiver_id}]")

    @_mapped
    async def list_waivers(self) -> list[Waiver]:
        """Every waiver ever made (check `active(now)`), newest first."""
        raw: dict[str, str] = await self._redis.hgetall(self.keys.waivers)
        found = [_parse(Waiver, value, f"{self.keys.waivers}[{wid}]") for wid, value in raw.items()]
        found.sort(key=lambda w: (w.created_at, w.id), reverse=True)
        return found

    @_mapped
    async def mark_waiver_applied(self, waiver_id: str, artifact_id: str) -> bool:
        """True the first time this artifact is served under this waiver (so it is audited once)."""
        return bool(await self._redis.sadd(self.keys.waiver_applied(waiver_id), artifact_id))

    @_mapped
    async def put_vet_job(self, job_id: str, state: dict[str, Any], ttl: int = 7 * 86400) -> None:
        await self._redis.set(self.keys.vet_job(job_id), json.dumps(state, default=str), ex=ttl)

    @_mapped
    async def get_vet_job(self, job_id: str) -> dict[str, Any] | None:
        key = self.keys.vet_job(job_id)
        raw = await self._redis.get(key)
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise _corrupt("vet job", key, exc) from exc
        return value if isinstance(value, dict) else None


M = TypeVar("M", FileMeta, ScanReport, Verdict, Waiver)


def _parse(model: type[M], raw: str, key: str) -> M:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise _corrupt(model.__name__, key, exc) from exc
