"""What a worker says when it starts: what it runs, how many at once, where, and when.

One INFO record per line (so JSON mode stays one object per line), event
``worker.started``::

    worker worker-4242 started: concurrency 4, queues all (pid 4242)
      workflows: pt1, pt2, pt3, pt4, pt5
      schedules: monthly_pipeline next Tue 2026-12-15 09:00 CST, weekly_evergreen next ...
      database:  jobs on db:5432 as app, schema 0018_window_leads_no_cascade
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from orchestrator._orchestrator import Orchestrator
from orchestrator._schedules import next_runs

logger = logging.getLogger("orchestrator.worker")


def banner_lines(
    orch: Orchestrator,
    *,
    name: str,
    concurrency: int,
    queues: Sequence[str] | None,
    database_url: str,
    embedded: bool,
    revisions: frozenset[str],
    now: datetime | None = None,
) -> list[str]:
    moment = now or datetime.now(UTC)
    workflows = ", ".join(orch.registry.names()) or "none"
    plans = []
    for schedule in orch.schedules:
        upcoming = next_runs(schedule, moment, 1)
        when = (
            upcoming[0].astimezone(ZoneInfo(schedule.timezone)).strftime("%a %Y-%m-%d %H:%M %Z")
            if upcoming
            else "never"
        )
        plans.append(f"{schedule.id} next {when}")
    where = _where(database_url, embedded)
    schema = ", ".join(sorted(revisions)) or "unknown"
    return [
        f"worker {name} started: concurrency {concurrency}, "
        f"queues {', '.join(queues) if queues else 'all'} (pid {os.getpid()})",
        f"  workflows: {workflows}",
        f"  schedules: {', '.join(plans) if plans else 'none'}",
        f"  database:  {where}, schema {schema}",
    ]


def _where(database_url: str, embedded: bool) -> str:
    """``jobs on db.example:5432 as app`` (never the password), or the embedded server."""
    from psycopg import Error
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(database_url)
    except Error:  # settings refuse such URLs; never quote one anyway
        return "(unparsable URL)"
    name = params.get("dbname") or params.get("user") or "postgres"
    host = str(params.get("host") or "localhost")
    if embedded:
        return f"{name} on the embedded server ({host.removesuffix('/pgdata')})"
    port = f":{params['port']}" if params.get("port") else ""
    user = f" as {params['user']}" if params.get("user") else ""
    return f"{name} on {host}{port}{user}"


def log_banner(
    orch: Orchestrator,
    *,
    name: str,
    concurrency: int,
    queues: Sequence[str] | None,
    database_url: str,
    embedded: bool,
    revisions: frozenset[str],
) -> None:
    lines = banner_lines(
        orch,
        name=name,
        concurrency=concurrency,
        queues=queues,
        database_url=database_url,
        embedded=embedded,
        revisions=revisions,
    )
    fields = {
        "event": "worker.started",
        "worker": name,
        "concurrency": concurrency,
        "queues": list(queues or []),
        "workflows": orch.registry.names(),
        "schedules": [s.id for s in orch.schedules],
    }
    for line in lines:
        logger.info(orch.scrubber(line), extra=fields)
