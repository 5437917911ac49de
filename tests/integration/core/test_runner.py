"""Running attempts: agent_runs bookkeeping, retries, effects in the job transaction, control."""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel

from orchestrator import Orchestrator
from orchestrator._context import WorkflowContext
from orchestrator._errors import JobNotFound, OrchestratorError, PermanentError
from orchestrator._registry import Workflow
from orchestrator._retry import RetryPolicy
from tests import fix_db
from tests.fix_worker import (
    effects,
    execute,
    fetch,
    job,
    job_count,
    job_status,
    run_statuses,
    running_worker,
    runs,
    wait_for_run_status,
    wait_for_status,
)

# -- extra workflows for this module ------------------------------------------------------


class NextInput(BaseModel):
    key: str
    fail: bool = True


class SecretInput(BaseModel):
    client: str
    api_token: str


async def enqueue_then_fail(ctx: WorkflowContext, data: NextInput) -> None:
    """Enqueues a follow-up as its very first statement, then (maybe) fails."""
    await ctx.enqueue("write_row", {"key": data.key})
    if data.fail:
        raise PermanentError("failing after the enqueue")


async def commit_then_enqueue_then_fail(ctx: WorkflowContext, data: NextInput) -> None:
    await ctx.connection.execute("INSERT INTO test_effects (key) VALUES (%s)", [f"{data.key}-step"])
    await ctx.commit()
    await ctx.enqueue("write_row", {"key": data.key})
    if data.fail:
        raise PermanentError("failing after the enqueue")


async def secretive(ctx: WorkflowContext, data: SecretInput) -> dict[str, Any]:
    return {"client": data.client, "token_length": len(data.api_token)}


EXTRA: list[Workflow[Any]] = [
    Workflow(name="enqueue_then_fail", input_model=NextInput, run=enqueue_then_fail),
    Workflow(
        name="commit_then_enqueue_then_fail",
        input_model=NextInput,
        run=commit_then_enqueue_then_fail,
    ),
    Workflow(name="secretive", input_model=SecretInput, run=secretive, retry=RetryPolicy(1)),
]


@pytest.fixture
async def orch_extra(database_url: str) -> AsyncIterator[Orchestrator]:
    registry = fix_db.registry_for_tests()
    for workflow in EXTRA:
        registry.register(workflow)
    orchestrator = Orchestrator(
        fix_db.settings_for_tests(), registry=registry, schedules=[], database_url=database_url
    )
    async with orchestrator:
        yield orchestrator


def _gaps(rows: list[dict[str, Any]]) -> list[float]:
    """Seconds between the end of one attempt and the start of the next."""
    return [
        (later["started_at"] - earlier["finished_at"]).total_seconds()
        for earlier, later in itertools.pairwise(rows)
    ]


# -- success and failure ------------------------------------------------------------------


async def test_success_commits_the_effect_and_a_succeeded_row(orch: Orchestrator) -> None:
    job_id = await orch.enqueue_workflow("write_row", {"key": "a"})
    async with running_worker(orch):
        await wait_for_status(orch, job_id, "succeeded")
    [row] = await runs(orch, job_id)
    assert row["status"] == "succeeded"
    assert row["workflow"] == "write_row"
    assert row["attempt"] == 1
    assert row["input"] == {"key": "a"}
    assert row["output"] == {"key": "a"}
    assert row["error"] is None
    assert row["started_at"] <= row["finished_at"]
    assert row["worker"]
    assert await effects(orch) == ["a"]
    assert (await orch.queue_status()).total.completed == 1


async def test_a_running_row_is_visible_while_the_attempt_runs(orch: Orchestrator) -> None:
    job_id = await orch.enqueue_workflow("write_row", {"key": "a", "sleep": 0.7})
    async with running_worker(orch):
        await wait_for_run_status(orch, job_id, "running")
        assert await job_status(orch, job_id) == "doing"
        assert await effects(orch) == []  # the effect is not committed before the record
        assert (await orch.queue_status()).total.active == 1
        await wait_for_status(orch, job_id, "succeeded")
    assert await run_statuses(orch, job_id) == ["succeeded"]


