"""Crash recovery: jobs of dead workers go back to the queue; stuck statuses are reconciled.

Procrastinate leaves a SIGKILLed worker's job in ``doing`` forever, and a job whose final
status update failed stays ``doing`` under a live worker. A sweep (a periodic task every
``ORCHESTRATOR_RECOVERY_INTERVAL`` seconds, and once when ``orchestrator worker`` starts):

- re-queues ``doing`` jobs whose worker has been silent for ``ORCHESTRATOR_STALLED_AFTER``
  seconds (or is gone), marking their ``running`` agent_runs rows ``abandoned`` — or finishes
  them as succeeded when their success was already committed;
- applies the outcome recorded in agent_runs to jobs still ``doing`` ``reconcile_after``
  seconds after that outcome was written.

A job abandoned :data:`MAX_ABANDONED` times fails instead of looping forever: something in
it kills its worker.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass, field
from typing import Any

from procrastinate.jobs import Status
from procrastinate.manager import JobManager
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from orchestrator._queries import QUERIES

logger = logging.getLogger("orchestrator.recovery")

MAX_ABANDONED = 5
#: pg_try_advisory_lock key held by the sweep ("orchrcvr"), so sweeps never overlap.
RECOVERY_LOCK_KEY = 0x6F72636872637672


@dataclass
class RecoveryReport:
    requeued: list[int] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    reconciled: list[int] = field(default_factory=list)
    skipped: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "requeued": self.requeued,
            "finished": self.finished,
            "failed": self.failed,
            "reconciled": self.reconciled,
            "skipped": self.skipped,
        }


async def recover(
    pool: AsyncConnectionPool[AsyncConnection[DictRow]],
    job_manager: JobManager,
    *,
    stalled_after: float,
    reconcile_after: float,
) -> RecoveryReport:
    """One sweep; safe to run from several processes at once (one does the work)."""
    report = RecoveryReport()
    async with pool.connection() as lock_conn:
        await lock_conn.set_autocommit(True)
        try:
            cursor = await lock_conn.execute(
                "SELECT pg_try_advisory_lock(%s) AS locked", [RECOVERY_LOCK_KEY]
            )
            row = await cursor.fetchone()
            if row is None or not row["locked"]:
                report.skipped = True
                return report
            try:
                await _requeue_stalled(pool, job_manager, stalled_after, report)
                await _reconcile(pool, job_manager, reconcile_after, report)
                await job_manager.prune_stalled_workers(stalled_after)
            finally:
                await lock_conn.execute("SELECT pg_advisory_unlock(%s)", [RECOVERY_LOCK_KEY])
        finally:
            await lock_conn.set_autocommit(False)
    if report.requeued or report.finished or report.failed or report.reconciled:
        logger.warning(
            "recovery: requeued %s, finished %s, failed %s, reconciled %s",
            report.requeued,
            report.finished,
            report.failed,
            report.reconciled,
            extra={"event": "recovery", **report.as_dict()},
        )
    return report


async def _requeue_stalled(
    pool: AsyncConnectionPool[AsyncConnection[DictRow]],
    job_manager: JobManager,
    stalled_after: float,
    report: RecoveryReport,
) -> None:
    async with pool.connection() as conn:
        cursor = await conn.execute(QUERIES["stalled_jobs"], {"stalled_after": stalled_after})
        stalled = await cursor.fetchall()
    for job in stalled:
        try:
            await _requeue_one(pool, job_manager, job, report)
        except Exception:
            # The job moved on meanwhile (e.g. its worker came back and finished it); the
            # next sweep sees the truth. Never let one job stop the sweep.
            logger.exception("recovery of job %s failed", job["id"], extra={"event": "recovery"})


async def _requeue_one(
    pool: AsyncConnectionPool[AsyncConnection[DictRow]],
    job_manager: JobManager,
    job: DictRow,
    report: RecoveryReport,
) -> None:
    job_id = job["id"]
    async with pool.connection() as conn:
        await conn.execute(
            QUERIES["abandon_runs_of_job"],
            {
                "job_id": job_id,
                "message": f"worker {job['worker_id']} stopped sending heartbeats",
            },
        )
        cursor = await conn.execute(QUERIES["job_has_success"], {"job_id": job_id})
        success = await cursor.fetchone()
        cursor = await conn.execute(QUERIES["abandoned_count_of_job"], {"job_id": job_id})
        abandoned = await cursor.fetchone()
    if success is not None and success["succeeded"]:
        await job_manager.finish_job_by_id_async(
            job_id=job_id, status=Status.SUCCEEDED, delete_job=False
        )
        report.finished.append(job_id)
    elif abandoned is not None and abandoned["n"] >= MAX_ABANDONED:
        await job_manager.finish_job_by_id_async(
            job_id=job_id, status=Status.FAILED, delete_job=False
        )
        report.failed.append(job_id)
    else:
        await job_manager.retry_job_by_id_async(
            job_id=job_id, retry_at=datetime.datetime.now(datetime.UTC)
        )
        report.requeued.append(job_id)


async def _reconcile(
    pool: AsyncConnectionPool[AsyncConnection[DictRow]],
    job_manager: JobManager,
    reconcile_after: float,
    report: RecoveryReport,
) -> None:
    async with pool.connection() as conn:
        cursor = await conn.execute(
            QUERIES["doing_jobs_with_recorded_outcome"], {"reconcile_after": reconcile_after}
        )
        rows = await cursor.fetchall()
    for row in rows:
        try:
            await _reconcile_one(job_manager, row, report)
        except Exception:
            logger.exception("reconciling job %s failed", row["id"], extra={"event": "recovery"})


async def _reconcile_one(job_manager: JobManager, row: DictRow, report: RecoveryReport) -> None:
    job_id = row["id"]
    outcome = row["run_status"]
    if outcome == "retrying":
        retry_in = float((row["error"] or {}).get("retry_in_s") or 0)
        retry_at = row["finished_at"] + datetime.timedelta(seconds=retry_in)
        await job_manager.retry_job_by_id_async(job_id=job_id, retry_at=retry_at)
    else:
        status = {
            "succeeded": Status.SUCCEEDED,
            "failed": Status.FAILED,
            "cancelled": Status.ABORTED,
        }[outcome]
        await job_manager.finish_job_by_id_async(job_id=job_id, status=status, delete_job=False)
    report.reconciled.append(job_id)
