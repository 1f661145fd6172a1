"""Prefetch jobs (`hubgate vet`, `POST /admin/api/vet`): fetch and vet a repo's files ahead of use.

A job lists the repo's files at one commit through the metadata layer, filters them by glob, and runs the
pipeline on each (bounded concurrency, no client waiting: `hold=None`). Its state is a JSON document in
Redis, updated as files finish, so any replica can answer `GET /admin/api/vet/{job}`. The work runs as a
background task of the server that accepted it, kept referenced until done.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import secrets
import time
from typing import Any

from proxy.errors import HubgateError
from proxy.hfmeta import HfMetadata
from proxy.models import ArtifactRef, RepoType, VerdictStatus
from proxy.pipeline import Pipeline, servable
from proxy.upstreams.hf import HfFileSource, HfUpstream
from proxy.verdicts import VerdictStore

log = logging.getLogger("hubgate.vet")

MAX_FILES = 10_000


def select(paths: list[str], include: list[str], exclude: list[str]) -> list[str]:
    """Paths matching any `include` glob (all when none) and no `exclude` glob, sorted."""
    chosen = [
        p
        for p in paths
        if (not include or any(fnmatch.fnmatchcase(p, g) for g in include))
        and not any(fnmatch.fnmatchcase(p, g) for g in exclude)
    ]
    return sorted(set(chosen))


def summarize(files: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in files:
        counts[f["status"]] = counts.get(f["status"], 0) + 1
    return counts


class VetJobs:
    def __init__(
        self,
        *,
        store: VerdictStore,
        meta: HfMetadata,
        pipeline: Pipeline,
        upstream: HfUpstream | None,
        concurrency: int = 4,
    ) -> None:
        self.store = store
        self.meta = meta
        self.pipeline = pipeline
        self.upstream = upstream
        self.concurrency = concurrency
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(
        self,
        repo_id: str,
        *,
        revision: str = "main",
        include: list[str] | None = None,
        exclude: list[str] | None = None,
        repo_type: RepoType = RepoType.MODEL,
        by: str = "admin",
    ) -> dict[str, Any]:
        """Create a job and start it in the background; returns its first state (with `id`)."""
        job_id = "v" + secrets.token_hex(6)
        state: dict[str, Any] = {
            "id": job_id,
            "repo_id": repo_id,
            "repo_type": repo_type.value,
            "revision": revision,
            "commit": "",
            "include": include or [],
            "exclude": exclude or [],
            "state": "queued",
            "by": by,
            "created_at": time.time(),
            "updated_at": time.time(),
            "total": 0,
            "done": 0,
            "files": [],
            "error": "",
        }
        await self.store.put_vet_job(job_id, state)
        await self.store.append_audit(
            "vet-job",
            f"admin:{by}",
            job=job_id,
            ref=f"{repo_id}@{revision}",
            detail=f"include={include} exclude={exclude}",
        )
        task = asyncio.create_task(self._run(state), name=f"vetjob:{job_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return state

    async def _save(self, state: dict[str, Any]) -> None:
        state["updated_at"] = time.time()
        state["summary"] = summarize(state["files"])
        await self.store.put_vet_job(state["id"], state)

    async def _run(self, state: dict[str, Any]) -> None:
        try:
            await self._work(state)
            state["state"] = "done"
        except asyncio.CancelledError:
            state["state"], state["error"] = "failed", "hubgate: the server stopped before the job finished"
            await asyncio.shield(self._save(state))
            raise
        except HubgateError as exc:
            what, why = f"{state['repo_id']}@{state['revision']}", exc.message.removeprefix("hubgate: ")
            state["state"], state["error"] = "failed", f"hubgate: cannot vet {what}: {why}"
        except Exception as exc:  # the job must end in a state a poller can see
            log.exception("vet job %s failed", state["id"])
            state["state"], state["error"] = "failed", f"hubgate: internal error: {type(exc).__name__}: {exc}"
        try:
            await self._save(state)
        except HubgateError:
            log.warning("could not record the end of vet job %s", state["id"])

    async def _work(self, state: dict[str, Any]) -> None:
        repo_type = RepoType(state["repo_type"])
        repo_id = state["repo_id"]
        state["state"] = "listing"
        await self._save(state)
        commit = await self.meta.resolve(repo_type, repo_id, state["revision"])
        info = await self.meta.info(repo_type, repo_id, commit)
        siblings = [s.get("rfilename") for s in info.get("siblings") or [] if isinstance(s, dict)]
        paths = select([p for p in siblings if isinstance(p, str)], state["include"], state["exclude"])[:MAX_FILES]
        repo = await self.meta.repo_meta(repo_type, repo_id, commit)
        state.update(commit=commit, total=len(paths), state="running")
        state["files"] = [{"path": p, "status": "pending", "id": "", "reasons": [], "size": None} for p in paths]
        await self._save(state)
        lock = asyncio.Lock()
        limit = asyncio.Semaphore(self.concurrency)

        async def one(entry: dict[str, Any]) -> None:
            async with limit:
                entry["status"] = "vetting"
                ref = ArtifactRef(source="hf", repo_type=repo_type, repo_id=repo_id, commit=commit, path=entry["path"])
                entry["id"] = ref.artifact_id
                try:
                    file_meta = await self.meta.file_meta(repo_type, repo_id, commit, entry["path"])
                    entry["size"] = file_meta.size
                    source = (
                        None
                        if self.meta.offline or self.upstream is None
                        else HfFileSource(self.upstream, repo_type, repo_id, commit, entry["path"])
                    )
                    verdict = await self.pipeline.vet(ref, file_meta, repo, source, hold=None)
                    entry["status"] = verdict.status.value
                    entry["served"] = servable(verdict)
                    entry["decided_by"] = verdict.decided_by
                    entry["reasons"] = verdict.reasons
                    if verdict.status is not VerdictStatus.APPROVED and servable(verdict):
                        entry["status"] = f"{verdict.status.value} (audit mode: served)"
                except HubgateError as exc:
                    entry["status"] = "error" if exc.status >= 500 or exc.status == 404 else "blocked"
                    entry["served"] = False
                    entry["reasons"] = [exc.message]
                async with lock:
                    state["done"] += 1
                    await self._save(state)

        await asyncio.gather(*(one(entry) for entry in state["files"]))

    async def get(self, job_id: str) -> dict[str, Any] | None:
        return await self.store.get_vet_job(job_id)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
