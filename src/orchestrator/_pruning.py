"""Pruning: finished jobs and their events are deleted after the retention period.

Procrastinate keeps jobs and events forever. An hourly maintenance task deletes finished
workflow jobs older than ``ORCHESTRATOR_RETENTION_DAYS`` and the orchestrator's own
maintenance jobs (a recovery sweep every few seconds) older than an hour, in batches so no
single statement holds locks for long. ``agent_runs`` rows are the permanent record and stay.
"""

from __future__ import annotations

import logging

from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from orchestrator._queries import QUERIES

logger = logging.getLogger("orchestrator.pruning")

BATCH = 10_000
MAX_BATCHES = 100


async def prune_finished_jobs(
    pool: AsyncConnectionPool[AsyncConnection[DictRow]], *, retention_days: int
) -> int:
    """Delete old finished jobs; return how many were deleted."""
    total = 0
    for _ in range(MAX_BATCHES):
        async with pool.connection() as conn:
            cursor = await conn.execute(
                QUERIES["prune_finished_jobs"],
                {"retention_hours": retention_days * 24, "batch": BATCH},
            )
            deleted = cursor.rowcount
        total += deleted
        if deleted < BATCH:
            break
    if total:
        logger.info("pruned %s finished jobs", total, extra={"event": "prune", "deleted": total})
    return total
