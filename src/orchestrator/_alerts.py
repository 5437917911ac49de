"""Alerts: a job that failed for good, a job retried too often, a stalled worker.

A sweep (a maintenance task every ``ORCHESTRATOR_ALERT_INTERVAL`` seconds on the workers)
finds new cases in ``agent_runs`` and ``procrastinate_workers`` and hands each to the hooks a
domain registers (``ALERT_HOOKS`` in its catalog module; the engine knows nothing of Slack or
clients). An alert is recorded in ``orchestrator_alerts`` (kind + key, unique) *before* its
hooks run, so it goes out once even with several workers sweeping; a hook that fails is logged
and never fails anything else.

Settings: ``ORCHESTRATOR_ALERT_RETRIES`` (alert when a job's attempt number exceeds it, 3),
``ORCHESTRATOR_ALERT_INTERVAL`` (seconds between sweeps, 30), ``ORCHESTRATOR_DASHBOARD_URL``
(a link to the job in every alert).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, LiteralString

import psycopg
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from orchestrator._plugins import plugins
from orchestrator._queries import _load
from orchestrator._settings import Settings

logger = logging.getLogger("orchestrator.alerts")

#: Failures older than this are not alerted on (a first sweep on an old database stays quiet).
LOOKBACK = "1 day"


@dataclass(frozen=True)
class Alert:
    """One thing worth telling a person about."""

    kind: str  # job_failed | job_retrying | worker_stalled
    key: str
    summary: str
    workflow: str | None = None
    job_id: int | None = None
    attempt: int | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    error_type: str | None = None
    error_message: str | None = None
    link: str | None = None


AlertHook = Callable[[Alert, Settings], Awaitable[None]]

ALERT_SQL: dict[str, LiteralString] = _load(
    resources.files("orchestrator").joinpath("sql/alerts.sql").read_text(encoding="utf-8")
)


def load_alert_hooks(settings: Settings) -> list[AlertHook]:
    """The ``ALERT_HOOKS`` every plugin declares (see :mod:`orchestrator._plugins`)."""
    hooks: list[AlertHook] = []
    for plugin in plugins(settings.workflow_modules):
        hooks.extend(plugin.attribute("ALERT_HOOKS", ()))
    return hooks


def _job_alert(kind: str, key: str, summary: str, row: DictRow, base: str | None) -> Alert:
    """An alert about one job, from a row of the alert queries."""
    return Alert(
        kind,
        key,
        summary,
        row["workflow"],
        row["job_id"],
        row["attempt"],
        dict(row["input"] or {}),
        row["error_type"],
        row["error_message"],
        _link(base, row["job_id"]),
    )


def _link(base: str | None, job_id: int | None) -> str | None:
    if not base or job_id is None:
        return None
    return f"{base.rstrip('/')}/jobs/{job_id}"


async def find_alerts(
    conn: psycopg.AsyncConnection[DictRow], *, retries: int, stalled_after: float, base: str | None
) -> list[Alert]:
    found: list[Alert] = []
    cursor = await conn.execute(ALERT_SQL["job_failed"])
    for row in await cursor.fetchall():
        found.append(
            _job_alert(
                "job_failed",
                str(row["id"]),
                f"{row['workflow']} job {row['job_id']} failed for good (attempt {row['attempt']})",
                row,
                base,
            )
        )
    cursor = await conn.execute(ALERT_SQL["job_retrying"], {"retries": retries})
    for row in await cursor.fetchall():
        found.append(
            _job_alert(
                "job_retrying",
                str(row["job_id"]),
                f"{row['workflow']} job {row['job_id']} failed {row['attempt']} times and is "
                "still retrying",
                row,
                base,
            )
        )
    cursor = await conn.execute(ALERT_SQL["worker_stalled"], {"stalled_after": stalled_after})
    for row in await cursor.fetchall():
        found.append(
            Alert(
                "worker_stalled",
                str(row["id"]),
                f"worker #{row['id']} stopped sending heartbeats "
                f"{int(row['silent_s'])} s ago; its jobs are being re-queued",
                link=base,
            )
        )
    return found


async def sweep(
    pool: AsyncConnectionPool[psycopg.AsyncConnection[DictRow]],
    settings: Settings,
    hooks: Sequence[AlertHook],
) -> list[Alert]:
    """Find new alerts, record each once, then hand the ones recorded here to ``hooks``."""
    sent: list[Alert] = []
    async with pool.connection() as conn:
        alerts = await find_alerts(
            conn,
            retries=settings.alert_retries,
            stalled_after=settings.stalled_after,
            base=settings.dashboard_url,
        )
        for alert in alerts:
            cursor = await conn.execute(
                ALERT_SQL["record_alert"],
                {
                    "kind": alert.kind,
                    "key": alert.key,
                    "job_id": alert.job_id,
                    "message": alert.summary,
                },
            )
            if await cursor.fetchone() is not None:
                sent.append(alert)
        await conn.commit()
    for alert in sent:
        for hook in hooks:
            try:
                await hook(alert, settings)
            except Exception:  # an alert must never break the sweep or a job
                logger.exception(
                    "alert hook failed for %s %s",
                    alert.kind,
                    alert.key,
                    extra={"event": "alert.hook_failed"},
                )
    return sent
