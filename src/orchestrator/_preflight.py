"""Checks when a person enqueues: refuse what would surely fail, warn about what might.

A workflow may declare ``check=`` (see :class:`~orchestrator.Workflow`): an async function of
a :class:`CheckContext` and the parsed input that raises :class:`~orchestrator.InvalidPayload`
to refuse the job (an unknown client, a key that does not resolve) and returns warnings to
show (a month far from today). ``orchestrator enqueue`` and the plugins' commands run it
through :meth:`Orchestrator.check <orchestrator.Orchestrator.check>` before inserting;
application code and workflows enqueueing the next step do not pay for it.

Example::

    async def check(ctx: CheckContext, data: Input) -> list[str]:
        cursor = await ctx.connection.execute("SELECT 1 FROM clients WHERE name = %s", [data.name])
        if await cursor.fetchone() is None:
            raise InvalidPayload(f"no client named {data.name!r}")
        return []
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow

from orchestrator._settings import Settings

if TYPE_CHECKING:
    from orchestrator._orchestrator import Orchestrator
    from orchestrator._registry import Workflow


@dataclass(frozen=True)
class CheckContext:
    """What an enqueue-time check sees: a read-only transaction and the settings."""

    connection: AsyncConnection[DictRow]
    settings: Settings
    workflow: str


async def run_check(
    workflow: Workflow[Any], payload: Any, connection: AsyncConnection[DictRow], settings: Settings
) -> list[str]:
    """The workflow's warnings for ``payload`` (validated first); raises to refuse it."""
    data = workflow.parse(payload)
    if workflow.check is None:
        return []
    await connection.execute("SET TRANSACTION READ ONLY")
    return list(await workflow.check(CheckContext(connection, settings, workflow.name), data))


@dataclass(frozen=True)
class Submission:
    """What :meth:`Orchestrator.submit <orchestrator.Orchestrator.submit>` did.

    ``created`` is false when a job holding the dedupe key was already waiting, delayed or
    running (``state``): nothing was added and ``job_id`` is that job's.
    """

    job_id: int
    created: bool
    state: str = "waiting"
    warnings: list[str] = field(default_factory=list)


async def submit(
    orch: Orchestrator,
    name: str,
    payload: Mapping[str, Any],
    *,
    dedupe_key: str | None = None,
    **options: Any,
) -> Submission:
    """Check, look for a job already holding the dedupe key (waiting *or running*), enqueue."""
    warnings = await orch.check(name, payload)
    later = "delayed" if options.get("delay") or options.get("schedule_at") else "waiting"
    if dedupe_key is not None:
        # Serialised with every other enqueue of the key: two at once never both insert.
        result = await orch.enqueue_unique(name, payload, dedupe_key=dedupe_key, **options)
        if result.created:
            return Submission(result.job_id, True, later, warnings)
        existing = await orch.unfinished_job(dedupe_key)
        state = str(existing["state"]) if existing is not None else "waiting"
        if result.state == "running":
            state = "active"
        return Submission(result.job_id, False, state, warnings)
    job_id = await orch.enqueue_workflow(name, payload, **options)
    return Submission(job_id, True, later, warnings)
