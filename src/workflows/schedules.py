"""The pipeline calendar as procrastinate periodic tasks (times in America/Chicago).

- Monthly, on the 15th at 09:00: for every active client, PT1 → PT2 → PT3 → PT4 for the
  renewal month two months ahead. Only PT1 is enqueued here; each step enqueues the next one
  inside its own transaction, so the next step exists only if the previous one succeeded.
- Weekly, Monday at 09:00 (the next business day when Monday is a US federal holiday): PT5
  for every active client, for that Monday's upload date.

Procrastinate's cron knows only UTC, so both fire at 14:00 and 15:00 UTC (09:00 Chicago in
summer and in winter) and the handler keeps the firing that is 09:00 in Chicago. Every job
carries a dedupe key (client + month or upload date), so a double firing inserts nothing twice.
"""

from __future__ import annotations

import datetime
from zoneinfo import ZoneInfo

from orchestrator import Schedule, ScheduleContext, WorkflowContext
from workflows.clients import list_clients
from workflows.windows import (
    SCHEDULE_TIMEZONE,
    format_month,
    is_monthly_run_day,
    renewal_month_for_run,
    weekly_upload_date_for,
)

LOCAL = ZoneInfo(SCHEDULE_TIMEZONE)
RUN_HOUR = 9


def month_chain_payload(client: str, month: str) -> dict[str, object]:
    return {"client": client, "month": month, "chain": True}


#: The steps of a chained month, in order.
MONTH_CHAIN = ("pt1", "pt2", "pt3", "pt4")


async def enqueue_next_step(ctx: WorkflowContext, step: str, client: str, month: str) -> int:
    """Enqueue the step after ``step`` of a chained month (inside the attempt's transaction).

    The next step keeps the month's dedupe key (a second ``run-month`` finds the chain
    running) and gets a priority one higher than the step before it, so when every client's
    month is enqueued at once, a month already under way goes before months not started yet.
    That is what lets the whole book finish at the upload limit's pace: the first clients
    reach PT4 (paced by EmailBison, not by CPU) while the others are still being ingested,
    instead of every upload waiting for the last client's PT1.

    >>> MONTH_CHAIN.index("pt3")
    2
    """
    position = MONTH_CHAIN.index(step) + 1
    if position >= len(MONTH_CHAIN):
        raise ValueError(f"{step} is the last step of the month")
    return await ctx.enqueue(
        MONTH_CHAIN[position],
        month_chain_payload(client, month),
        dedupe_key=month_dedupe_key(client, month),
        priority=position,
    )


def month_dedupe_key(client: str, month: str) -> str:
    """The key every job of a client-month's PT1 → PT4 chain holds, in turn: while one of them
    waits or runs, a second ``run-month`` (or the calendar firing twice) finds it."""
    return f"pt1:{client.strip()}:{month}"


def week_dedupe_key(client: str, upload_date: datetime.date) -> str:
    return f"pt5:{client.strip()}:{upload_date.isoformat()}"


def local_run_time(fired_at: datetime.datetime) -> datetime.datetime | None:
    """The Chicago time of a firing, or ``None`` unless it is 09:00 there."""
    local = fired_at.astimezone(LOCAL)
    return local if local.hour == RUN_HOUR else None


async def monthly(ctx: ScheduleContext, fired_at: datetime.datetime) -> list[int]:
    local = local_run_time(fired_at)
    if local is None or not is_monthly_run_day(local.date()):
        return []
    month = format_month(*renewal_month_for_run(local.date()))
    ids = []
    for client in await list_clients(ctx.connection, active_only=True):
        ids.append(
            await ctx.enqueue(
                "pt1",
                month_chain_payload(client.name, month),
                dedupe_key=month_dedupe_key(client.name, month),
            )
        )
    return ids


async def weekly(ctx: ScheduleContext, fired_at: datetime.datetime) -> list[int]:
    local = local_run_time(fired_at)
    upload_date = None if local is None else weekly_upload_date_for(local.date())
    if upload_date is None:
        return []
    ids = []
    for client in await list_clients(ctx.connection, active_only=True):
        ids.append(
            await ctx.enqueue(
                "pt5",
                {"client": client.name, "upload_date": upload_date.isoformat()},
                dedupe_key=week_dedupe_key(client.name, upload_date),
            )
        )
    return ids


def monthly_applies(fired_at: datetime.datetime) -> bool:
    """Whether this firing starts the month (09:00 in Chicago on the run day)."""
    local = local_run_time(fired_at)
    return local is not None and is_monthly_run_day(local.date())


def weekly_applies(fired_at: datetime.datetime) -> bool:
    """Whether this firing starts a week (09:00 in Chicago on the upload day)."""
    local = local_run_time(fired_at)
    return local is not None and weekly_upload_date_for(local.date()) is not None


SCHEDULES = [
    Schedule(
        id="monthly_pipeline",
        cron="0 14,15 15 * *",
        handler=monthly,
        description="15th 09:00 America/Chicago: PT1 → PT2 → PT3 → PT4, two months ahead",
        applies=monthly_applies,
        timezone=SCHEDULE_TIMEZONE,
    ),
    Schedule(
        id="weekly_evergreen",
        cron="0 14,15 * * *",
        handler=weekly,
        description="Monday (next business day on holidays) 09:00 America/Chicago: PT5",
        applies=weekly_applies,
        timezone=SCHEDULE_TIMEZONE,
    ),
]
