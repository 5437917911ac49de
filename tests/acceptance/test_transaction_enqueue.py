"""Enqueue from application code inside the application's own transaction (real PostgreSQL).

What a web handler does: write its rows and enqueue the follow-up work on one connection, so
both commit together or not at all — and a worker never sees a job whose data was rolled back.
"""

from __future__ import annotations

import asyncio

import psycopg

from orchestrator import Orchestrator
from tests.fix_worker import effects, job_count, running_worker, wait_for_status


class HandlerFailed(Exception):
    pass


async def _handler(orch: Orchestrator, conn: psycopg.AsyncConnection[object], fail: bool) -> int:
    await conn.execute("INSERT INTO test_effects (key) VALUES ('order-1')")
    job_id = await orch.enqueue_workflow("write_row", {"key": "mail-for-order-1"}, connection=conn)
    if fail:
        raise HandlerFailed
    return job_id


async def test_enqueue_inside_a_rolled_back_transaction_leaves_no_job(
    orch: Orchestrator, database_url: str
) -> None:
    async with running_worker(orch):
        conn = await psycopg.AsyncConnection.connect(database_url)
        async with conn:
            try:
                async with conn.transaction():
                    await _handler(orch, conn, fail=True)
            except HandlerFailed:
                pass
            # The same with the connection's implicit transaction and an explicit rollback.
            try:
                await _handler(orch, conn, fail=True)
            except HandlerFailed:
                await conn.rollback()
        await asyncio.sleep(0.5)  # a worker polling every 0.1 s would have found a job by now
    assert await job_count(orch) == 0
    assert await effects(orch) == []


async def test_enqueue_inside_a_committed_transaction_runs_the_job(
    orch: Orchestrator, database_url: str
) -> None:
    async with running_worker(orch):
        conn = await psycopg.AsyncConnection.connect(database_url)
        async with conn:
            job_id = await _handler(orch, conn, fail=False)
            await asyncio.sleep(0.3)
            assert await job_count(orch) == 0  # invisible until the caller commits
            await conn.commit()
        await wait_for_status(orch, job_id, "succeeded")
    assert await effects(orch) == ["order-1", "mail-for-order-1"]
