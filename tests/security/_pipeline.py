"""Helpers shared by the domain security tests (no fixtures here: each module declares its own).

``open_pipeline`` opens the default registry (PT1-PT5) on a test database, like the workflow
integration tests' ``make_pipeline``; ``insert_job`` writes a job straight into
``procrastinate_jobs``, skipping every check ``enqueue_workflow`` makes, as anyone with SQL
access (or ``procrastinate defer``) could; ``add_client_row`` does the same for a client.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from psycopg.types.json import Jsonb

from orchestrator import Orchestrator
from tests.fix_db import settings_for_tests
from tests.fix_pipeline import FINISHED, JobResult, job_result, job_status
from tests.fix_pipeline import run_until as run_worker_until


@contextlib.asynccontextmanager
async def open_pipeline(
    database_url: str, inbox: Path, **overrides: Any
) -> AsyncIterator[Orchestrator]:
    values: dict[str, Any] = {"cole_inbox": inbox, "default_retry_delay": 0.2}
    values.update(overrides)
    orch = Orchestrator(settings_for_tests(**values), schedules=[], database_url=database_url)
    await orch.open()
    try:
        yield orch
    finally:
        await orch.close()


async def insert_job(orch: Orchestrator, workflow: str, payload: Mapping[str, Any]) -> int:
    """A job row written with SQL: no payload validation, no size or NUL checks."""
    async with orch.pool.connection() as conn:
        cursor = await conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args)"
            " VALUES ('default', %s, %s) RETURNING id",
            [workflow, Jsonb({"payload": dict(payload)})],
        )
        row = await cursor.fetchone()
        assert row is not None
        return int(row["id"])


async def run_inserted(orch: Orchestrator, job_id: int, *, timeout: float = 60.0) -> JobResult:
    """Run a worker until ``job_id`` is finished; its status and agent_runs rows."""

    async def finished() -> bool:
        return await job_status(orch, job_id) in FINISHED

    await run_worker_until(orch, finished, timeout=timeout)
    return await job_result(orch, job_id)


async def add_client_row(orch: Orchestrator, **columns: Any) -> int:
    """A client row written with SQL, bypassing ``ClientSpec`` validation."""
    values = {"tier": 100, "licensed_states": ["TX", "OK"], "approved_zips": ["75001"]}
    values.update(columns)
    names = list(values)
    async with orch.pool.connection() as conn:
        cursor = await conn.execute(
            f"INSERT INTO clients ({', '.join(names)})"  # noqa: S608 - names are test literals
            f" VALUES ({', '.join(['%s'] * len(names))}) RETURNING id",
            list(values.values()),
        )
        row = await cursor.fetchone()
        assert row is not None
        return int(row["id"])


def everything_recorded(result: JobResult) -> str:
    """All a job left in agent_runs (inputs, outputs, errors and tracebacks) as one text."""
    return json.dumps(result.runs, default=str)
