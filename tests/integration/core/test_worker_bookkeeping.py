"""A worker's bookkeeping per job: few round trips, no notification lock on the commit path.

- a success and its job's end commit in one statement; procrastinate's own finish is skipped;
- procrastinate's pool queries run in autocommit mode and leave the connection as it was;
- a worker's connections do not notify from the triggers; its ChangeNotifier does, batched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import psycopg
import pytest

from orchestrator import Orchestrator
from orchestrator._changes import ChangeNotifier
from tests import fix_db
from tests.fix_worker import effects, fetch, running_worker, runs, wait_for_status


@pytest.fixture
async def worker_orch(database_url: str) -> AsyncIterator[Orchestrator]:
    """An orchestrator as ``orchestrator worker`` makes it (``worker=True``)."""
    orchestrator = Orchestrator(
        fix_db.settings_for_tests(),
        registry=fix_db.registry_for_tests(),
        schedules=[],
        database_url=database_url,
        worker=True,
    )
    await orchestrator.open()
    try:
        yield orchestrator
    finally:
        await orchestrator.close()


async def _listener(url: str) -> psycopg.AsyncConnection[tuple[object, ...]]:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    await conn.execute("LISTEN orchestrator_changed")
    return conn


async def _notifications(
    conn: psycopg.AsyncConnection[tuple[object, ...]], wait: float
) -> list[str]:
    received: list[str] = []

    async def collect() -> None:
        async for notice in conn.notifies():
            received.append(notice.payload)

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(collect(), timeout=wait)
    return received


async def test_a_success_ends_its_job_in_its_own_transaction(
    worker_orch: Orchestrator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    job_ids = [await worker_orch.enqueue_workflow("write_row", {"key": k}) for k in "abc"]
    job_ids.append(await worker_orch.enqueue_workflow("noop", {}))
    async with running_worker(worker_orch):
        for job_id in job_ids:
            await wait_for_status(worker_orch, job_id, "succeeded")
    for job_id in job_ids:
        [row] = await runs(worker_orch, job_id)
        assert row["status"] == "succeeded"
        [job] = await fetch(
            worker_orch,
            "SELECT attempts, (SELECT array_agg(type::text ORDER BY id) FROM procrastinate_events"
            " WHERE job_id = j.id) AS events FROM procrastinate_jobs j WHERE id = %(id)s",
            {"id": job_id},
        )
        assert job["attempts"] == 1
        assert job["events"][-1] == "succeeded"
    # each effect once (the worker runs jobs side by side: in any order)
    assert sorted(await effects(worker_orch)) == ["a", "b", "c"]
    assert (await worker_orch.queue_status()).total.completed == len(job_ids)
    # procrastinate's own finish found the job ended and made no update of its own
    assert worker_orch.job_manager.finished_by_runner == set()
    assert not [r for r in caplog.records if getattr(r, "event", "") == "job.stale_update_skipped"]


async def test_procrastinate_queries_run_in_autocommit_and_leave_the_connection_as_it_was(
    orch: Orchestrator,
) -> None:
    connector = orch.app.connector
    async with connector._get_cursor() as cursor:  # type: ignore[attr-defined]
        conn = cursor.connection
        assert conn.autocommit
        await cursor.execute("SELECT 1")
    assert not conn.autocommit
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


async def test_a_worker_notifies_in_batches_instead_of_from_its_transactions(
    worker_orch: Orchestrator, orch: Orchestrator, database_url: str
) -> None:
    listener = await _listener(database_url)
    try:
        # a write on a worker's connection: the trigger stays quiet
        async with worker_orch.pool.connection() as conn:
            await conn.execute("UPDATE agent_runs SET steps = steps WHERE id = -1")
        assert await _notifications(listener, 0.5) == []
        # the same write elsewhere (CLI, console, SQL by hand) notifies from the trigger
        async with orch.pool.connection() as conn:
            await conn.execute("UPDATE agent_runs SET steps = steps WHERE id = -1")
        assert await _notifications(listener, 0.5) == ["agent_runs"]
        # the worker's own notice: several changes, one notification, after the delay
        for _ in range(5):
            worker_orch.changes.changed()
        assert await _notifications(listener, 1.0) == ["worker"]
        worker_orch.changes.changed()
        await worker_orch.changes.close()  # pending: sent at once
        assert await _notifications(listener, 0.2) == ["worker"]
    finally:
        await listener.close()


async def test_a_notifier_of_a_process_that_keeps_the_triggers_sends_nothing(
    orch: Orchestrator, database_url: str
) -> None:
    notifier = ChangeNotifier(lambda: orch.pool, enabled=False)
    listener = await _listener(database_url)
    try:
        notifier.changed()
        await notifier.close()
        assert await _notifications(listener, 0.5) == []
        assert notifier.sent == 0
    finally:
        await listener.close()
