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

#: The priority each following step of a chained month is enqueued with (higher goes first;
#: PT1 is enqueued with the default, 0). See :func:`enqueue_next_step`.
STEP_PRIORITY = {"pt2": 0, "pt3": 1, "pt4": 2}


async def enqueue_next_step(ctx: WorkflowContext, step: str, client: str, month: str) -> int:
    """Enqueue the step after ``step`` of a chained month (inside the attempt's transaction).

    The next step keeps the month's dedupe key (a second ``run-month`` finds the chain
    running). Its priority (:data:`STEP_PRIORITY`) shares the day out when every client's
    month is enqueued at once: the ingest steps (PT1, PT2: CPU and database work) queue in
    the order they arrive, so every client's rows are pulled before any client's are cleaned
    and no client waits behind the whole book; a cleaned month goes straight through gap
    analysis to its upload, ahead of them, so uploads (paced by the provider's shared limit,
    not by CPU) start while the rest of the book is still being cleaned and keep that limit
    busy to the end.

    >>> MONTH_CHAIN.index("pt3")
    2
    """
    position = MONTH_CHAIN.index(step) + 1
    if position >= len(MONTH_CHAIN):
        raise ValueError(f"{step} is the last step of the month")
    following = MONTH_CHAIN[position]
    return await ctx.enqueue(
        following,
        month_chain_payload(client, month),
        dedupe_key=month_dedupe_key(client, month),
        priority=STEP_PRIORITY[following],
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
