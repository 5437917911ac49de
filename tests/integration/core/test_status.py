"""Status answers: job counts like getJobCounts(), run history, one job — and the SQL views."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator import Orchestrator
from orchestrator._errors import JobNotFound, UnknownWorkflow
from orchestrator._status import STATES
from tests.fix_worker import execute, fetch, running_worker, wait_for_status

#: (workflow, procrastinate status, delayed?) -> expected state
JOBS: list[tuple[str, str, bool, str]] = [
    ("write_row", "todo", False, "waiting"),
    ("write_row", "todo", False, "waiting"),
    ("write_row", "todo", True, "delayed"),
    ("write_row", "doing", False, "active"),
    ("write_row", "succeeded", False, "completed"),
    ("noop", "succeeded", False, "completed"),
    ("noop", "failed", False, "failed"),
    ("noop", "cancelled", False, "cancelled"),
    ("flaky", "aborted", False, "cancelled"),
    ("flaky", "doing", False, "active"),
]


async def _jobs_in_every_state(orch: Orchestrator) -> list[int]:
    ids = []
    for workflow, status, delayed, _state in JOBS:
        payload: dict[str, Any] = {"key": "k", "fail_times": 0} if workflow == "flaky" else {}
        if workflow == "write_row":
            payload = {"key": "k"}
        job_id = await orch.enqueue_workflow(workflow, payload, delay=3600 if delayed else None)
        await execute(
            orch,
            "UPDATE procrastinate_jobs SET status = %(s)s WHERE id = %(id)s",
            {"s": status, "id": job_id},
        )
        ids.append(job_id)
    # The worker's own maintenance jobs are not workflow jobs and are not counted.
    await orch.app.configure_task("orchestrator.recover").defer_async(timestamp=0)
    return ids


async def test_queue_status_counts_every_state(orch: Orchestrator) -> None:
    await _jobs_in_every_state(orch)
    status = await orch.queue_status()
    assert status.total.as_dict() == {
        "waiting": 2,
        "delayed": 1,
        "active": 2,
        "completed": 2,
        "failed": 1,
        "cancelled": 2,
    }
    by = {name: counts.as_dict() for name, counts in status.by_workflow.items()}
    assert by["write_row"] == dict.fromkeys(STATES, 0) | {
        "waiting": 2,
        "delayed": 1,
        "active": 1,
        "completed": 1,
    }
    assert by["noop"] == dict.fromkeys(STATES, 0) | {"completed": 1, "failed": 1, "cancelled": 1}
    assert by["flaky"] == dict.fromkeys(STATES, 0) | {"active": 1, "cancelled": 1}
    assert by["chain"] == dict.fromkeys(STATES, 0)  # registered workflows appear at zero
    assert set(by) == set(orch.registry.names())
    for state in STATES:
        assert sum(c[state] for c in by.values()) == status.total.as_dict()[state]


async def test_queue_status_equals_the_sql_view(orch: Orchestrator) -> None:
    await _jobs_in_every_state(orch)
    status = (await orch.queue_status()).as_dict()
    rows = await fetch(orch, "SELECT * FROM orchestrator_queue_status")
    from_sql = {row.pop("workflow"): {k: int(v) for k, v in row.items()} for row in rows}
    assert from_sql.pop("*") == status["total"]
    assert from_sql == {k: v for k, v in status["by_workflow"].items() if any(v.values())}


async def test_empty_queue_status(orch: Orchestrator) -> None:
    status = await orch.queue_status()
    assert status.total.as_dict() == dict.fromkeys(STATES, 0)
    assert all(not any(c.as_dict().values()) for c in status.by_workflow.values())


async def test_job_states_in_the_jobs_view(orch: Orchestrator) -> None:
    ids = await _jobs_in_every_state(orch)
    for job_id, (workflow, status, _delayed, state) in zip(ids, JOBS, strict=True):
        job = await orch.get_job(job_id)
        assert (job["workflow"], job["procrastinate_status"], job["state"]) == (
            workflow,
            status,
            state,
        )
    with pytest.raises(JobNotFound, match="424242"):
        await orch.get_job(424242)


async def _some_runs(orch: Orchestrator) -> dict[str, int]:
    ids = {
        "ok": await orch.enqueue_workflow("write_row", {"key": "a"}),
        "flaky": await orch.enqueue_workflow("flaky_fast", {"key": "b", "fail_times": 1}),
        "bad": await orch.enqueue_workflow("crash", {"key": "c"}),
    }
    async with running_worker(orch):
        for job_id in ids.values():
            await wait_for_status(orch, job_id, "succeeded", "failed")
    return ids


async def test_list_runs_filters(orch: Orchestrator) -> None:
    ids = await _some_runs(orch)
    everything = await orch.list_runs(limit=100)
    assert len(everything) == 1 + 2 + 2
    assert [r["run_id"] for r in everything] == sorted(
        (r["run_id"] for r in everything), reverse=True
    )

    flaky = await orch.list_runs(workflow="flaky_fast")
    assert [r["status"] for r in flaky] == ["succeeded", "retrying"]
    assert [r["attempt"] for r in flaky] == [2, 1]
    assert flaky[1]["error_type"] == "RetryableError"
    assert flaky[0]["output"] == {"succeeded_on": 2}

    assert [r["workflow"] for r in await orch.list_runs(workflow="write")] == ["write_row"]
    failed = await orch.list_runs(status="failed")
    assert [(r["job_id"], r["error_type"]) for r in failed] == [(ids["bad"], "RuntimeError")]
    assert {r["job_id"] for r in await orch.list_runs(status="retrying")} == {
        ids["flaky"],
        ids["bad"],
    }
    by_job = await orch.list_runs(job_id=ids["bad"])
    assert [r["status"] for r in by_job] == ["failed", "retrying"]
    assert await orch.list_runs(workflow="crash", status="succeeded") == []
    assert len(await orch.list_runs(limit=2)) == 2
    assert len(await orch.list_runs(limit=0)) == 1
    assert all(r["duration_s"] >= 0 for r in everything)


async def test_list_runs_rejects_unknown_filters(orch: Orchestrator) -> None:
    with pytest.raises(ValueError, match="unknown run status 'lost'"):
        await orch.list_runs(status="lost")
    with pytest.raises(UnknownWorkflow):
        await orch.list_runs(workflow="nope")


async def test_runs_view_matches_agent_runs(orch: Orchestrator) -> None:
    await _some_runs(orch)
    view = await fetch(orch, "SELECT run_id, status, duration_s FROM orchestrator_runs")
    table = await fetch(
        orch,
        "SELECT id AS run_id, status::text AS status,"
        " EXTRACT(EPOCH FROM finished_at - started_at) AS duration_s FROM agent_runs",
    )
    key = lambda r: r["run_id"]  # noqa: E731
    assert sorted(view, key=key) == sorted(table, key=key)
