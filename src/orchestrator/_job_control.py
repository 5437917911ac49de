"""Job control: one job's state, run history, and the operator's retry and cancel.

Each function takes a pool and answers from the documented views or changes one job; the
:class:`~orchestrator.Orchestrator` methods of the same names call them.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

import psycopg
from procrastinate.manager import JobManager
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from orchestrator import _status as status
from orchestrator._driver_errors import constraint_name
from orchestrator._errors import DuplicateJob, JobNotFound, OrchestratorError
from orchestrator._queries import QUERIES

Pool = AsyncConnectionPool[psycopg.AsyncConnection[DictRow]]

#: procrastinate's unique index of waiting jobs per queueing lock (our dedupe key).
QUEUEING_LOCK_CONSTRAINT = "procrastinate_jobs_queueing_lock_idx_v1"
FINISHED_STATES = ("completed", "failed", "cancelled")


async def get_job(pool: Pool, job_id: int) -> dict[str, Any]:
    async with pool.connection() as conn:
        job = await status.get_job(conn, job_id)
    if job is None:
        raise JobNotFound(f"no workflow job with id {job_id}")
    return job


async def list_runs(pool: Pool, **filters: Any) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        return await status.list_runs(conn, **filters)


async def job_external_calls(pool: Pool, job_id: int) -> list[dict[str, Any]]:
    """The job's recorded external calls, oldest first, each saying whether it is in doubt."""
    async with pool.connection() as conn:
        cursor = await conn.execute(QUERIES["job_external_calls"], {"job_id": job_id})
        return list(await cursor.fetchall())


async def retry_job(pool: Pool, job_id: int) -> None:
    """Send a failed or cancelled job back to the queue with a fresh attempt budget."""
    job = await get_job(pool, job_id)
    if job["state"] not in ("failed", "cancelled"):
        raise OrchestratorError(
            f"job {job_id} is {job['state']}; only failed or cancelled jobs can be retried"
        )
    async with pool.connection() as conn:
        try:
            cursor = await conn.execute(QUERIES["retry_failed_job"], {"job_id": job_id})
        except psycopg.errors.UniqueViolation as exc:
            if constraint_name(exc) != QUEUEING_LOCK_CONSTRAINT:
                raise
            raise DuplicateJob(
                f"job {job_id} not retried: another waiting job holds its dedupe key "
                f"{job['dedupe_key']!r}"
            ) from None
        if await cursor.fetchone() is None:
            raise OrchestratorError(f"job {job_id} changed state; not retried")


async def cancel_job(pool: Pool, job_manager: JobManager, job_id: int) -> str:
    """Cancel a waiting job, or ask a running one to abort. Returns what happened."""
    job = await get_job(pool, job_id)
    if job["state"] in FINISHED_STATES:
        raise OrchestratorError(f"job {job_id} is already {job['state']}")
    done = await job_manager.cancel_job_by_id_async(job_id, abort=True)
    if not done:
        raise OrchestratorError(f"job {job_id} could not be cancelled (it just finished?)")
    return "abort requested" if job["state"] == "active" else "cancelled"


async def unfinished_job_with_key(pool: Pool, dedupe_key: str) -> dict[str, Any] | None:
    """``{job_id, state}`` of the waiting, delayed or running job holding ``dedupe_key``."""
    async with pool.connection() as conn:
        cursor = await conn.execute(QUERIES["unfinished_job_by_dedupe_key"], {"key": dedupe_key})
        return await cursor.fetchone()


@dataclass
class BulkRetry:
    """What a bulk retry did: the jobs queued again, and those left alone with the reason."""

    queued: list[int] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)


async def retry_jobs(
    pool: Pool, workflow: str, state: str = "failed", since: datetime.datetime | None = None
) -> BulkRetry:
    """Send every ``state`` job (failed or cancelled) of ``workflow`` back to the queue,
    each with a fresh attempt budget; ``since`` keeps those whose last attempt finished
    then or later. A job that cannot be retried (its dedupe key is taken by a waiting job,
    it changed state meanwhile) is skipped with the reason; the others still go."""
    if state not in ("failed", "cancelled"):
        raise ValueError(f"only failed or cancelled jobs can be retried, not {state!r}")
    async with pool.connection() as conn:
        cursor = await conn.execute(
            QUERIES["jobs_to_retry"], {"workflow": workflow, "state": state, "since": since}
        )
        candidates = [int(row["job_id"]) for row in await cursor.fetchall()]
    result = BulkRetry()
    for job_id in candidates:
        try:
            await retry_job(pool, job_id)
        except OrchestratorError as exc:
            result.skipped.append((job_id, str(exc)))
        else:
            result.queued.append(job_id)
    return result
