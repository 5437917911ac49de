"""Enqueueing workflow jobs against real PostgreSQL: validation, options, transactions."""

from __future__ import annotations

import datetime
from typing import Any

import psycopg
import pytest

from orchestrator import Orchestrator
from orchestrator._enqueue import JobRequest
from orchestrator._errors import DuplicateJob, InvalidPayload, UnknownWorkflow
from tests.fix_db import wait_for
from tests.fix_worker import (
    effects,
    fetch,
    job,
    job_count,
    job_status,
    running_worker,
    wait_for_status,
)


class Rollback(Exception):
    """Raised inside a caller's transaction block to roll it back."""


async def _state(orch: Orchestrator, job_id: int) -> str:
    rows = await fetch(
        orch, "SELECT state FROM orchestrator_jobs WHERE job_id = %(id)s", {"id": job_id}
    )
    return str(rows[0]["state"])


async def test_enqueue_returns_the_job_id_and_stores_the_validated_payload(
    orch: Orchestrator,
) -> None:
    job_id = await orch.enqueue_workflow("write", {"key": "a"})
    row = await job(orch, job_id)
    assert row["task_name"] == "write_row"  # the alias resolves to the canonical name
    assert row["status"] == "todo"
    assert row["args"] == {"payload": {"key": "a"}}
    assert row["queueing_lock"] is None
    assert await _state(orch, job_id) == "waiting"


async def test_unknown_workflow_is_refused_and_nothing_inserted(orch: Orchestrator) -> None:
    with pytest.raises(UnknownWorkflow, match=r"'nope'.*write_row"):
        await orch.enqueue_workflow("nope", {"key": "a"})
    assert await job_count(orch) == 0


INVALID_PAYLOADS: list[tuple[dict[str, object], str]] = [
    ({}, "key"),
    ({"key": ""}, "key"),
    ({"key": "a", "sleep": -1}, "sleep"),
]

INVALID_OPTIONS: list[tuple[dict[str, Any], str]] = [
    ({"attempts": 0}, "attempts must be between 1 and 100"),
    ({"priority": 10**7}, "priority must be between"),
    ({"delay": -1}, "delay must not be negative"),
    ({"dedupe_key": ""}, "dedupe_key must be 1 to 500 characters"),
    ({"schedule_at": datetime.datetime(2030, 1, 1)}, "timezone-aware"),
    (
        {"delay": 1, "schedule_at": datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)},
        "either delay or schedule_at",
    ),
]


async def test_invalid_payload_is_refused_with_the_field_and_nothing_inserted(
    orch: Orchestrator,
) -> None:
    for payload, field in INVALID_PAYLOADS:
        with pytest.raises(InvalidPayload) as info:
            await orch.enqueue_workflow("write_row", payload)
        assert f"{field}:" in str(info.value), payload
    assert await job_count(orch) == 0


async def test_invalid_options_are_refused(orch: Orchestrator) -> None:
    for options, message in INVALID_OPTIONS:
        with pytest.raises(InvalidPayload, match=message):
            await orch.enqueue_workflow("write_row", {"key": "a"}, **options)
    assert await job_count(orch) == 0


async def test_oversized_payload_is_refused(database_url: str) -> None:
    from tests import fix_db

    big = Orchestrator(
        fix_db.settings_for_tests(max_payload_bytes=1000),
        registry=fix_db.registry_for_tests(),
        schedules=[],
        database_url=database_url,
    )
    async with big:
        await big.enqueue_workflow("flaky", {"key": "k" * 100, "fail_times": 0})
        with pytest.raises(InvalidPayload, match="ORCHESTRATOR_MAX_PAYLOAD_BYTES"):
            await big.enqueue_workflow("flaky", {"key": "k" * 2000, "fail_times": 0})
        assert await job_count(big) == 1


async def test_delay_makes_a_delayed_job(orch: Orchestrator) -> None:
    delays: list[float | datetime.timedelta] = [30, 30.0, datetime.timedelta(seconds=30)]
    for delay in delays:
        before = datetime.datetime.now(datetime.UTC)
        job_id = await orch.enqueue_workflow("write_row", {"key": "a"}, delay=delay)
        row = await job(orch, job_id)
        expected = before + datetime.timedelta(seconds=30)
        assert expected <= row["scheduled_at"] <= expected + datetime.timedelta(seconds=5)
        assert await _state(orch, job_id) == "delayed"
    assert (await orch.queue_status()).total.delayed == 3


async def test_schedule_at_makes_a_delayed_job(orch: Orchestrator) -> None:
    at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=2)
    job_id = await orch.enqueue_workflow("write_row", {"key": "a"}, schedule_at=at)
    assert (await job(orch, job_id))["scheduled_at"] == at
    assert await _state(orch, job_id) == "delayed"


