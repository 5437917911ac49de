"""Crash recovery: jobs of dead workers re-queued, stuck 'doing' jobs reconciled from agent_runs.

The crashed states are built with procrastinate's own SQL functions (a worker row, a fetch),
so the job is exactly where a real SIGKILL or a failed status update leaves it.
"""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from orchestrator import Orchestrator
from orchestrator._recovery import MAX_ABANDONED, RECOVERY_LOCK_KEY
from tests.fix_db import wait_for
from tests.fix_worker import (
    effects,
    execute,
    fetch,
    job,
    job_status,
    run_statuses,
    running_worker,
    runs,
    wait_for_status,
)


async def _worker_row(orch: Orchestrator, *, silent_for: float) -> int:
    rows = await fetch(
        orch,
        "INSERT INTO procrastinate_workers (last_heartbeat)"
        " VALUES (now() - make_interval(secs => %(s)s)) RETURNING id",
        {"s": silent_for},
    )
    return int(rows[0]["id"])


async def _fetch_job(orch: Orchestrator, worker_id: int, job_id: int) -> None:
    """The job goes to 'doing' under ``worker_id``, as procrastinate's fetch does it."""
    rows = await fetch(
        orch,
        "SELECT (procrastinate_fetch_job_v2(NULL, %(w)s)).id AS id",
        {"w": worker_id},
    )
    assert rows[0]["id"] == job_id


async def _age_start(orch: Orchestrator, job_id: int, seconds: float) -> None:
    """Make the job's start events ``seconds`` older (the attempt began long ago)."""
    await execute(
        orch,
        "UPDATE procrastinate_events SET at = at - make_interval(secs => %(s)s)"
        " WHERE job_id = %(id)s",
        {"s": seconds, "id": job_id},
    )


async def _run_row(
    orch: Orchestrator,
    job_id: int,
    *,
    attempt: int,
    status: str,
    finished_ago: float | None = None,
    error: dict[str, Any] | None = None,
    workflow: str = "write_row",
) -> None:
    await execute(
        orch,
        "INSERT INTO agent_runs (job_id, workflow, attempt, status, started_at, finished_at,"
        " error, input)"
        " VALUES (%(job)s, %(wf)s, %(attempt)s, %(status)s,"
        "         clock_timestamp() - make_interval(secs => COALESCE(%(ago)s, 0) + 5),"
        "         clock_timestamp() - make_interval(secs => %(ago)s), %(error)s, '{}')",
        {
            "job": job_id,
            "wf": workflow,
            "attempt": attempt,
            "status": status,
            "ago": finished_ago,
            "error": None if error is None else Jsonb(error),
        },
    )


async def _crashed_job(orch: Orchestrator, payload: dict[str, Any], *, silent_for: float) -> int:
    """A write_row job 'doing' under a worker silent for ``silent_for`` s, attempt 1 running."""
    job_id = await orch.enqueue_workflow("write_row", payload)
    worker_id = await _worker_row(orch, silent_for=silent_for)
    await _fetch_job(orch, worker_id, job_id)
    await _run_row(orch, job_id, attempt=1, status="running")
    return job_id


# -- jobs a live worker lost track of -------------------------------------------------------


async def _live_worker_id(orch: Orchestrator) -> int:
    async def registered() -> bool:
        return bool(await fetch(orch, "SELECT id FROM procrastinate_workers"))

    await wait_for(registered, timeout=10)
    [row] = await fetch(orch, "SELECT id FROM procrastinate_workers")
    return int(row["id"])


async def _lost_by_live_worker(orch: Orchestrator, job_id: int) -> None:
    """The job goes to 'doing' under the live worker, which never heard of it: the fetch was
    committed and its answer lost with the connection."""
    rows = await fetch(
        orch,
        "SELECT (procrastinate_fetch_job_v2(ARRAY['lost'], %(w)s)).id AS id",
        {"w": await _live_worker_id(orch)},
    )
    assert rows[0]["id"] == job_id


async def test_a_live_worker_requeues_a_job_whose_fetch_answer_was_lost(
    orch: Orchestrator,
) -> None:
    job_id = await orch.enqueue_workflow("write_row", {"key": "lost"}, queue="lost")
    async with running_worker(orch, queues=["served"]):
        await _lost_by_live_worker(orch, job_id)
        await wait_for_status(orch, job_id, "todo", timeout=10)
        assert (await job(orch, job_id))["attempts"] == 1
    assert await runs(orch, job_id) == []  # no attempt began, none is recorded
    async with running_worker(orch):
        await wait_for_status(orch, job_id, "succeeded")
    assert await run_statuses(orch, job_id) == ["succeeded"]
    assert await effects(orch) == ["lost"]


async def test_a_lost_attempt_of_a_live_worker_becomes_connection_lost(
    orch: Orchestrator,
) -> None:
    """The attempt wrote its 'running' row, then neither its end nor the job's."""
    job_id = await orch.enqueue_workflow("write_row", {"key": "cut"}, queue="lost")
    async with running_worker(orch, queues=["served"]):
        await _lost_by_live_worker(orch, job_id)
        await _run_row(orch, job_id, attempt=1, status="running")
        await wait_for_status(orch, job_id, "todo", timeout=10)
    [run] = await runs(orch, job_id)
    assert (run["status"], run["error"]["type"]) == ("abandoned", "ConnectionLost")


