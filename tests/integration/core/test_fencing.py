"""Fencing: once crash recovery gave a job to another attempt, the old attempt cannot act.

Each test runs a workflow in an in-process worker, holds it at a point (a module-level gate),
fences its attempt the way crash recovery does (the run row ``abandoned``, the job re-queued
with one more attempt) and lets it go on: its next step commit, success record, HTTP request
and external-call intent must all be refused, and it must say so on its run row.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from orchestrator import FencedAttempt, Orchestrator, WorkflowContext
from orchestrator._lease import Lease, LeaseExpired
from orchestrator._registry import Workflow
from orchestrator._retry import RetryPolicy
from tests import fix_db
from tests.fix_pipeline import stub_server
from tests.fix_worker import (
    effects,
    execute,
    fetch,
    job_status,
    run_statuses,
    running_worker,
    runs,
    wait_for_status,
)


class ProbeInput(BaseModel):
    key: str
    url: str = ""


@dataclass
class Gate:
    """Holds attempt 1 of a probe workflow until the test has fenced it."""

    reached: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    seen: list[str] = field(default_factory=list)


GATES: dict[str, Gate] = {}


async def _write(ctx: WorkflowContext, key: str) -> None:
    await ctx.connection.execute(
        "INSERT INTO test_effects (key, job_id, attempt) VALUES (%s, %s, %s)"
        " ON CONFLICT (key) DO NOTHING",  # idempotent steps, as a retry needs them
        [key, ctx.job_id, ctx.attempt],
    )


async def _hold(ctx: WorkflowContext, key: str) -> None:
    if ctx.attempt == 1:
        gate = GATES[key]
        gate.reached.set()
        await gate.release.wait()


async def fence_at_commit(ctx: WorkflowContext, data: ProbeInput) -> dict[str, Any]:
    await _write(ctx, f"{data.key}:1")
    await ctx.commit()
    await _hold(ctx, data.key)
    await _write(ctx, f"{data.key}:2")
    try:
        await ctx.commit()
    except FencedAttempt:
        GATES[data.key].seen.append("commit refused")
        raise
    return {"attempt": ctx.attempt}


async def fence_at_success(ctx: WorkflowContext, data: ProbeInput) -> dict[str, Any]:
    await _hold(ctx, data.key)
    await _write(ctx, data.key)
    return {"attempt": ctx.attempt}


async def fence_at_request(ctx: WorkflowContext, data: ProbeInput) -> dict[str, Any]:
    async with httpx.AsyncClient(event_hooks=ctx.http_hooks) as http:
        await http.post(data.url, json={"attempt": ctx.attempt, "n": 1})
        await _hold(ctx, data.key)
        try:
            await http.post(data.url, json={"attempt": ctx.attempt, "n": 2})
        except FencedAttempt:
            GATES[data.key].seen.append("request refused")
            raise
    return {"attempt": ctx.attempt}


async def fence_at_intent(ctx: WorkflowContext, data: ProbeInput) -> dict[str, Any]:
    await _hold(ctx, data.key)
    try:
        async with ctx.external_call("probe.call", data.key, {"attempt": ctx.attempt}) as call:
            call.outcome = {"done_by": ctx.attempt}
    except FencedAttempt:
        GATES[data.key].seen.append("intent refused")
        raise
    return {"attempt": ctx.attempt}


PROBES: list[Workflow[Any]] = [
    Workflow(name=name, input_model=ProbeInput, run=run, retry=RetryPolicy(3, delay=0.1))
    for name, run in (
        ("fence_at_commit", fence_at_commit),
        ("fence_at_success", fence_at_success),
        ("fence_at_request", fence_at_request),
        ("fence_at_intent", fence_at_intent),
    )
]


@pytest.fixture
async def probes(database_url: str) -> AsyncIterator[Orchestrator]:
    registry = fix_db.registry_for_tests()
    for workflow in PROBES:
        registry.register(workflow)
    orchestrator = Orchestrator(
        fix_db.settings_for_tests(), registry=registry, schedules=[], database_url=database_url
    )
    async with orchestrator:
        yield orchestrator


async def fence(orch: Orchestrator, job_id: int) -> None:
    """What crash recovery does to a job whose worker went silent: fence and re-queue."""
    await execute(
        orch,
        "UPDATE agent_runs SET status = 'abandoned', finished_at = clock_timestamp(),"
        ' error = \'{"type": "WorkerLost", "message": "test"}\''
        " WHERE job_id = %(j)s AND status = 'running'",
        {"j": job_id},
    )
    await execute(
        orch, "SELECT procrastinate_retry_job_v2(%(j)s, now(), NULL, NULL, NULL)", {"j": job_id}
    )


async def run_fenced(orch: Orchestrator, workflow: str, key: str, **payload: Any) -> int:
    """Run ``workflow`` until attempt 1 waits at its gate, fence it, let it go, wait for the
    job's success (by attempt 2); returns the job id."""
    GATES[key] = gate = Gate()
    job_id = await orch.enqueue_workflow(workflow, {"key": key, **payload})
    async with running_worker(orch):
        await asyncio.wait_for(gate.reached.wait(), 20)
        await fence(orch, job_id)
        await wait_for_status(orch, job_id, "succeeded")
        gate.release.set()

        async def fenced_recorded() -> bool:
            return any(
                r["error"] and r["error"]["type"] == "Fenced" for r in await runs(orch, job_id)
            )

        await fix_db.wait_for(fenced_recorded, timeout=20)
    return job_id