async def test_a_delayed_job_runs_once_due(orch: Orchestrator) -> None:
    job_id = await orch.enqueue_workflow("write_row", {"key": "a"}, delay=0.6)
    async with running_worker(orch):
        await wait_for_status(orch, job_id, "succeeded", timeout=10)
    # Due at enqueue time + 0.6 s (the client's clock); the 'deferred' event is stamped a
    # little later by the database, so the wait is measured from the due time.
    rows = await fetch(
        orch,
        "SELECT (SELECT at FROM procrastinate_events WHERE job_id = %(id)s AND type = 'started')"
        " - (SELECT at FROM procrastinate_events WHERE job_id = %(id)s AND type = 'deferred')"
        " AS waited,"
        " (SELECT at FROM procrastinate_events WHERE job_id = %(id)s AND type = 'started')"
        " - scheduled_at AS after_due"
        " FROM procrastinate_jobs WHERE id = %(id)s",
        {"id": job_id},
    )
    assert rows[0]["after_due"] >= datetime.timedelta(0)
    assert rows[0]["waited"] >= datetime.timedelta(seconds=0.5)


async def test_priority_is_stored_and_higher_runs_first(orch: Orchestrator) -> None:
    low = await orch.enqueue_workflow("write_row", {"key": "low"}, priority=-5)
    default = await orch.enqueue_workflow("write_row", {"key": "default"})
    high = await orch.enqueue_workflow("write_row", {"key": "high"}, priority=10)
    assert [(await job(orch, i))["priority"] for i in (low, default, high)] == [-5, 0, 10]
    async with running_worker(orch, concurrency=1):
        for job_id in (low, default, high):
            await wait_for_status(orch, job_id, "succeeded")
    assert await effects(orch) == ["high", "default", "low"]


async def test_dedupe_key_returns_the_waiting_job(orch: Orchestrator) -> None:
    first = await orch.enqueue_workflow("write_row", {"key": "a"}, dedupe_key="client-1")
    again = await orch.enqueue_workflow("write_row", {"key": "b"}, dedupe_key="client-1")
    other = await orch.enqueue_workflow("write_row", {"key": "c"}, dedupe_key="client-2")
    assert again == first
    assert other != first
    assert await job_count(orch) == 2
    assert (await job(orch, first))["args"] == {"payload": {"key": "a"}}


async def test_dedupe_key_is_free_again_once_the_job_left_the_queue(orch: Orchestrator) -> None:
    first = await orch.enqueue_workflow("write_row", {"key": "a"}, dedupe_key="k")
    async with running_worker(orch):
        await wait_for_status(orch, first, "succeeded")
    second = await orch.enqueue_workflow("write_row", {"key": "b"}, dedupe_key="k")
    assert second != first


async def test_enqueue_many_raises_duplicate_job(orch: Orchestrator) -> None:
    await orch.enqueue_workflow("write_row", {"key": "a"}, dedupe_key="k")
    with pytest.raises(DuplicateJob, match="dedupe key"):
        await orch.enqueue_many([JobRequest("write_row", {"key": "b"}, dedupe_key="k")])
    with pytest.raises(DuplicateJob):
        await orch.enqueue_many(
            [
                JobRequest("write_row", {"key": "c"}, dedupe_key="new"),
                JobRequest("write_row", {"key": "d"}, dedupe_key="new"),
            ]
        )
    assert await job_count(orch) == 1


async def test_enqueue_many_inserts_every_job(orch: Orchestrator) -> None:
    ids = await orch.enqueue_many(
        [
            JobRequest("write_row", {"key": "a"}),
            JobRequest("flaky", {"key": "b", "fail_times": 0}, priority=3),
            JobRequest("noop", {}, delay=60),
            JobRequest("write", {"key": "c"}, attempts=1),
        ]
    )
    assert len(ids) == len(set(ids)) == 4
    rows = [await job(orch, i) for i in ids]
    assert [r["task_name"] for r in rows] == ["write_row", "flaky", "noop", "write_row"]
    assert rows[1]["priority"] == 3
    assert rows[2]["scheduled_at"] is not None
    assert rows[3]["args"] == {"payload": {"key": "c"}, "attempts": 1}
    assert await orch.enqueue_many([]) == []


async def test_enqueue_many_is_all_or_nothing(orch: Orchestrator) -> None:
    good = JobRequest("write_row", {"key": "a"})
    with pytest.raises(InvalidPayload, match="fail_times"):
        await orch.enqueue_many([good, JobRequest("flaky", {"key": "b"}), good])
    with pytest.raises(UnknownWorkflow):
        await orch.enqueue_many([good, JobRequest("nope", {})])
    await orch.enqueue_workflow("write_row", {"key": "x"}, dedupe_key="taken")
    with pytest.raises(DuplicateJob):
        await orch.enqueue_many(
            [good, good, JobRequest("write_row", {"key": "y"}, dedupe_key="taken")]
        )
    assert await job_count(orch) == 1