async def test_failure_rolls_back_the_effect_and_records_the_error(orch: Orchestrator) -> None:
    job_id = await orch.enqueue_workflow("flaky_fast", {"key": "f", "fail_times": 9})
    async with running_worker(orch):
        await wait_for_status(orch, job_id, "failed")
    rows = await runs(orch, job_id)
    assert [r["status"] for r in rows] == ["retrying", "retrying", "failed"]
    assert [r["attempt"] for r in rows] == [1, 2, 3]
    for row in rows:
        assert row["error"]["type"] == "RetryableError"
        assert row["error"]["message"] == f"transient failure on attempt {row['attempt']}"
        assert "Traceback" in row["error"]["traceback"]
        assert "in flaky" in row["error"]["traceback"]
        assert row["output"] is None
        assert row["finished_at"] is not None
    assert "retry_in_s" not in rows[-1]["error"]
    assert await effects(orch) == []  # every attempt wrote a row; all were rolled back
    assert (await job(orch, job_id))["attempts"] == 3


async def test_unexpected_exception_is_retried_then_fails(orch: Orchestrator) -> None:
    job_id = await orch.enqueue_workflow("crash", {"key": "c"})
    async with running_worker(orch):
        await wait_for_status(orch, job_id, "failed")
    rows = await runs(orch, job_id)
    assert [r["status"] for r in rows] == ["retrying", "failed"]
    assert rows[0]["error"]["type"] == "RuntimeError"
    assert rows[0]["error"]["message"] == "unexpected bug for c"


async def test_retryable_error_waits_follow_the_workflow_policy(orch: Orchestrator) -> None:
    """flaky_fast: 3 attempts, 0.2 s then 0.4 s."""
    job_id = await orch.enqueue_workflow("flaky_fast", {"key": "r", "fail_times": 2})
    async with running_worker(orch):
        await wait_for_status(orch, job_id, "succeeded")
    rows = await runs(orch, job_id)
    assert [r["status"] for r in rows] == ["retrying", "retrying", "succeeded"]
    assert [r["error"]["retry_in_s"] for r in rows[:2]] == [0.2, 0.4]
    gaps = _gaps(rows)
    assert 0.2 <= gaps[0] <= 0.2 + 1.0, gaps
    assert 0.4 <= gaps[1] <= 0.4 + 1.0, gaps
    assert rows[2]["output"] == {"succeeded_on": 3}
    assert await effects(orch) == ["r#attempt3"]


async def test_retry_after_lengthens_the_wait(orch: Orchestrator) -> None:
    job_id = await orch.enqueue_workflow(
        "flaky_fast", {"key": "r", "fail_times": 1, "retry_after": 1.0}
    )
    async with running_worker(orch):
        await wait_for_status(orch, job_id, "succeeded")
    rows = await runs(orch, job_id)
    assert rows[0]["error"]["retry_in_s"] == 1.0
    assert 1.0 <= _gaps(rows)[0] <= 2.0


async def test_permanent_error_fails_at_once(orch: Orchestrator) -> None:
    job_id = await orch.enqueue_workflow(
        "flaky_fast", {"key": "p", "fail_times": 1, "permanent": True}
    )
    async with running_worker(orch):
        await wait_for_status(orch, job_id, "failed")
    [row] = await runs(orch, job_id)
    assert row["status"] == "failed"
    assert row["error"]["type"] == "PermanentError"
    assert await effects(orch) == []
    assert (await orch.queue_status()).total.failed == 1


async def test_invalid_payload_at_run_time_fails_at_once(orch: Orchestrator) -> None:
    """A job deferred around the validation (e.g. by an older release) fails, unretried."""
    job_id = await orch.app.configure_task("write_row").defer_async(payload={"nokey": 1})
    async with running_worker(orch):
        await wait_for_status(orch, job_id, "failed")
    [row] = await runs(orch, job_id)
    assert row["error"]["type"] == "InvalidPayload"
    assert "key:" in row["error"]["message"]


async def test_per_job_attempts_override(orch: Orchestrator) -> None:
    cases = [
        (1, 5, ["failed"]),
        (2, 5, ["retrying", "failed"]),
        (5, 3, ["retrying", "retrying", "retrying", "succeeded"]),
    ]
    ids = [
        await orch.enqueue_workflow(
            "flaky_fast", {"key": f"o{n}", "fail_times": fail_times}, attempts=attempts
        )
        for n, (attempts, fail_times, _statuses) in enumerate(cases)
    ]
    async with running_worker(orch):
        for job_id in ids:
            await wait_for_status(orch, job_id, "succeeded", "failed", timeout=30)
    for job_id, (_attempts, _fail_times, statuses) in zip(ids, cases, strict=True):
        assert await run_statuses(orch, job_id) == statuses


async def test_input_is_recorded_with_secrets_redacted(orch_extra: Orchestrator) -> None:
    job_id = await orch_extra.enqueue_workflow(
        "secretive", {"client": "acme", "api_token": "tok-123456"}
    )
    async with running_worker(orch_extra):
        await wait_for_status(orch_extra, job_id, "succeeded")
    [row] = await runs(orch_extra, job_id)
    assert row["input"] == {"client": "acme", "api_token": "***"}
    assert row["output"] == {"client": "acme", "token_length": 10}


