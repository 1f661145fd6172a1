"""The vetting pipeline: fetch → quarantine → scan → decide → record, exactly once per artifact.

    vet(ref) ──► verdict known and current? ──► return it (re-decided from the stored scan if the policy changed)
        └─► single-flight (in-process task + Redis lock shared by replicas)
              └─► stream to tmp/ (hash while writing) → verify size/sha256/git sha1 → quarantine/<sha256>
                  → scan in a worker process → policy → verdict in Redis (+ audit) → approved: promote to blobs/

Everything that cannot prove "approved" refuses (see `refusal`). Callers wait at most `hold` seconds; the work
itself is shielded from client disconnects and kept referenced until done.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from proxy.errors import Blocked, IntegrityError, Quarantined, Refused, Unavailable, UpstreamError, VettingInProgress
from proxy.metrics import Metrics
from proxy.models import (
    Action,
    ArtifactRef,
    FileMeta,
    RepoMeta,
    ScanReport,
    ScanVerdict,
    Verdict,
    VerdictStatus,
)
from proxy.policy import decide
from proxy.policy_state import PolicyState
from proxy.scan.pool import ScanPool, report_is_current
from proxy.store import BlobStore
from proxy.upstreams.base import ContentSource
from proxy.verdicts import VerdictStore
from proxy.waivers import Waiver, find_waiver

log = logging.getLogger("hubgate.pipeline")

LOCK_TTL_MS = 30_000
PROGRESS_EVERY_S = 1.0


def refusal(verdict: Verdict) -> Refused:
    """The 403 a client sees: what was decided, why, which artifact, and what to do next."""
    why = "; ".join(verdict.reasons) or "no reason recorded"
    aid = verdict.artifact_id
    if verdict.status is VerdictStatus.REJECTED:
        msg = f"hubgate: rejected by {verdict.admin_by or 'an admin'}: {verdict.admin_reason or why} (artifact {aid})"
        return Blocked(msg + "; ask an admin to revoke the rejection if this is wrong", artifact_id=aid)
    if verdict.status is VerdictStatus.QUARANTINED:
        return Quarantined(
            f"hubgate: quarantined by policy: {why} (artifact {aid}); "
            f"ask an admin to review it: hubgate approve {aid} --reason '...'",
            artifact_id=aid,
        )
    return Blocked(
        f"hubgate: blocked by policy: {why} (artifact {aid}); "
        f"if this is a false positive, ask an admin: hubgate approve {aid} --reason '...'",
        artifact_id=aid,
    )


def servable(verdict: Verdict) -> bool:
    """Approved, or recorded under an audit-mode policy (served with a warning) unless an admin rejected it."""
    if verdict.status is VerdictStatus.APPROVED:
        return True
    return verdict.mode == "audit" and verdict.admin_status is None and verdict.status is not VerdictStatus.REJECTED


def _blind_approval(verdict: Verdict | None) -> bool:
    """An admin approval given when no scan existed (the artifact was refused on repo facts alone)."""
    return verdict is not None and verdict.admin_status is VerdictStatus.APPROVED and verdict.scan_verdict is None


def verify_download(meta: FileMeta, size: int, sha256: str, git_sha1: str | None, what: str) -> None:
    """Raise IntegrityError unless the bytes are exactly what the upstream's metadata promised."""
    if meta.size >= 0 and size != meta.size:
        raise IntegrityError(
            f"hubgate: download of {what} is {size} bytes, the upstream promised {meta.size}; nothing was kept"
        )
    if meta.sha256 and sha256 != meta.sha256:
        raise IntegrityError(f"hubgate: sha256 mismatch for {what} (got {sha256}); nothing was kept")
    if meta.git_oid and git_sha1 != meta.git_oid:
        raise IntegrityError(f"hubgate: git blob id mismatch for {what} (got {git_sha1}); nothing was kept")
    if meta.sha256_prefix and not sha256.startswith(meta.sha256_prefix):
        raise IntegrityError(
            f"hubgate: {what} names hash prefix {meta.sha256_prefix} but its sha256 is {sha256}; nothing was kept"
        )


