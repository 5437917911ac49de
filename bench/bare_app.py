"""The baseline: a plain procrastinate App with a no-op task and a once-failing task.

Built the way the orchestrator builds its own App (one ``PsycopgConnector`` whose pool has the
same size, row factory and connection check) and run by a worker with the same options as
``orchestrator worker`` (concurrency, polling, heartbeat, LISTEN/NOTIFY, logging level), but
without agent_runs, the runner or the maintenance tasks. :mod:`bench.bare_worker` runs it;
``procrastinate --app=bench.bare_app.app worker`` works too (with procrastinate's defaults).
"""

from __future__ import annotations

import os
from typing import Any

import procrastinate
from procrastinate.job_context import JobContext
from procrastinate.types import JSONDict
from psycopg.rows import dict_row

from orchestrator._settings import Settings, load_settings

NOOP = "bare_noop"
#: The arguments every bare job is deferred with (the orchestrator's jobs carry a payload).
ARGS: JSONDict = {"payload": {}}
FLAKY = "bare_flaky"
#: Seconds between the failed first attempt of ``bare_flaky`` and its retry.
RETRY_DELAY = 1


async def bare_noop(payload: dict[str, Any]) -> None:
    return None


async def bare_flaky(context: JobContext, payload: dict[str, Any]) -> None:
    if context.job.attempts == 0:
        raise RuntimeError("planned failure of the first attempt")


def make_app(database_url: str | None, settings: Settings | None = None) -> procrastinate.App:
    """A bare App on ``database_url`` with the orchestrator's pool settings."""
    settings = settings or load_settings()
    connector = procrastinate.PsycopgConnector(
        conninfo=database_url,
        min_size=settings.pool_min_size,
        max_size=max(settings.pool_max_size, settings.concurrency + 4),
        kwargs={"row_factory": dict_row, "connect_timeout": int(settings.connect_timeout)},
        timeout=settings.connect_timeout * 3,
        name="bare",
    )
    app = procrastinate.App(connector=connector)
    app.task(name=NOOP)(bare_noop)
    app.task(
        name=FLAKY,
        pass_context=True,
        retry=procrastinate.RetryStrategy(max_attempts=1, wait=RETRY_DELAY),
    )(bare_flaky)
    return app


app = make_app(os.environ.get("ORCHESTRATOR_DATABASE_URL"))
