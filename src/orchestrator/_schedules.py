"""Calendar-driven starts of workflows, run as procrastinate periodic tasks.

A :class:`Schedule` names a cron expression (UTC, optional 6th field for seconds) and an async
handler. The handler gets a :class:`ScheduleContext` whose ``enqueue`` inserts jobs inside the
handler's transaction, so a schedule either starts all its jobs or none. Procrastinate's cron
has no time zones: a schedule meant for a local time fires at every UTC hour that local time
can fall on and lets its handler check the local clock (as the plugins' schedules do).
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow

from orchestrator._settings import Settings


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
    #: Whether a firing at this (UTC) time starts anything: the handler's own calendar check,
    #: so the console can show the next real runs of a cron that fires more often.
    applies: Callable[[datetime.datetime], bool] | None = None