# -- inside the caller's transaction ------------------------------------------------------


async def test_rolled_back_transaction_leaves_no_job(orch: Orchestrator, database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        with pytest.raises(Rollback):
            async with conn.transaction():
                await conn.execute("INSERT INTO test_effects (key) VALUES ('caller')")
                await orch.enqueue_workflow("write_row", {"key": "a"}, connection=conn)
                await orch.enqueue_many([JobRequest("noop", {})], connection=conn)
                raise Rollback
    assert await job_count(orch) == 0
    assert await effects(orch) == []


async def test_committed_transaction_keeps_the_job(orch: Orchestrator, database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as conn, conn.transaction():
        job_id = await orch.enqueue_workflow("write_row", {"key": "a"}, connection=conn)
        assert await job_count(orch) == 0  # not visible before the caller commits
    assert await job_status(orch, job_id) == "todo"


async def test_job_enqueued_in_a_transaction_runs_after_commit(
    orch: Orchestrator, database_url: str
) -> None:
    async with running_worker(orch):
        conn = await psycopg.AsyncConnection.connect(database_url)
        async with conn, conn.transaction():
            job_id = await orch.enqueue_workflow("write_row", {"key": "a"}, connection=conn)
        await wait_for_status(orch, job_id, "succeeded")


async def test_implicit_transaction_rolled_back_leaves_no_job(
    orch: Orchestrator, database_url: str
) -> None:
    """A non-autocommit connection with no statement yet: enqueue must join, not commit."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await orch.enqueue_workflow("write_row", {"key": "a"}, connection=conn)
        await orch.enqueue_many([JobRequest("noop", {})], connection=conn)
        await conn.execute("INSERT INTO test_effects (key) VALUES ('caller')")
        await conn.rollback()
    assert await job_count(orch) == 0
    assert await effects(orch) == []


async def test_implicit_transaction_committed_keeps_the_job(
    orch: Orchestrator, database_url: str
) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        job_id = await orch.enqueue_workflow("write_row", {"key": "a"}, connection=conn)
        await conn.commit()
    assert await job_status(orch, job_id) == "todo"


async def test_autocommit_connection_inserts_at_once(orch: Orchestrator, database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        job_id = await orch.enqueue_workflow("write_row", {"key": "a"}, connection=conn)
        assert await job_status(orch, job_id) == "todo"


@pytest.mark.parametrize("autocommit", [False, True], ids=["implicit", "autocommit"])
async def test_duplicate_job_does_not_abort_the_callers_transaction(
    orch: Orchestrator, database_url: str, autocommit: bool
) -> None:
    existing = await orch.enqueue_workflow("write_row", {"key": "a"}, dedupe_key="k")
    conn = await psycopg.AsyncConnection.connect(database_url, autocommit=autocommit)
    async with conn, conn.transaction():
        await conn.execute("INSERT INTO test_effects (key) VALUES ('before')")
        with pytest.raises(DuplicateJob):
            await orch.enqueue_many(
                [JobRequest("write_row", {"key": "b"}, dedupe_key="k")], connection=conn
            )
        same = await orch.enqueue_workflow(
            "write_row", {"key": "c"}, dedupe_key="k", connection=conn
        )
        assert same == existing
        new = await orch.enqueue_workflow("noop", {}, connection=conn)
        await conn.execute("INSERT INTO test_effects (key) VALUES ('after')")
    assert await effects(orch) == ["before", "after"]
    assert await job_count(orch) == 2
    assert await job_status(orch, new) == "todo"


async def test_dedupe_key_sees_a_job_waiting_in_the_same_transaction(
    orch: Orchestrator, database_url: str
) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as conn, conn.transaction():
        first = await orch.enqueue_workflow("noop", {}, dedupe_key="k", connection=conn)
        again = await orch.enqueue_workflow("noop", {}, dedupe_key="k", connection=conn)
    assert again == first
    assert await job_count(orch) == 1


async def test_notify_wakes_a_worker_without_polling(database_url: str) -> None:
    """With a long poll interval, a new job still starts at once (LISTEN/NOTIFY)."""
    from tests import fix_db

    slow_poll = Orchestrator(
        fix_db.settings_for_tests(poll_interval=30),
        registry=fix_db.registry_for_tests(),
        schedules=[],
        database_url=database_url,
    )
    async with slow_poll, running_worker(slow_poll):
        await _wait_for_worker(slow_poll)
        job_id = await slow_poll.enqueue_workflow("write_row", {"key": "a"})
        await wait_for_status(slow_poll, job_id, "succeeded", timeout=5)


async def _wait_for_worker(orch: Orchestrator) -> None:
    async def registered() -> bool:
        return bool(await fetch(orch, "SELECT 1 FROM procrastinate_workers"))

    await wait_for(registered, timeout=10)
