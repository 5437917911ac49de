"""Crash recovery: jobs of dead workers go back to the queue; stuck statuses are reconciled.

Procrastinate leaves a SIGKILLed worker's job in ``doing`` forever, and a job whose final
status update failed stays ``doing`` under a live worker. A sweep (a periodic task every
``ORCHESTRATOR_RECOVERY_INTERVAL`` seconds, and once when ``orchestrator worker`` starts):

- re-queues ``doing`` jobs whose worker has been silent for ``ORCHESTRATOR_STALLED_AFTER``
  seconds (or is gone), marking their ``running`` agent_runs rows ``abandoned`` — which
  *fences* those attempts, should they still run somewhere (see :mod:`orchestrator._lease`) —
  or finishes them as succeeded when their success was already committed. Each job is handled
  in one transaction, its row locked and its worker's silence checked again, so a worker that
  came back meanwhile keeps its job. A worker draining its jobs after SIGTERM keeps sending
  heartbeats (``orchestrator worker`` does it for procrastinate, which stops its own), so its
  jobs are never taken;
- applies the outcome recorded in agent_runs to jobs still ``doing`` ``reconcile_after``
  seconds after that outcome was written.

A live worker also compares, at each heartbeat, the jobs the database shows ``doing`` under it
with the jobs it runs (:func:`requeue_orphans`): a fetch whose answer was lost with its
connection leaves a job there that no sweep would take, its worker being alive.

The abandon limit: a job whose attempts were lost with their worker :data:`MAX_ABANDONED`
times in one retry cycle (since its last ``failed`` or ``cancelled`` row; ``orchestrator
retry`` starts a new one) without making progress — finishing an external call, or, for an
attempt that makes none, committing a step — fails instead of looping forever: something in
it kills its worker. The attempt that reaches the limit becomes the
job's ``failed`` row (``AbandonLimit``). Attempts cut off by a lost database connection
(``ConnectionLost``: begun before the server's last start, or re-queued by their own worker
once the database answered again, :func:`requeue_cut_off`) do not count.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from procrastinate.jobs import Status
from procrastinate.manager import JobManager
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from orchestrator._queries import QUERIES
from orchestrator._runner import CutOff

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
                await _requeue_stalled(pool, stalled_after, report)
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
    stalled_after: float,
    report: RecoveryReport,
) -> None:
    async with pool.connection() as conn:
        cursor = await conn.execute(QUERIES["stalled_jobs"], {"stalled_after": stalled_after})
        stalled = await cursor.fetchall()
    for job in stalled:
        try:
            await _requeue_one(pool, job, stalled_after, report)
        except Exception:
            # Never let one job stop the sweep; the next sweep sees the truth.
            logger.exception("recovery of job %s failed", job["id"], extra={"event": "recovery"})


async def _requeue_one(
    pool: AsyncConnectionPool[AsyncConnection[DictRow]],
    job: DictRow,
    stalled_after: float,
    report: RecoveryReport,
) -> None:
    job_id = job["id"]
    async with pool.connection() as conn, conn.transaction():
        cursor = await conn.execute(
            QUERIES["lock_stalled_job"], {"job_id": job_id, "stalled_after": stalled_after}
        )
        locked = await cursor.fetchone()
        if locked is None:
            return  # finished meanwhile, or its worker came back
        cursor = await conn.execute(
            QUERIES["abandon_runs_of_job"],
            {
                "job_id": job_id,
                "message": f"worker {locked['worker_id']} stopped sending heartbeats",
            },
        )
        abandoned = await cursor.fetchall()
        cursor = await conn.execute(QUERIES["job_has_success"], {"job_id": job_id})
        success = await cursor.fetchone()
        if success is not None and success["succeeded"]:
            await conn.execute(QUERIES["finish_job_now"], {"job_id": job_id, "status": "succeeded"})
            report.finished.append(job_id)
            return
        cursor = await conn.execute(
            QUERIES["abandoned_in_cycle"],
            {"job_id": job_id, "new": [r["id"] for r in abandoned]},
        )
        cycle = await cursor.fetchone()
        assert cycle is not None
        if cycle["new_counted"] and cycle["n"] >= MAX_ABANDONED:
            await conn.execute(
                QUERIES["fail_abandoned_run"],
                {
                    "run_id": cycle["last_id"],
                    "message": (
                        f"attempts lost with their worker {cycle['n']} times in this retry "
                        f"cycle without making progress (limit {MAX_ABANDONED}): something "
                        f"in the job kills or stalls its worker; 'orchestrator retry {job_id}' "
                        "starts a fresh cycle"
                    ),
                },
            )
            await conn.execute(QUERIES["finish_job_now"], {"job_id": job_id, "status": "failed"})
            report.failed.append(job_id)
            return
        await conn.execute(QUERIES["requeue_job_now"], {"job_id": job_id})
        report.requeued.append(job_id)


async def requeue_cut_off(
    pool: AsyncConnectionPool[AsyncConnection[DictRow]], cut_off: list[CutOff]
) -> list[int]:
    """Re-queue the jobs of attempts this process ran and could not record (the database was
    out of reach), now that it answers again; their runs become ``ConnectionLost``.

    Done by the worker that ran them, at its restart, without waiting for its old heartbeat
    to go stale. Entries are removed from ``cut_off`` as they are handled; a database error
    leaves the rest for the next restart. Returns the re-queued job ids.
    """
    requeued: list[int] = []
    for entry in list(cut_off):
        async with pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                QUERIES["lock_cut_off_job"], {"job_id": entry.job_id, "attempts": entry.attempts}
            )
            locked = await cursor.fetchone()
            await conn.execute(
                QUERIES["abandon_cut_off_runs"], {"job_id": entry.job_id, "run_id": entry.run_id}
            )
            if locked is not None and await _requeue_unless_succeeded(conn, entry.job_id):
                requeued.append(entry.job_id)
        cut_off.remove(entry)
    _log_lost(requeued)
    return requeued


async def requeue_orphans(
    conn: AsyncConnection[DictRow], worker_id: int, held: Collection[int]
) -> list[int]:
    """Re-queue the jobs the database shows ``doing`` under ``worker_id`` although that worker
    does not hold them (``held``: the ids it runs), and mark their ``running`` attempts
    ``ConnectionLost``. Returns the re-queued job ids.

    Such a job's fetch was committed but its answer lost with the connection, or its attempt
    could neither write its ``running`` row nor its end: its worker is alive and beating, so
    the stalled-worker sweep never takes it. The caller holds
    :meth:`~orchestrator._job_manager.GuardedJobManager.no_fetch_in_flight`: no fetch is in
    flight. A job whose attempt recorded an outcome is left to the sweep's reconcile, which
    applies it.
    """
    cursor = await conn.execute(
        QUERIES["orphan_jobs"], {"worker_id": worker_id, "held": list(held)}
    )
    orphans = await cursor.fetchall()
    await conn.commit()
    requeued: list[int] = []
    for job in orphans:
        async with conn.transaction():
            cursor = await conn.execute(
                QUERIES["lock_orphan_job"],
                {"job_id": job["id"], "worker_id": worker_id, "attempts": job["attempts"]},
            )
            if await cursor.fetchone() is None:
                continue
            await conn.execute(
                QUERIES["abandon_cut_off_runs"], {"job_id": job["id"], "run_id": None}
            )
            if await _requeue_unless_succeeded(conn, job["id"]):
                requeued.append(job["id"])
    _log_lost(requeued)
    return requeued


async def _requeue_unless_succeeded(conn: AsyncConnection[DictRow], job_id: int) -> bool:
    """Finish the locked job as succeeded if an attempt's success was committed, else put it
    back in the queue (True)."""
    cursor = await conn.execute(QUERIES["job_has_success"], {"job_id": job_id})
    success = await cursor.fetchone()
    if success is not None and success["succeeded"]:
        await conn.execute(QUERIES["finish_job_now"], {"job_id": job_id, "status": "succeeded"})
        return False
    await conn.execute(QUERIES["requeue_job_now"], {"job_id": job_id})
    return True


def _log_lost(requeued: list[int]) -> None:
    if requeued:
        logger.warning(
            "re-queued %s: their attempts lost the database connection",
            requeued,
            extra={"event": "recovery.cut_off", "requeued": requeued},
        )


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
