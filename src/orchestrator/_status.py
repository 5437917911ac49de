"""Status answers: job counts like BullMQ's ``getJobCounts()``, run history, one job.

Each answer is a SELECT on a documented view (``orchestrator_queue_status``,
``orchestrator_runs``, ``orchestrator_jobs``), so psql users get the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow

from orchestrator._queries import QUERIES

STATES = ("waiting", "delayed", "active", "completed", "failed", "cancelled")


class RunStatus(StrEnum):
    """An attempt's status: the values of the SQL type ``agent_run_status``, in its order."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRYING = "retrying"
    ABANDONED = "abandoned"
    CANCELLED = "cancelled"


RUN_STATUSES = tuple(status.value for status in RunStatus)


@dataclass
class JobCounts:
    waiting: int = 0
    delayed: int = 0
    active: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class QueueStatus:
    """Counts in total and per workflow (registered workflows appear even at zero)."""

    total: JobCounts = field(default_factory=JobCounts)
    by_workflow: dict[str, JobCounts] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total.as_dict(),
            "by_workflow": {k: v.as_dict() for k, v in sorted(self.by_workflow.items())},
        }


async def queue_status(
    conn: AsyncConnection[DictRow], workflows: Iterable[str] = ()
) -> QueueStatus:
    status = QueueStatus(by_workflow={name: JobCounts() for name in workflows})
    cursor = await conn.execute(QUERIES["queue_status"])
    for row in await cursor.fetchall():
        counts = JobCounts(**{state: int(row[state]) for state in STATES})
        if row["workflow"] == "*":
            status.total = counts
        else:
            status.by_workflow[row["workflow"]] = counts
    return status


async def list_runs(
    conn: AsyncConnection[DictRow],
    *,
    workflow: str | None = None,
    status: str | None = None,
    job_id: int | None = None,
    limit: int = 20,
) -> list[dict[str, Any]]:
    if status is not None and status not in RUN_STATUSES:
        raise ValueError(
            f"unknown run status {status!r}; expected one of {', '.join(RUN_STATUSES)}"
        )
    cursor = await conn.execute(
        QUERIES["list_runs"],
        {"workflow": workflow, "status": status, "job_id": job_id, "limit": max(1, limit)},
    )
    return list(await cursor.fetchall())


async def get_job(conn: AsyncConnection[DictRow], job_id: int) -> dict[str, Any] | None:
    cursor = await conn.execute(QUERIES["get_job"], {"job_id": job_id})
    return await cursor.fetchone()
