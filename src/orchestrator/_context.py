"""What a workflow sees while it runs: a connection in the job's transaction, and its identity.

A workflow never sees procrastinate or the connection pool. Everything it writes through
``ctx.connection`` commits together with its ``succeeded`` agent_runs row, or is rolled back
with a failed attempt. Long workflows call :meth:`WorkflowContext.commit` after each step so
no transaction stays open for the whole run; steps committed that way must be idempotent
(upserts, "already done" checks) because a retry starts the workflow again from the top.

Example::

    async def run(ctx: WorkflowContext, data: Input) -> dict[str, int]:
        for chunk in chunks:
            await upload(chunk)
            await ctx.connection.execute("INSERT INTO uploaded ... ON CONFLICT DO NOTHING", ...)
            await ctx.commit()            # progress survives a crash or a retry
        next_id = await ctx.enqueue("pt2", {"client": data.client})  # only if this commits
        return {"chunks": len(chunks)}
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow

from orchestrator._settings import Settings

EnqueueInTransaction = Callable[..., Awaitable[int]]
ProgressWriter = Callable[[int, int | None, str | None], Awaitable[None]]


@dataclass
class WorkflowContext:
    """The run-time context handed to a workflow's run function."""

    connection: AsyncConnection[DictRow]
    run_id: int
    job_id: int
    workflow: str
    attempt: int
    max_attempts: int
    settings: Settings
    logger: logging.LoggerAdapter[logging.Logger]
    _enqueue: EnqueueInTransaction
    _commits: int = 0
    _progress: ProgressWriter | None = None

    async def commit(self) -> None:
        """Commit the work done so far; the next statement starts a new transaction."""
        await self.connection.commit()
        self._commits += 1

    async def enqueue(self, workflow: str, payload: Mapping[str, Any], **options: Any) -> int:
        """Enqueue a follow-up job inside this attempt's transaction.

        The job exists only if this attempt succeeds (it commits with the success record);
        options are those of :func:`orchestrator.enqueue_workflow`.
        """
        return await self._enqueue(workflow, payload, connection=self.connection, **options)

    async def progress(
        self, done: int, total: int | None = None, *, note: str | None = None
    ) -> None:
        """Report how far the run is (``done`` of ``total`` ``note``), e.g. leads uploaded.

        Written at once on a connection of its own (not in this attempt's transaction), at
        most a few times a second; shown by the dashboard and ``orchestrator runs``.
        """
        if self._progress is not None:
            await self._progress(done, total, note)

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts
