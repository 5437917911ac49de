"""Calendar-driven starts of workflows, run as procrastinate periodic tasks.

A :class:`Schedule` names a cron expression (UTC, optional 6th field for seconds) and an async
handler. The handler gets a :class:`ScheduleContext` whose ``enqueue`` inserts jobs inside the
handler's transaction, so a schedule either starts all its jobs or none. Procrastinate's cron
has no time zones: a schedule meant for a local time fires at every UTC hour that local time
can fall on and lets its handler check the local clock (as the plugins' schedules do). Such a
schedule says which firings really start work with ``applies``, and in which zone its
calendar is read with ``timezone``, so :func:`next_runs` (``orchestrator schedules``, the
worker's start banner) can tell the real next runs.

>>> import datetime
>>> every_day = Schedule(id="daily", cron="0 9 * * *", handler=None)  # type: ignore[arg-type]
>>> start = datetime.datetime(2026, 11, 29, 10, tzinfo=datetime.UTC)
>>> [t.isoformat() for t in next_runs(every_day, start, 2)]
['2026-11-30T09:00:00+00:00', '2026-12-01T09:00:00+00:00']
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow

from orchestrator._settings import Settings

#: Firings looked at before giving up on finding the next run (a daily cron: ~5 years).
MAX_FIRINGS_SCANNED = 2_000


@dataclass
class ScheduleContext:
    connection: AsyncConnection[DictRow]
    settings: Settings
    enqueue: Callable[..., Awaitable[int]]


ScheduleHandler = Callable[[ScheduleContext, datetime.datetime], Awaitable[Any]]


@dataclass(frozen=True)
class Schedule:
    id: str
    cron: str
    handler: ScheduleHandler
    description: str = ""
    #: Whether a firing at this (UTC) time starts anything: the handler's own calendar check
    #: (``None``: every firing does).
    applies: Callable[[datetime.datetime], bool] | None = None
    #: The IANA zone the schedule's calendar is read in (shown beside UTC).
    timezone: str = "UTC"


def next_runs(
    schedule: Schedule, after: datetime.datetime | None = None, count: int = 1
) -> list[datetime.datetime]:
    """The next ``count`` firings (UTC) after ``after`` that start work."""
    from croniter import croniter

    start = after or datetime.datetime.now(datetime.UTC)
    firings = croniter(schedule.cron, start)
    found: list[datetime.datetime] = []
    for _ in range(MAX_FIRINGS_SCANNED):
        fired: datetime.datetime = firings.get_next(datetime.datetime)
        if schedule.applies is None or schedule.applies(fired):
            found.append(fired)
            if len(found) == count:
                break
    return found
