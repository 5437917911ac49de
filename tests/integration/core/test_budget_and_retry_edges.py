"""Edges of the retry budget and of manual retries."""

from __future__ import annotations

import pytest
from psycopg.types.json import Jsonb

from orchestrator import Orchestrator
from orchestrator._errors import DuplicateJob
from tests.fix_worker import (
    execute,
    run_statuses,
    running_worker,
    wait_for_status,
)


async def test_attempts_cut_short_by_a_shutdown_do_not_use_the_budget(orch: Orchestrator) -> None:
    # Two attempts aborted by worker shutdowns, then the job fails once: it still has retries.
    job_id = await orch.enqueue_workflow("flaky_fast", {"key": "s", "fail_times": 3})
    for attempt in (1, 2):
        await execute(
            orch,
            "INSERT INTO agent_runs (job_id, workflow, attempt, status, error, finished_at)"
            " VALUES (%(j)s, 'flaky_fast', %(a)s, 'retrying', %(e)s, now())",
            {"j": job_id, "a": attempt, "e": Jsonb({"type": "ShutdownAbort", "message": "x"})},
        )
    await execute(
        orch, "UPDATE procrastinate_jobs SET attempts = 2 WHERE id = %(j)s", {"j": job_id}
    )
    async with running_worker(orch):
        await wait_for_status(orch, job_id, "succeeded")
    # Attempt 3 fails (the first failure that counts) and is retried; attempt 4 succeeds.
    assert await run_statuses(orch, job_id) == ["retrying", "retrying", "retrying", "succeeded"]


async def test_manual_retry_refused_when_another_job_holds_the_dedupe_key(
    orch: Orchestrator,
) -> None:
    job_id = await orch.enqueue_workflow(
        "flaky_fast", {"key": "d", "fail_times": 1}, attempts=1, dedupe_key="k-1"
    )
    async with running_worker(orch):
        await wait_for_status(orch, job_id, "failed")
    waiting = await orch.enqueue_workflow("noop", {}, dedupe_key="k-1", delay=3600)
    assert waiting != job_id
    with pytest.raises(DuplicateJob, match="dedupe key 'k-1'"):
        await orch.retry_job(job_id)
    assert (await orch.get_job(job_id))["state"] == "failed"