class Pipeline:
    def __init__(
        self,
        *,
        store: VerdictStore,
        blobs: BlobStore,
        scans: ScanPool,
        policy: PolicyState,
        metrics: Metrics,
        max_file_size: int,
        offline: bool = False,
        on_decision: Callable[[Verdict], Awaitable[None]] | None = None,
        max_concurrent_fetches: int = 8,
        min_free_bytes: int = 1024**3,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.scans = scans
        self.policy = policy
        self.metrics = metrics
        self.max_file_size = max_file_size
        self.offline = offline
        self.on_decision = on_decision
        self._tasks: dict[str, asyncio.Task[Verdict]] = {}
        self._fetch_slots = asyncio.Semaphore(max_concurrent_fetches)
        self.min_free_bytes = min_free_bytes

    # ---- the entry point -------------------------------------------------------------------------

    async def vet(
        self,
        ref: ArtifactRef,
        meta: FileMeta,
        repo: RepoMeta,
        source: ContentSource | None,
        *,
        hold: float | None = None,
    ) -> Verdict:
        """The artifact's verdict, vetting it first if needed. Raises VettingInProgress after `hold` seconds."""
        answer = await self._stored_answer(await self.store.get_verdict(ref.artifact_id), ref, repo)
        if answer is not None:
            if servable(answer):
                self.metrics.cache_hits.inc()
            return answer
        if source is None:
            from proxy.hfmeta import offline_refusal

            raise offline_refusal(ref.human, commit=ref.commit)
        task = self._tasks.get(ref.artifact_id)
        if task is None:
            task = asyncio.create_task(self._vet_once(ref, meta, repo, source), name=f"vet:{ref.artifact_id}")
            self._tasks[ref.artifact_id] = task
            task.add_done_callback(functools.partial(self._forget, ref.artifact_id))
        try:
            return await asyncio.wait_for(asyncio.shield(task), timeout=hold)
        except TimeoutError:
            raise VettingInProgress(await self._progress_message(ref), retry_after=2) from None

    def _forget(self, artifact_id: str, task: asyncio.Task[Verdict]) -> None:
        if self._tasks.get(artifact_id) is task:
            del self._tasks[artifact_id]
        if not task.cancelled() and task.exception() is not None:
            log.warning("vetting %s failed: %s", artifact_id, task.exception())

    def blob_path(self, verdict: Verdict) -> Path:
        """The bytes of an approved verdict; anything else is a refusal."""
        if not servable(verdict):
            raise refusal(verdict)
        path = self.blobs.blob_path(verdict.sha256)
        if path is None:
            raise UpstreamError(f"hubgate: the vetted bytes of artifact {verdict.artifact_id} are missing; retry")
        size = _size_or_none(path)
        if verdict.size >= 0 and size != verdict.size:
            # changed on disk since it was vetted (truncated, appended to, replaced): never serve it; dropping
            # it makes the next request fetch and verify a fresh copy
            log.error("blob %s is %s bytes, %d were vetted; deleting it", verdict.sha256, size, verdict.size)
            with contextlib.suppress(OSError):
                path.unlink()
            raise UpstreamError(
                f"hubgate: the stored bytes of artifact {verdict.artifact_id} are not the ones that were vetted "
                "(size changed on disk); they were dropped, retry to fetch them again"
            )
        return path

    refusal = staticmethod(refusal)

    async def wait_idle(self) -> None:
        """Wait for every vetting task (shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    # ---- decisions -------------------------------------------------------------------------------

    async def _stored_answer(self, stored: Verdict | None, ref: ArtifactRef, repo: RepoMeta) -> Verdict | None:
        """The answer from the stored verdict under today's policy (and any waiver), or None when the artifact
        must be vetted: a servable or waived verdict whose bytes are gone is fetched again. Checked before the
        vetting lock and again under it (another replica may have finished meanwhile)."""
        if stored is None:
            return None
        current = await self._current(stored, ref, repo)
        if current is None:
            return None
        waiver = await self.waiver_for(current)
        if not (servable(current) or waiver) or self.blobs.blob_path(current.sha256):
            return await self._under_waiver(current, waiver)
        return None

    async def _current(self, verdict: Verdict, ref: ArtifactRef, repo: RepoMeta) -> Verdict | None:
        """The verdict under today's policy: re-decided from the stored scan, never re-downloaded.

        None means it must be vetted again (the scan engines changed, or no scan exists for a verdict that
        would now allow the file).
        """
        policy = self.policy.current
        if verdict.admin_status is not None or verdict.policy_hash == policy.hash:
            return verdict
        report = await self.store.get_scan(verdict.sha256) if verdict.scan_verdict is not None else None
        if report is not None and not report_is_current(report, self.scans.engine_versions):
            return None
        decision = decide(report, ref, repo, policy)
        if report is None and decision.action is not Action.BLOCK:
            return None
        updated = Verdict.from_decision(
            ref, sha256=verdict.sha256, size=verdict.size, report=report, decision=decision, previous=verdict
        )
        if servable(updated) and self.blobs.blob_path(updated.sha256) is None:
            if self.blobs.quarantine_path(updated.sha256) is None:
                return None
            await self.blobs.promote(updated.sha256)
        await self._record(updated, event="redecide", actor="policy", previous=verdict)
        return updated

    async def _record(self, verdict: Verdict, *, event: str, actor: str, previous: Verdict | None = None) -> None:
        await self.store.put_verdict(verdict, event=event, actor=actor)
        self.metrics.verdicts.labels(verdict.status.value, verdict.decided_by.split(":")[0]).inc()
        # only a *new* quarantine or block is announced: a re-decision that keeps the status is not news
        is_new = previous is None or previous.status is not verdict.status
        if (
            self.on_decision is not None
            and is_new
            and verdict.status in (VerdictStatus.QUARANTINED, VerdictStatus.BLOCKED)
        ):
            with contextlib.suppress(Exception):
                await self.on_decision(verdict)

    # ---- waivers ---------------------------------------------------------------------------------

    async def waiver_for(self, verdict: Verdict) -> Waiver | None:
        """The active waiver that lets a refused verdict be served; read on every request, so revoking or
        expiring a waiver takes effect at once. Never for a servable verdict or an admin's reject."""
        if servable(verdict):
            return None
        return find_waiver(await self.store.list_waivers(), verdict, time.time())

    async def _under_waiver(self, verdict: Verdict, waiver: Waiver | None) -> Verdict:
        """What is served: the stored verdict, or (waived) a copy marked approved by the waiver. The copy is
        never stored; the first time a waiver lets an artifact through, the audit stream says so."""
        if waiver is None:
            return verdict
        if await self.store.mark_waiver_applied(waiver.id, verdict.artifact_id):
            await self.store.append_audit(
                "served-under-waiver",
                f"waiver:{waiver.id}",
                artifact_id=verdict.artifact_id,
                ref=verdict.ref.human,
                sha256=verdict.sha256,
                status=verdict.status.value,
                waiver=waiver.id,
                detail=f"served under waiver {waiver.id} ({waiver.target}) by {waiver.created_by}: {waiver.reason}",
            )
        return verdict.model_copy(update={"status": VerdictStatus.APPROVED, "decided_by": f"waiver:{waiver.id}"})

    # ---- the work, once --------------------------------------------------------------------------

    async def _vet_once(self, ref: ArtifactRef, meta: FileMeta, repo: RepoMeta, source: ContentSource) -> Verdict:
        lock = f"vet:{ref.artifact_id}"
        while True:
            token = await self.store.acquire_lock(lock, LOCK_TTL_MS)
            if token is not None:
                break
            # another replica is vetting it: wait for its verdict (its lock expires if it dies)
            done = await self.store.wait_verdict(ref.artifact_id, timeout=5.0)
            if done is not None:
                waiver = await self.waiver_for(done)
                if not (servable(done) or waiver) or self.blobs.blob_path(done.sha256):
                    return await self._under_waiver(done, waiver)
        renew = asyncio.create_task(self._renew(lock, token))
        self.metrics.vetting.inc()
        try:
            return await self._vet_locked(ref, meta, repo, source)
        finally:
            self.metrics.vetting.dec()
            renew.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renew
            with contextlib.suppress(Exception):
                await self.store.release_lock(lock, token)

    async def _renew(self, lock: str, token: str) -> None:
        while True:
            await asyncio.sleep(LOCK_TTL_MS / 3000)
            with contextlib.suppress(Exception):
                await self.store.renew_lock(lock, token, LOCK_TTL_MS)

    async def _vet_locked(self, ref: ArtifactRef, meta: FileMeta, repo: RepoMeta, source: ContentSource) -> Verdict:
        previous = await self.store.get_verdict(ref.artifact_id)
        answer = await self._stored_answer(previous, ref, repo)
        if answer is not None:
            return answer
        policy = self.policy.current
        if previous is None or previous.admin_status is None:
            early = decide(None, ref, repo, policy)
            if early.action is Action.BLOCK and early.mode != "audit":
                # refused on repo facts alone (license, publisher): no need to download gigabytes, unless a
                # waiver covers it: then the bytes are fetched, verified and scanned like any others
                verdict = Verdict.from_decision(
                    ref, sha256=meta.sha256 or "", size=meta.size, report=None, decision=early, previous=previous
                )
                if await self.waiver_for(verdict) is None:
                    await self._record(verdict, event="decision", actor="policy", previous=previous)
                    return verdict
        if meta.size > self.max_file_size:
            raise Blocked(
                f"hubgate: {ref.human} is {meta.size} bytes, above the limit of {self.max_file_size} "
                f"(HUBGATE_MAX_FILE_SIZE); ask an admin to raise it",
                artifact_id=ref.artifact_id,
            )
        started = time.monotonic()
        sha256, size = await self._fetch(ref, meta, source)
        fetched = time.monotonic()
        report = await self._scan(ref, sha256)
        scanned = time.monotonic()
        decision = decide(report, ref, repo, policy)
        keep = previous
        if _blind_approval(previous) and report.verdict is ScanVerdict.UNSAFE:
            # approved before any byte was scanned (a repo-level block): like a broad waiver, that approval
            # does not cover content the scanners found unsafe; the admin decides again with the findings
            assert previous is not None
            detail = (
                f"the approval by {previous.admin_by or 'an admin'} was given before the scan; the scan found "
                f"{ref.human} unsafe, so it was dropped: approve again with the findings in view if still wanted"
            )
            log.warning(detail)
            await self.store.append_audit("approval-dropped", "policy", artifact_id=ref.artifact_id, detail=detail)
            keep = previous.model_copy(update={"admin_status": None, "admin_by": "", "admin_reason": ""})
        verdict = Verdict.from_decision(ref, sha256=sha256, size=size, report=report, decision=decision, previous=keep)
        waiver = await self.waiver_for(verdict)
        if servable(verdict) or waiver:
            await self.blobs.promote(sha256)
        await self._record(verdict, event="decision", actor="policy", previous=previous)
        log.info(
            "vetted",
            extra={
                "artifact": ref.artifact_id,
                "ref": ref.human,
                "status": verdict.status.value,
                "bytes": size,
                "fetch_s": round(fetched - started, 3),
                "scan_s": round(scanned - fetched, 3),
                "record_s": round(time.monotonic() - scanned, 3),
            },
        )
        return await self._under_waiver(verdict, waiver)

    async def _fetch(self, ref: ArtifactRef, meta: FileMeta, source: ContentSource) -> tuple[str, int]:
        """Bytes into quarantine/, verified; returns (sha256, size). Content already held is not fetched again."""
        if meta.sha256 and (self.blobs.blob_path(meta.sha256) or self.blobs.quarantine_path(meta.sha256)):
            return meta.sha256, meta.size
        what = ref.human
        expected = meta.size if meta.size >= 0 else None
        limit = min(self.max_file_size, expected) if expected is not None else self.max_file_size
        if self._fetch_slots.locked():
            await self.store.set_progress(f"progress:{ref.artifact_id}", {"phase": "queued", "since": time.time()})
        async with self._fetch_slots:
            self._check_disk(what, expected)
            return await self._download(ref, meta, source, expected, limit)

    def _check_disk(self, what: str, expected: int | None) -> None:
        """Refuse before writing when the download would eat the reserve (a full disk fails every vetting)."""
        free = shutil.disk_usage(self.blobs.tmp_dir).free
        needed = (expected or 0) + self.min_free_bytes
        if free < needed:
            raise Unavailable(
                f"hubgate: not enough disk space to vet {what} ({expected if expected is not None else 'unknown'}"
                f" bytes; {free} free, {self.min_free_bytes} kept in reserve); try again later or ask an admin"
                " to free space (HUBGATE_MIN_FREE_DISK_MB)"
            )

    async def _download(
        self, ref: ArtifactRef, meta: FileMeta, source: ContentSource, expected: int | None, limit: int
    ) -> tuple[str, int]:
        what = ref.human
        started = last = time.monotonic()
        key = f"progress:{ref.artifact_id}"
        # the git blob id is needed only for files the upstream identifies by it (small, non-LFS files)
        async with self.blobs.open_tmp(expected_size=expected, git_size_header=meta.git_oid is not None) as writer:
            async with source.open() as chunks:
                async for chunk in chunks:
                    await writer.write(chunk)
                    self.metrics.upstream_bytes.inc(len(chunk))
                    if writer.size > limit:
                        # stop at once: a body past the promised size (an endless stream, a gzip bomb the
                        # client inflates) must not be written to disk up to the global limit first
                        raise IntegrityError(
                            f"hubgate: {what} is larger than the {limit} bytes "
                            f"{'the upstream promised' if limit < self.max_file_size else 'allowed'}"
                            "; download stopped, nothing was kept"
                        )
                    now = time.monotonic()
                    if now - last >= PROGRESS_EVERY_S:
                        last = now
                        await self.store.set_progress(
                            key,
                            {
                                "phase": "downloading",
                                "bytes": writer.size,
                                "total": meta.size,
                                "since": started,
                            },
                        )
            await writer.finish()
            try:
                verify_download(meta, writer.size, writer.sha256, writer.git_sha1, what)
            except IntegrityError as exc:
                await self.store.append_audit(
                    "integrity-failure", "hubgate", artifact_id=ref.artifact_id, detail=exc.message
                )
                raise
            await self.blobs.quarantine(writer)
            return writer.sha256, writer.size

    async def _scan(self, ref: ArtifactRef, sha256: str) -> ScanReport:
        report = await self.store.get_scan(sha256)
        if report is not None and report_is_current(report, self.scans.engine_versions):
            return report
        path = self.blobs.quarantine_path(sha256) or self.blobs.blob_path(sha256)
        if path is None:
            raise UpstreamError(f"hubgate: the quarantined bytes of {ref.human} vanished; retry")
        await self.store.set_progress(f"progress:{ref.artifact_id}", {"phase": "scanning", "since": time.time()})
        report = await self.scans.scan(path, display_name=ref.path, known_sha256=sha256)
        self.metrics.scan_seconds.observe(report.duration_s)
        await self.store.set_scan(report)
        return report

    async def _progress_message(self, ref: ArtifactRef) -> str:
        info = await self.store.get_progress(f"progress:{ref.artifact_id}") or {}
        phase = info.get("phase", "starting")
        detail = ""
        if phase == "downloading" and info.get("total", -1) > 0:
            detail = f" {100 * info.get('bytes', 0) // info['total']}% of {info['total']} bytes"
        return f"hubgate: vetting {ref.human} ({phase}{detail}); retry shortly"


def _size_or_none(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None