async def test_completed_and_failed_jobs_emit_log_events(
    orch: Orchestrator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="orchestrator")
    ok = await orch.enqueue_workflow("write_row", {"key": "a"})
    bad = await orch.enqueue_workflow(
        "flaky_fast", {"key": "b", "fail_times": 1, "permanent": True}
    )
    async with running_worker(orch):
        await wait_for_status(orch, ok, "succeeded")
        await wait_for_status(orch, bad, "failed")
    events = {getattr(r, "event", None): r for r in caplog.records}
    completed = events["workflow.completed"]
    assert (completed.workflow, completed.job_id, completed.attempt) == ("write_row", ok, 1)  # type: ignore[attr-defined]
    assert completed.duration_s >= 0  # type: ignore[attr-defined]
    failed = events["workflow.failed"]
    assert (failed.workflow, failed.job_id, failed.attempt) == ("flaky_fast", bad, 1)  # type: ignore[attr-defined]
    assert failed.error_type == "PermanentError"  # type: ignore[attr-defined]
    assert failed.levelno == logging.ERROR


# -- follow-up jobs and steps -------------------------------------------------------------


async def test_chain_enqueues_the_next_job_when_it_commits(orch: Orchestrator) -> None:
    job_id = await orch.enqueue_workflow("chain", {"key": "first", "next_key": "second"})
    async with running_worker(orch):
        await wait_for_status(orch, job_id, "succeeded")
        [row] = await runs(orch, job_id)
        next_id = row["output"]["next_job"]
        await wait_for_status(orch, next_id, "succeeded")
    assert await effects(orch) == ["first", "second"]


async def test_chain_failure_enqueues_nothing(orch: Orchestrator) -> None:
    await execute(orch, "INSERT INTO test_effects (key) VALUES ('taken')")
    job_id = await orch.enqueue_workflow("chain", {"key": "taken", "next_key": "never"}, attempts=1)
    async with running_worker(orch):
        await wait_for_status(orch, job_id, "failed")
    assert (await runs(orch, job_id))[0]["error"]["type"] == "UniqueViolation"
    assert await job_count(orch) == 1


async def test_follow_up_enqueued_by_a_failed_attempt_is_rolled_back(
    orch_extra: Orchestrator,
) -> None:
    """The enqueue joins the attempt's transaction even when it is its first statement."""
    ids = [
        await orch_extra.enqueue_workflow("enqueue_then_fail", {"key": "next"}),
        await orch_extra.enqueue_workflow("commit_then_enqueue_then_fail", {"key": "other"}),
    ]
    async with running_worker(orch_extra):
        for job_id in ids:
            await wait_for_status(orch_extra, job_id, "failed")
    assert await job_count(orch_extra) == 2
    assert await effects(orch_extra) == ["other-step"]  # committed by its own step


async def test_follow_up_enqueued_as_first_statement_commits_with_success(
    orch_extra: Orchestrator,
) -> None:
    job_id = await orch_extra.enqueue_workflow("enqueue_then_fail", {"key": "n", "fail": False})
    async with running_worker(orch_extra):
        await wait_for_status(orch_extra, job_id, "succeeded")

        async def follow_up_done() -> bool:
            return await effects(orch_extra) == ["n"]

        await fix_db.wait_for(follow_up_done, timeout=10)


async def test_steps_commit_progress_and_a_retry_resumes(orch: Orchestrator) -> None:
    job_id = await orch.enqueue_workflow("steps", {"key": "s", "steps": 4, "fail_at_step": 3})
    async with running_worker(orch):
        await wait_for_status(orch, job_id, "succeeded")
    rows = await runs(orch, job_id)
    assert [r["status"] for r in rows] == ["retrying", "succeeded"]
    assert rows[0]["error"]["message"] == "failing at step 3"
    assert rows[1]["output"] == {"steps_done_this_attempt": 2}
    assert await effects(orch, "s:") == ["s:1", "s:2", "s:3", "s:4"]
    attempts = await fetch(
        orch, "SELECT key, attempt FROM test_effects WHERE key LIKE 's:%%' ORDER BY key"
    )
    assert [r["attempt"] for r in attempts] == [1, 1, 2, 2]


# -- at-least-once: a re-run after a committed success --------------------------------------