async def test_a_lost_job_whose_outcome_was_recorded_is_left_to_reconcile(
    orch: Orchestrator,
) -> None:
    """Re-queued, it would wait in 'todo' (nobody serves its queue); the sweep's reconcile
    applies the recorded verdict instead."""
    job_id = await orch.enqueue_workflow("write_row", {"key": "told"}, queue="lost")
    async with running_worker(orch, queues=["served"]):
        await _lost_by_live_worker(orch, job_id)
        await _run_row(orch, job_id, attempt=1, status="failed", finished_ago=0)
        await wait_for_status(orch, job_id, "failed", "todo", timeout=20)
    assert await job_status(orch, job_id) == "failed"
    assert await run_statuses(orch, job_id) == ["failed"]


async def test_a_live_worker_keeps_the_jobs_it_runs(orch: Orchestrator) -> None:
    """Heartbeats (0.5 s here) come and go while the attempt runs: nothing is re-queued."""
    job_id = await orch.enqueue_workflow("write_row", {"key": "slow", "sleep": 2.5})
    async with running_worker(orch):
        await wait_for_status(orch, job_id, "succeeded", timeout=20)
    assert await run_statuses(orch, job_id) == ["succeeded"]
    assert await effects(orch) == ["slow"]


# -- dead workers ---------------------------------------------------------------------------


async def test_job_of_a_dead_worker_is_requeued_and_its_run_abandoned(orch: Orchestrator) -> None:
    job_id = await _crashed_job(orch, {"key": "r"}, silent_for=60)
    report = await orch.recover()
    assert report.requeued == [job_id]
    assert (report.finished, report.failed, report.reconciled) == ([], [], [])
    row = await job(orch, job_id)
    assert (row["status"], row["attempts"], row["worker_id"]) == ("todo", 1, None)
    [abandoned] = await runs(orch, job_id)
    assert abandoned["status"] == "abandoned"
    assert abandoned["error"]["type"] == "WorkerLost"
    assert abandoned["finished_at"] is not None
    assert await fetch(orch, "SELECT id FROM procrastinate_workers") == []  # pruned


async def test_requeued_job_then_succeeds_exactly_once(orch: Orchestrator) -> None:
    job_id = await _crashed_job(orch, {"key": "once"}, silent_for=60)
    async with running_worker(orch):  # a worker sweeps when it starts
        await wait_for_status(orch, job_id, "succeeded")
    rows = await runs(orch, job_id)
    assert [(r["attempt"], r["status"]) for r in rows] == [(1, "abandoned"), (2, "succeeded")]
    assert await effects(orch) == ["once"]


async def test_the_periodic_sweep_requeues_a_job_stalled_while_workers_run(
    orch: Orchestrator,
) -> None:
    async with running_worker(orch):
        job_id = await _crashed_job(orch, {"key": "late"}, silent_for=0)
        await wait_for_status(orch, job_id, "succeeded", timeout=15)
    assert await run_statuses(orch, job_id) == ["abandoned", "succeeded"]
    assert await effects(orch) == ["late"]


async def test_job_of_a_live_worker_is_left_alone(orch: Orchestrator) -> None:
    job_id = await _crashed_job(orch, {"key": "busy"}, silent_for=0)
    report = await orch.recover()
    assert report.requeued == []
    assert await job_status(orch, job_id) == "doing"
    assert await run_statuses(orch, job_id) == ["running"]


async def test_stalled_job_whose_success_was_committed_is_finished(orch: Orchestrator) -> None:
    job_id = await orch.enqueue_workflow("write_row", {"key": "done"})
    worker_id = await _worker_row(orch, silent_for=60)
    await _fetch_job(orch, worker_id, job_id)
    await _run_row(orch, job_id, attempt=1, status="succeeded", finished_ago=0)
    report = await orch.recover()
    assert report.finished == [job_id]
    assert await job_status(orch, job_id) == "succeeded"
    assert await run_statuses(orch, job_id) == ["succeeded"]


async def test_job_that_keeps_killing_its_worker_fails(orch: Orchestrator) -> None:
    job_id = await orch.enqueue_workflow("write_row", {"key": "poison"})
    for attempt in range(1, MAX_ABANDONED):
        await _run_row(orch, job_id, attempt=attempt, status="abandoned", finished_ago=10)
    worker_id = await _worker_row(orch, silent_for=60)
    await _fetch_job(orch, worker_id, job_id)
    await _run_row(orch, job_id, attempt=MAX_ABANDONED, status="running")
    report = await orch.recover()
    assert report.failed == [job_id]
    assert await job_status(orch, job_id) == "failed"


