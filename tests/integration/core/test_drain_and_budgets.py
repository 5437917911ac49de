"""A stopping worker: it keeps its heartbeat while draining, its jobs stop between steps.
The abandon limit: per retry cycle, reset by a manual retry, blind to database cut-offs and
to attempts that made progress.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from pydantic import BaseModel

from orchestrator import Orchestrator, WorkflowContext
from orchestrator._recovery import MAX_ABANDONED
from orchestrator._registry import Workflow
from orchestrator._retry import RetryPolicy
from orchestrator._runner import CutOff
from orchestrator._worker import run_worker
from tests import fix_db
from tests.fix_worker import (
    effects,
    execute,
    fetch,
    job_status,
    run_statuses,
    running_worker,
    runs,
    wait_for_run_status,
    wait_for_status,
)


class SlowStepsInput(BaseModel):
    key: str
    steps: int
    pause: float


async def slow_steps(ctx: WorkflowContext, data: SlowStepsInput) -> dict[str, Any]:
    for step in range(1, data.steps + 1):
        await ctx.connection.execute(
            "INSERT INTO test_effects (key, job_id, attempt) VALUES (%s, %s, %s)"
            " ON CONFLICT (key) DO NOTHING",
            [f"{data.key}:{step}", ctx.job_id, ctx.attempt],
        )
        await asyncio.sleep(data.pause)
        await ctx.commit()
    return {"steps": data.steps}


@pytest.fixture
async def draining(database_url: str) -> AsyncIterator[Orchestrator]:
    """Drains may outlast STALLED_AFTER: shutdown timeout 8 s, stalled after 2 s."""
    registry = fix_db.registry_for_tests()
    registry.register(
        Workflow(
            name="slow_steps", input_model=SlowStepsInput, run=slow_steps, retry=RetryPolicy(1)
        )
    )
    orchestrator = Orchestrator(
        fix_db.settings_for_tests(shutdown_timeout=8.0),
        registry=registry,
        schedules=[],
        database_url=database_url,
    )
    async with orchestrator:
        yield orchestrator


async def test_a_draining_worker_keeps_its_heartbeat_and_its_job(draining: Orchestrator) -> None:
    orch = draining
    job_id = await orch.enqueue_workflow("write_row", {"key": "drained", "sleep": 4.0})
    worker = asyncio.create_task(run_worker(orch, install_signal_handlers=False))
    try:
        await wait_for_run_status(orch, job_id, "running")
        worker.cancel()  # a graceful stop, as SIGTERM: the running job may finish
        requeued: list[int] = []
        ages: list[float] = []
        while not worker.done():
            requeued += (await orch.recover()).requeued  # another worker's sweep
            [row] = await fetch(
                orch,
                "SELECT COALESCE(max(EXTRACT(EPOCH FROM now() - last_heartbeat)), -1) AS age"
                " FROM procrastinate_workers",
            )
            ages.append(float(row["age"]))
            await asyncio.sleep(0.25)
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
    assert requeued == []
    assert max(ages) < 2.0, ages  # never silent for STALLED_AFTER while draining
    assert await job_status(orch, job_id) == "succeeded"
    assert await run_statuses(orch, job_id) == ["succeeded"]
    assert await effects(orch) == ["drained"]


async def test_a_stopping_worker_ends_its_job_between_two_steps(draining: Orchestrator) -> None:
    orch = draining
    job_id = await orch.enqueue_workflow("slow_steps", {"key": "s", "steps": 30, "pause": 0.1})
    async with running_worker(orch):

        async def some_steps_done() -> bool:
            return len(await effects(orch, "s:")) >= 3

        await fix_db.wait_for(some_steps_done)
    # the worker stopped at once: the step in progress committed, the rest left for later
    [run] = await runs(orch, job_id)
    assert run["status"] == "retrying"
    assert run["error"]["type"] == "WorkerStopping"
    assert run["error"]["retry_in_s"] == 0
    done = await effects(orch, "s:")
    assert 3 <= len(done) < 30
    assert await job_status(orch, job_id) == "todo"
    # a stop is not the job's failure: with one attempt in its budget it still succeeds
    async with running_worker(orch):
        await wait_for_status(orch, job_id, "succeeded")
    assert await run_statuses(orch, job_id) == ["retrying", "succeeded"]
    assert sorted(await effects(orch, "s:"), key=lambda k: int(k[2:])) == [
        f"s:{n}" for n in range(1, 31)
    ]


# -- jobs cut off from the database ------------------------------------------------------


async def _doing(orch: Orchestrator, payload: dict[str, Any], *, silent_for: float = 0) -> int:
    """A write_row job fetched by a worker (heartbeat ``silent_for`` s old), attempt 1 running."""
    job_id = await orch.enqueue_workflow("write_row", payload)
    [worker] = await fetch(
        orch,
        "INSERT INTO procrastinate_workers (last_heartbeat)"
        " VALUES (now() - make_interval(secs => %(s)s)) RETURNING id",
        {"s": silent_for},
    )
    await fetch(orch, "SELECT procrastinate_fetch_job_v2(NULL, %(w)s)", {"w": worker["id"]})
    await execute(
        orch,
        "INSERT INTO agent_runs (job_id, workflow, attempt, worker_id, started_at)"
        " VALUES (%(j)s, 'write_row', 1, %(w)s, clock_timestamp() - interval '5 seconds')",
        {"j": job_id, "w": worker["id"]},
    )
    return job_id


async def test_a_worker_requeues_the_jobs_it_could_not_record(orch: Orchestrator) -> None:
    job_id = await _doing(orch, {"key": "cut"})
    [run] = await runs(orch, job_id)
    orch.runner.cut_off.append(CutOff(run_id=run["id"], job_id=job_id, attempts=0))
    assert await orch.requeue_cut_off() == [job_id]
    assert orch.runner.cut_off == []
    assert await job_status(orch, job_id) == "todo"
    [run] = await runs(orch, job_id)
    assert (run["status"], run["error"]["type"]) == ("abandoned", "ConnectionLost")
    async with running_worker(orch):
        await wait_for_status(orch, job_id, "succeeded")
    assert await effects(orch) == ["cut"]


async def test_a_cut_off_job_that_moved_on_is_left_alone(orch: Orchestrator) -> None:
    job_id = await _doing(orch, {"key": "moved"})
    [run] = await runs(orch, job_id)
    orch.runner.cut_off.append(CutOff(run_id=run["id"], job_id=job_id, attempts=7))
    assert await orch.requeue_cut_off() == []
    assert await job_status(orch, job_id) == "doing"


# -- the abandon limit -------------------------------------------------------------------


async def _abandoned(orch: Orchestrator, job_id: int, count: int, *, steps: int = 0) -> None:
    for attempt in range(1, count + 1):
        await execute(
            orch,
            "INSERT INTO agent_runs (job_id, workflow, attempt, status, finished_at, steps, error)"
            " VALUES (%(j)s, 'write_row', %(a)s, 'abandoned', now(), %(s)s,"
            '         \'{"type": "WorkerLost"}\')',
            {"j": job_id, "a": attempt, "s": steps},
        )


async def _crash_again(orch: Orchestrator, job_id: int, attempt: int) -> None:
    [worker] = await fetch(
        orch,
        "INSERT INTO procrastinate_workers (last_heartbeat)"
        " VALUES (now() - interval '60 seconds') RETURNING id",
    )
    await fetch(orch, "SELECT procrastinate_fetch_job_v2(NULL, %(w)s)", {"w": worker["id"]})
    await execute(
        orch,
        "INSERT INTO agent_runs (job_id, workflow, attempt, worker_id) VALUES (%(j)s, 'write_row',"
        " %(a)s, %(w)s)",
        {"j": job_id, "a": attempt, "w": worker["id"]},
    )


async def test_the_abandon_limit_fails_the_job_with_a_failed_run(orch: Orchestrator) -> None:
    job_id = await orch.enqueue_workflow("write_row", {"key": "poison"})
    await _abandoned(orch, job_id, MAX_ABANDONED - 1)
    await _crash_again(orch, job_id, MAX_ABANDONED)
    report = await orch.recover()
    assert report.failed == [job_id]
    assert await job_status(orch, job_id) == "failed"
    last = (await runs(orch, job_id))[-1]
    assert last["status"] == "failed"
    assert last["error"]["type"] == "AbandonLimit"
    assert f"limit {MAX_ABANDONED}" in last["error"]["message"]
    assert last["error"]["lost_as"] == "WorkerLost"


async def test_a_manual_retry_resets_the_abandon_limit(orch: Orchestrator) -> None:
    job_id = await orch.enqueue_workflow("write_row", {"key": "again"})
    await _abandoned(orch, job_id, MAX_ABANDONED - 1)
    await _crash_again(orch, job_id, MAX_ABANDONED)
    assert (await orch.recover()).failed == [job_id]
    await orch.retry_job(job_id)  # a fresh attempt budget, the abandon count included
    await _crash_again(orch, job_id, MAX_ABANDONED + 1)
    report = await orch.recover()
    assert report.requeued == [job_id]
    async with running_worker(orch):
        await wait_for_status(orch, job_id, "succeeded")
    assert await effects(orch) == ["again"]


async def test_attempts_lost_after_progress_do_not_count(orch: Orchestrator) -> None:
    job_id = await orch.enqueue_workflow("write_row", {"key": "progress"})
    await _abandoned(orch, job_id, MAX_ABANDONED + 3, steps=2)
    await _crash_again(orch, job_id, MAX_ABANDONED + 4)
    assert (await orch.recover()).requeued == [job_id]


async def test_a_set_up_step_before_a_call_that_kills_the_worker_is_no_progress(
    orch: Orchestrator,
) -> None:
    # Each attempt commits its set-up, then dies in the same external call: no progress.
    job_id = await orch.enqueue_workflow("write_row", {"key": "poison-call"})
    await _abandoned(orch, job_id, MAX_ABANDONED - 1, steps=1)
    await _crash_again(orch, job_id, MAX_ABANDONED)
    await execute(
        orch,
        "UPDATE agent_runs SET steps = 1 WHERE job_id = %(j)s AND status = 'running'",
        {"j": job_id},
    )
    await execute(
        orch,
        "INSERT INTO external_calls (job_id, run_id, workflow, kind, key)"
        " SELECT job_id, id, workflow, 'upload', 'chunk 7' FROM agent_runs WHERE job_id = %(j)s",
        {"j": job_id},
    )
    assert (await orch.recover()).failed == [job_id]


async def test_attempts_that_finished_a_call_made_progress(orch: Orchestrator) -> None:
    job_id = await orch.enqueue_workflow("write_row", {"key": "calls-done"})
    await _abandoned(orch, job_id, MAX_ABANDONED + 2, steps=1)
    await _crash_again(orch, job_id, MAX_ABANDONED + 3)
    await execute(
        orch,
        "INSERT INTO external_calls (job_id, run_id, workflow, kind, key, state, finished_at)"
        " SELECT job_id, id, workflow, 'upload', 'chunk ' || id, 'done', now()"
        "   FROM agent_runs WHERE job_id = %(j)s AND status = 'abandoned'",
        {"j": job_id},
    )
    # the one lost now finished no call yet: one counted, far from the limit
    assert (await orch.recover()).requeued == [job_id]


async def test_attempts_cut_off_by_a_server_restart_do_not_count(orch: Orchestrator) -> None:
    job_id = await orch.enqueue_workflow("write_row", {"key": "restart"})
    await _abandoned(orch, job_id, MAX_ABANDONED - 1)
    await _crash_again(orch, job_id, MAX_ABANDONED)
    # the attempt began before the server's last start: its connection died with the restart
    await execute(
        orch,
        "UPDATE agent_runs SET started_at = pg_postmaster_start_time() - interval '1 second'"
        " WHERE job_id = %(j)s AND status = 'running'",
        {"j": job_id},
    )
    assert (await orch.recover()).requeued == [job_id]
    last = (await runs(orch, job_id))[-1]
    assert (last["status"], last["error"]["type"]) == ("abandoned", "ConnectionLost")


async def test_the_heartbeat_does_not_queue_for_the_pool(
    orch: Orchestrator, database_url: str
) -> None:
    """Jobs holding every pooled connection (a PT4's chunks write their ledger on pool
    connections) must not silence the worker: crash recovery would take its jobs."""
    async with running_worker(orch):

        async def registered() -> bool:
            return bool(await fetch(orch, "SELECT id FROM procrastinate_workers"))

        await fix_db.wait_for(registered)
        held = [await orch.pool.getconn() for _ in range(orch.pool.max_size)]
        try:
            await asyncio.sleep(3.0)  # six heartbeat intervals, past STALLED_AFTER (2 s)
            async with await psycopg.AsyncConnection.connect(database_url) as other:
                cursor = await other.execute(
                    "SELECT EXTRACT(EPOCH FROM now() - max(last_heartbeat)) FROM"
                    " procrastinate_workers"
                )
                row = await cursor.fetchone()
        finally:
            for conn in held:
                await orch.pool.putconn(conn)
    assert row is not None
    assert float(row[0]) < 1.5, f"the worker was silent for {float(row[0]):.1f} s"
