"""Helpers shared by the core integration tests: a worker task and a few SQL look-ups."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from orchestrator import Orchestrator
from orchestrator._worker import run_worker
from tests.fix_db import wait_for


@contextlib.asynccontextmanager
async def running_worker(orch: Orchestrator, **options: Any) -> AsyncIterator[asyncio.Task[None]]:
    """An in-process worker (``run_worker``) for the duration of the block."""
    task = asyncio.create_task(run_worker(orch, install_signal_handlers=False, **options))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def fetch(
    orch: Orchestrator, query: str, params: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    async with orch.pool.connection() as conn:
        cursor = await conn.execute(query, params)
        return list(await cursor.fetchall()) if cursor.description else []


async def execute(orch: Orchestrator, query: str, params: Mapping[str, Any] | None = None) -> None:
    async with orch.pool.connection() as conn:
        await conn.execute(query, params)


async def job(orch: Orchestrator, job_id: int) -> dict[str, Any]:
    rows = await fetch(
        orch,
        "SELECT id, status::text AS status, attempts, priority, scheduled_at, queueing_lock,"
        " task_name, args, abort_requested, worker_id FROM procrastinate_jobs WHERE id = %(id)s",
        {"id": job_id},
    )
    assert rows, f"job {job_id} does not exist"
    return rows[0]


async def job_status(orch: Orchestrator, job_id: int) -> str:
    return str((await job(orch, job_id))["status"])


async def job_count(orch: Orchestrator) -> int:
    """Workflow jobs (the worker's own periodic maintenance jobs are not counted)."""
    rows = await fetch(
        orch,
        "SELECT count(*) AS n FROM procrastinate_jobs WHERE task_name NOT LIKE 'orchestrator.%%'",
    )
    return int(rows[0]["n"])


async def runs(orch: Orchestrator, job_id: int) -> list[dict[str, Any]]:
    """agent_runs rows of a job, oldest first."""
    return await fetch(
        orch,
        "SELECT id, job_id, workflow, attempt, status::text AS status, input, output, error,"
        " started_at, finished_at, worker FROM agent_runs WHERE job_id = %(id)s ORDER BY id",
        {"id": job_id},
    )


async def run_statuses(orch: Orchestrator, job_id: int) -> list[str]:
    return [r["status"] for r in await runs(orch, job_id)]


async def effects(orch: Orchestrator, prefix: str = "") -> list[str]:
    rows = await fetch(
        orch,
        "SELECT key FROM test_effects WHERE key LIKE %(p)s ORDER BY id",
        {"p": prefix + "%"},
    )
    return [r["key"] for r in rows]


async def wait_for_status(
    orch: Orchestrator, job_id: int, *statuses: str, timeout: float = 20.0
) -> None:
    async def reached() -> bool:
        return await job_status(orch, job_id) in statuses

    await wait_for(reached, timeout=timeout)


async def wait_for_run_status(
    orch: Orchestrator, job_id: int, status: str, *, count: int = 1, timeout: float = 20.0
) -> None:
    async def reached() -> bool:
        return (await run_statuses(orch, job_id)).count(status) >= count

    await wait_for(reached, timeout=timeout)