async def test_a_fenced_attempt_cannot_commit_a_step(probes: Orchestrator) -> None:
    job_id = await run_fenced(probes, "fence_at_commit", "c")
    assert GATES["c"].seen == ["commit refused"]
    # step 1 of attempt 1 committed under the lease; step 2 only by attempt 2
    rows = await fetch(probes, "SELECT key, attempt FROM test_effects ORDER BY key")
    assert [(r["key"], r["attempt"]) for r in rows] == [("c:1", 1), ("c:2", 2)]
    first, second = await runs(probes, job_id)
    assert (first["status"], first["error"]["type"]) == ("abandoned", "Fenced")
    assert first["error"]["fenced_as"] == "WorkerLost"
    assert second["status"] == "succeeded"
    assert await job_status(probes, job_id) == "succeeded"


async def test_a_fenced_attempt_cannot_record_its_success(probes: Orchestrator) -> None:
    job_id = await run_fenced(probes, "fence_at_success", "s")
    assert await effects(probes) == ["s"]
    assert (await fetch(probes, "SELECT attempt FROM test_effects"))[0]["attempt"] == 2
    assert await run_statuses(probes, job_id) == ["abandoned", "succeeded"]
    assert await job_status(probes, job_id) == "succeeded"


async def test_a_fenced_attempt_sends_no_request(probes: Orchestrator) -> None:
    with stub_server(lambda request: (200, {"ok": True})) as stub:
        job_id = await run_fenced(probes, "fence_at_request", "r", url=stub.url + "/hook")
    assert GATES["r"].seen == ["request refused"]
    sent = [(r.body["attempt"], r.body["n"]) for r in stub.requests]
    assert sent == [(1, 1), (2, 1), (2, 2)]  # attempt 1's second request never left
    first, second = await runs(probes, job_id)
    assert [r.headers["x-orchestrator-run"] for r in stub.requests] == [
        str(first["id"]),
        str(second["id"]),
        str(second["id"]),
    ]


async def test_a_fenced_attempt_records_no_intent(probes: Orchestrator) -> None:
    job_id = await run_fenced(probes, "fence_at_intent", "i")
    assert GATES["i"].seen == ["intent refused"]
    calls = await probes.external_calls(job_id)
    assert [(c["attempt"], c["state"], c["in_doubt"]) for c in calls] == [(2, "done", False)]


async def test_the_success_of_an_abandoned_attempt_is_refused(orch: Orchestrator) -> None:
    # Before fencing, an attempt marked 'abandoned' could still record its success.
    job_id = await orch.enqueue_workflow("write_row", {"key": "late"})
    await execute(
        orch,
        "INSERT INTO agent_runs (job_id, workflow, attempt, status, finished_at)"
        " VALUES (%(j)s, 'write_row', 1, 'abandoned', now())",
        {"j": job_id},
    )
    rows = await fetch(
        orch,
        "UPDATE agent_runs SET status = 'succeeded' WHERE job_id = %(j)s AND status = 'running'"
        " RETURNING id",
        {"j": job_id},
    )
    assert rows == []


# -- the lease's time window -------------------------------------------------------------


async def _run_row(orch: Orchestrator, *, heartbeat_age: float | None) -> int:
    worker_id = None
    if heartbeat_age is not None:
        [worker] = await fetch(
            orch,
            "INSERT INTO procrastinate_workers (last_heartbeat)"
            " VALUES (now() - make_interval(secs => %(a)s)) RETURNING id",
            {"a": heartbeat_age},
        )
        worker_id = worker["id"]
    [row] = await fetch(
        orch,
        "INSERT INTO agent_runs (job_id, workflow, attempt, worker_id) VALUES (1, 'noop', 1, %(w)s)"
        " RETURNING id",
        {"w": worker_id},
    )
    return int(row["id"])


