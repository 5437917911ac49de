"""The monthly and weekly schedule handlers on a real connection (times in UTC, run in Chicago)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator import Orchestrator
from orchestrator._schedules import ScheduleContext, ScheduleHandler
from tests.fix_db import settings_for_tests
from tests.fix_pipeline import ClientFactory, fetch, scalar
from workflows import schedules

ACTIVE = ("Active One", "Active Two & Sons")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def fire(orch: Orchestrator, handler: ScheduleHandler, when: datetime) -> Any:
    """Run a schedule handler as the periodic task does: one transaction, committed."""
    async with orch.pool.connection() as conn:

        async def enqueue(name: str, payload: dict[str, Any], **options: Any) -> int:
            return await orch.enqueue_workflow(name, payload, connection=conn, **options)

        result = await handler(
            ScheduleContext(connection=conn, settings=orch.settings, enqueue=enqueue), when
        )
        await conn.commit()
    return result


async def jobs(orch: Orchestrator) -> list[dict[str, Any]]:
    return await fetch(
        orch,
        "SELECT id, task_name, args -> 'payload' AS payload, queueing_lock,"
        " status::text AS status FROM procrastinate_jobs ORDER BY id",
    )


@pytest.fixture
async def clients(make_client: ClientFactory) -> None:
    for name in ACTIVE:
        await make_client(name)
    await make_client("Dormant Agency", active=False)


@pytest.mark.parametrize(
    ("fired_at", "month"),
    [
        ("2026-07-15T14:00:00", "2026-09"),  # summer: 14:00 UTC is 09:00 CDT
        ("2026-07-15T15:00:00", None),  # 10:00 CDT
        ("2026-01-15T15:00:00", "2026-03"),  # winter: 15:00 UTC is 09:00 CST
        ("2026-01-15T14:00:00", None),  # 08:00 CST
        ("2026-11-15T15:00:00", "2027-01"),  # across the year end
        ("2026-07-16T14:00:00", None),  # not the 15th
    ],
)
async def test_monthly_enqueues_pt1_chains_only_at_nine_in_chicago(
    pipeline: Orchestrator, clients: None, fired_at: str, month: str | None
) -> None:
    ids = await fire(pipeline, schedules.monthly, utc(fired_at))

    found = await jobs(pipeline)
    if month is None:
        assert ids == [] and found == []
        return
    assert len(ids) == 2 and [j["id"] for j in found] == ids
    assert {j["task_name"] for j in found} == {"pt1"}
    assert [j["payload"] for j in found] == [
        {"client": name, "month": month, "chain": True} for name in ACTIVE
    ]
    assert [j["queueing_lock"] for j in found] == [f"pt1:{name}:{month}" for name in ACTIVE]
    assert {j["status"] for j in found} == {"todo"}


async def test_monthly_double_firing_enqueues_once(pipeline: Orchestrator, clients: None) -> None:
    first = await fire(pipeline, schedules.monthly, utc("2026-07-15T14:00:00"))
    second = await fire(pipeline, schedules.monthly, utc("2026-07-15T14:00:00"))

    assert second == first
    assert await scalar(pipeline, "SELECT count(*) FROM procrastinate_jobs") == 2


@pytest.mark.parametrize(
    ("fired_at", "upload_date"),
    [
        ("2026-05-25T14:00:00", None),  # Memorial Day: the run moves to Tuesday
        ("2026-05-26T14:00:00", "2026-05-25"),  # ... keeping Monday as the upload date
        ("2026-05-26T15:00:00", None),  # 10:00 CDT
        ("2026-06-01T14:00:00", "2026-06-01"),  # an ordinary Monday, summer
        ("2026-06-02T14:00:00", None),  # an ordinary Tuesday
        ("2026-01-05T15:00:00", "2026-01-05"),  # an ordinary Monday, winter
        ("2026-01-05T14:00:00", None),  # 08:00 CST
    ],
)
async def test_weekly_enqueues_pt5_on_the_first_business_day(
    pipeline: Orchestrator, clients: None, fired_at: str, upload_date: str | None
) -> None:
    ids = await fire(pipeline, schedules.weekly, utc(fired_at))

    found = await jobs(pipeline)
    if upload_date is None:
        assert ids == [] and found == []
        return
    assert len(ids) == 2 and [j["id"] for j in found] == ids
    assert {j["task_name"] for j in found} == {"pt5"}
    assert [j["payload"] for j in found] == [
        {"client": name, "upload_date": upload_date} for name in ACTIVE
    ]
    assert [j["queueing_lock"] for j in found] == [f"pt5:{name}:{upload_date}" for name in ACTIVE]


async def test_weekly_double_firing_enqueues_once(pipeline: Orchestrator, clients: None) -> None:
    first = await fire(pipeline, schedules.weekly, utc("2026-05-26T14:00:00"))
    second = await fire(pipeline, schedules.weekly, utc("2026-05-26T14:00:00"))

    assert second == first
    assert await scalar(pipeline, "SELECT count(*) FROM procrastinate_jobs") == 2


async def test_no_active_client_enqueues_nothing(
    pipeline: Orchestrator, make_client: ClientFactory
) -> None:
    await make_client("Dormant Agency", active=False)

    assert await fire(pipeline, schedules.monthly, utc("2026-07-15T14:00:00")) == []
    assert await fire(pipeline, schedules.weekly, utc("2026-06-01T14:00:00")) == []
    assert await jobs(pipeline) == []


def test_default_orchestrator_registers_both_schedules(database_url: str) -> None:
    orch = Orchestrator(settings_for_tests(), database_url=database_url)

    by_id = {s.id: s for s in orch.schedules}
    assert set(by_id) >= {"monthly_pipeline", "weekly_evergreen"}
    assert by_id["monthly_pipeline"].cron == "0 14,15 15 * *"
    assert by_id["weekly_evergreen"].cron == "0 14,15 * * *"
    assert by_id["monthly_pipeline"].handler is schedules.monthly
    assert by_id["weekly_evergreen"].handler is schedules.weekly