async def test_runner_does_not_run_a_succeeded_job_again(orch: Orchestrator) -> None:
    job_id = await orch.enqueue_workflow("write_row", {"key": "once"})
    call: dict[str, Any] = {
        "workflow_name": "write_row",
        "payload": {"key": "once"},
        "job_id": job_id,
        "queue": "default",
        "worker_id": None,
    }
    first = await orch.runner.run(attempt=1, **call)
    assert first.status == "succeeded"
    assert first.output == {"key": "once"}
    again = await orch.runner.run(attempt=2, **call)
    assert again.status == "already_succeeded"
    assert await run_statuses(orch, job_id) == ["succeeded"]
    assert await effects(orch) == ["once"]


async def test_job_put_back_after_success_completes_without_running(orch: Orchestrator) -> None:
    """Simulates a crash between our commit and procrastinate's status update."""
    job_id = await orch.enqueue_workflow("write_row", {"key": "once"})
    async with running_worker(orch):
        await wait_for_status(orch, job_id, "succeeded")
        await execute(
            orch,
            "UPDATE procrastinate_jobs SET status = 'todo' WHERE id = %(id)s",
            {"id": job_id},
        )
        await wait_for_status(orch, job_id, "succeeded")
    assert await run_statuses(orch, job_id) == ["succeeded"]
    assert await effects(orch) == ["once"]


# -- cancel and manual retry ---------------------------------------------------------------


async def test_cancel_a_waiting_job(orch: Orchestrator) -> None:
    job_id = await orch.enqueue_workflow("write_row", {"key": "a"}, delay=60)
    assert await orch.cancel_job(job_id) == "cancelled"
    assert await job_status(orch, job_id) == "cancelled"
    assert (await orch.queue_status()).total.cancelled == 1
    with pytest.raises(OrchestratorError, match="already cancelled"):
        await orch.cancel_job(job_id)
    assert await runs(orch, job_id) == []


async def test_cancel_an_unknown_job(orch: Orchestrator) -> None:
    with pytest.raises(JobNotFound):
        await orch.cancel_job(424242)
    with pytest.raises(JobNotFound):
        await orch.retry_job(424242)


async def test_cancel_an_active_job(orch: Orchestrator) -> None:
    job_id = await orch.enqueue_workflow("write_row", {"key": "long", "sleep": 30})
    async with running_worker(orch):
        await wait_for_run_status(orch, job_id, "running")
        assert await orch.cancel_job(job_id) == "abort requested"
        await wait_for_status(orch, job_id, "aborted", timeout=10)
    [row] = await runs(orch, job_id)
    assert row["status"] == "cancelled"
    assert row["error"]["type"] == "CancelledError"
    assert await effects(orch) == []
    assert (await orch.queue_status()).total.cancelled == 1


async def test_manual_retry_of_a_failed_job_gets_a_fresh_budget(orch: Orchestrator) -> None:
    job_id = await orch.enqueue_workflow("flaky_fast", {"key": "m", "fail_times": 4})
    async with running_worker(orch):
        await wait_for_status(orch, job_id, "failed")
        assert await run_statuses(orch, job_id) == ["retrying", "retrying", "failed"]
        with pytest.raises(OrchestratorError, match="only failed or cancelled"):
            await orch.retry_job(await orch.enqueue_workflow("noop", {}, delay=60))
        await orch.retry_job(job_id)
        await wait_for_status(orch, job_id, "succeeded")
    rows = await runs(orch, job_id)
    assert [r["status"] for r in rows] == [
        "retrying",
        "retrying",
        "failed",
        "retrying",
        "succeeded",
    ]
    assert [r["attempt"] for r in rows] == [1, 2, 3, 4, 5]
    assert await effects(orch, "m") == ["m#attempt5"]


async def test_manual_retry_of_a_cancelled_job(orch: Orchestrator) -> None:
    job_id = await orch.enqueue_workflow("write_row", {"key": "back"}, delay=60)
    await orch.cancel_job(job_id)
    await orch.retry_job(job_id)
    assert (await job(orch, job_id))["status"] == "todo"
    async with running_worker(orch):
        await wait_for_status(orch, job_id, "succeeded")
    assert await effects(orch) == ["back"]


async def test_manual_retry_of_an_aborted_job(orch: Orchestrator) -> None:
    job_id = await orch.enqueue_workflow("write_row", {"key": "again", "sleep": 1.0})
    async with running_worker(orch):
        await wait_for_run_status(orch, job_id, "running")
        await orch.cancel_job(job_id)
        await wait_for_status(orch, job_id, "aborted")
        await orch.retry_job(job_id)
        await wait_for_status(orch, job_id, "succeeded")
    assert await run_statuses(orch, job_id) == ["cancelled", "succeeded"]
    assert await effects(orch) == ["again"]