async def test_a_lease_is_held_while_the_heartbeat_is_recent(orch: Orchestrator) -> None:
    lease = Lease(orch.pool, await _run_row(orch, heartbeat_age=0), stalled_after=5.0)
    await lease.confirm()
    await lease.confirm()
    assert lease.checks == 2  # every call began after the previous check: checked again
    assert not lease.fenced


async def test_a_lease_whose_heartbeat_is_stale_expires(orch: Orchestrator) -> None:
    lease = Lease(orch.pool, await _run_row(orch, heartbeat_age=10), stalled_after=5.0)
    with pytest.raises(LeaseExpired):
        await lease.confirm()
    assert not lease.fenced  # not taken yet: the attempt stops and is retried


async def test_a_lease_without_a_worker_row_expires(orch: Orchestrator) -> None:
    run_id = await _run_row(orch, heartbeat_age=0)
    await execute(orch, "DELETE FROM procrastinate_workers")
    with pytest.raises(LeaseExpired):
        await Lease(orch.pool, run_id, stalled_after=5.0).confirm()


async def test_a_lease_checked_before_a_pause_is_checked_again(
    orch: Orchestrator, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = await _run_row(orch, heartbeat_age=0)
    lease = Lease(orch.pool, run_id, stalled_after=5.0)
    await lease.confirm()
    # The process is paused (SIGSTOP) for longer than the lease's window; meanwhile recovery
    # fences the attempt. The next confirm must ask the database, not trust the old answer.
    await execute(orch, "UPDATE agent_runs SET status = 'abandoned', finished_at = now()")
    import time

    real = time.monotonic
    monkeypatch.setattr(time, "monotonic", lambda: real() + 60.0)
    with pytest.raises(FencedAttempt):
        await lease.confirm()
    with pytest.raises(FencedAttempt):  # and stays fenced
        await lease.confirm()


async def test_a_request_spaced_after_its_check_leaves_only_inside_the_window(
    orch: Orchestrator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request held by its rate limit after the lease check (confirm_window) goes on that
    check while its window lasts, and asks the database again once the wait outlasted it."""
    run_id = await _run_row(orch, heartbeat_age=0)
    lease = Lease(orch.pool, run_id, stalled_after=5.0)
    await lease.confirm()
    await lease.confirm_window()
    assert lease.checks == 1  # inside the window: no round trip
    await execute(orch, "UPDATE agent_runs SET status = 'abandoned', finished_at = now()")
    import time

    real = time.monotonic
    monkeypatch.setattr(time, "monotonic", lambda: real() + 60.0)
    with pytest.raises(FencedAttempt):
        await lease.confirm_window()
    assert lease.checks == 2  # past the window it asked the database, which fenced it


async def test_concurrent_checks_share_one_round_trip(orch: Orchestrator) -> None:
    lease = Lease(orch.pool, await _run_row(orch, heartbeat_age=None), stalled_after=5.0)
    await asyncio.gather(*(lease.confirm() for _ in range(8)))
    assert lease.checks <= 2


# -- procrastinate's status updates from a superseded worker ------------------------------


async def test_a_stale_status_update_leaves_a_requeued_job_alone(orch: Orchestrator) -> None:
    from procrastinate.jobs import Job, Status

    job_id = await orch.enqueue_workflow("write_row", {"key": "x"})
    [worker] = await fetch(orch, "INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id")
    await fetch(orch, "SELECT procrastinate_fetch_job_v2(NULL, %(w)s)", {"w": worker["id"]})
    [row] = await fetch(orch, "SELECT * FROM procrastinate_jobs WHERE id = %(j)s", {"j": job_id})
    fetched = Job.from_row(row)
    # recovery re-queues it and another worker fetches it again
    await execute(
        orch, "SELECT procrastinate_retry_job_v2(%(j)s, now(), NULL, NULL, NULL)", {"j": job_id}
    )
    await fetch(orch, "SELECT procrastinate_fetch_job_v2(NULL, %(w)s)", {"w": worker["id"]})
    await orch.app.job_manager.finish_job(fetched, Status.FAILED, delete_job=False)
    await orch.app.job_manager.retry_job(
        fetched, retry_at=datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    )
    [after] = await fetch(
        orch,
        "SELECT status::text AS status, attempts FROM procrastinate_jobs WHERE id = %(j)s",
        {"j": job_id},
    )
    assert (after["status"], after["attempts"]) == ("doing", 1)
    # the current fetch's own update applies
    [row] = await fetch(orch, "SELECT * FROM procrastinate_jobs WHERE id = %(j)s", {"j": job_id})
    await orch.app.job_manager.finish_job(Job.from_row(row), Status.SUCCEEDED, delete_job=False)
    assert await job_status(orch, job_id) == "succeeded"