async def test_sweeps_never_overlap(orch: Orchestrator, database_url: str) -> None:
    job_id = await _crashed_job(orch, {"key": "r"}, silent_for=60)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as other:
        await other.execute("SELECT pg_advisory_lock(%s)", [RECOVERY_LOCK_KEY])
        report = await orch.recover()
        assert report.skipped
        assert await job_status(orch, job_id) == "doing"
        # Released here: a closed session's backend releases it only as it exits, a moment
        # after the client has moved on (both sweeps below could still find it held).
        await other.execute("SELECT pg_advisory_unlock(%s)", [RECOVERY_LOCK_KEY])
    reports = await asyncio.gather(orch.recover(), orch.recover())
    assert sorted(len(r.requeued) for r in reports) == [0, 1]


# -- 'doing' jobs whose outcome was recorded ------------------------------------------------


async def _doing_with_outcome(
    orch: Orchestrator, status: str, *, finished_ago: float, error: dict[str, Any] | None = None
) -> int:
    """A job 'doing' under a live worker, whose attempt recorded ``status`` a while ago."""
    job_id = await orch.enqueue_workflow("write_row", {"key": status})
    worker_id = await _worker_row(orch, silent_for=0)
    await _fetch_job(orch, worker_id, job_id)
    await _age_start(orch, job_id, finished_ago + 5)
    await _run_row(orch, job_id, attempt=1, status=status, finished_ago=finished_ago, error=error)
    return job_id


async def test_recorded_final_outcome_is_applied(orch: Orchestrator) -> None:
    expected = {"succeeded": "succeeded", "failed": "failed", "cancelled": "aborted"}
    ids = {
        outcome: await _doing_with_outcome(orch, outcome, finished_ago=60) for outcome in expected
    }
    report = await orch.recover()
    assert sorted(report.reconciled) == sorted(ids.values())
    assert report.requeued == []
    for outcome, job_id in ids.items():
        assert await job_status(orch, job_id) == expected[outcome]
        assert await run_statuses(orch, job_id) == [outcome]


async def test_recorded_retrying_outcome_is_requeued(orch: Orchestrator) -> None:
    job_id = await _doing_with_outcome(orch, "retrying", finished_ago=60, error={"retry_in_s": 0})
    report = await orch.recover()
    assert report.reconciled == [job_id]
    row = await job(orch, job_id)
    assert row["status"] == "todo"
    assert row["scheduled_at"] <= datetime.datetime.now(datetime.UTC)
    async with running_worker(orch):
        await wait_for_status(orch, job_id, "succeeded")
    assert await run_statuses(orch, job_id) == ["retrying", "succeeded"]
    assert await effects(orch) == ["retrying"]


async def test_recorded_retry_keeps_its_wait(orch: Orchestrator) -> None:
    job_id = await _doing_with_outcome(
        orch, "retrying", finished_ago=60, error={"retry_in_s": 3600}
    )
    await orch.recover()
    row = await job(orch, job_id)
    expected = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=3600 - 60)
    assert abs((row["scheduled_at"] - expected).total_seconds()) < 10


async def test_recent_outcome_is_not_reconciled_yet(orch: Orchestrator) -> None:
    """The worker may still be writing procrastinate's status: wait reconcile_after."""
    job_id = await _doing_with_outcome(orch, "succeeded", finished_ago=0)
    report = await orch.recover()
    assert report.reconciled == []
    assert await job_status(orch, job_id) == "doing"


async def test_running_attempt_is_not_reconciled(orch: Orchestrator) -> None:
    job_id = await _doing_with_outcome(orch, "retrying", finished_ago=60, error={"retry_in_s": 0})
    await _run_row(orch, job_id, attempt=2, status="running")
    report = await orch.recover()
    assert report.reconciled == []
    assert await job_status(orch, job_id) == "doing"


async def test_job_restarted_after_its_recorded_outcome_is_not_reconciled(
    orch: Orchestrator,
) -> None:
    """Fetched again for its next attempt, before that attempt wrote its 'running' row."""
    job_id = await orch.enqueue_workflow("write_row", {"key": "again"})
    worker_id = await _worker_row(orch, silent_for=0)
    await _fetch_job(orch, worker_id, job_id)
    await _age_start(orch, job_id, 120)
    await _run_row(orch, job_id, attempt=1, status="retrying", finished_ago=60, error={})
    await execute(
        orch,
        "SELECT procrastinate_retry_job_v2(%(id)s, now(), NULL, NULL, NULL)",
        {"id": job_id},
    )
    await _fetch_job(orch, worker_id, job_id)  # attempt 2 starts now
    report = await orch.recover()
    assert report.reconciled == []
    assert await job_status(orch, job_id) == "doing"


async def test_recovery_report_as_dict(orch: Orchestrator) -> None:
    job_id = await _crashed_job(orch, {"key": "r"}, silent_for=60)
    report = await orch.recover()
    assert report.as_dict() == {
        "requeued": [job_id],
        "finished": [],
        "failed": [],
        "reconciled": [],
        "skipped": False,
    }

    async def nothing_left() -> bool:
        return not (await orch.recover()).requeued

    await wait_for(nothing_left, timeout=5)
