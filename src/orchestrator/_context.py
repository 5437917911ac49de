"""What a workflow sees while it runs: a connection in the job's transaction, and its identity.

A workflow never sees procrastinate or the connection pool. Everything it writes through
``ctx.connection`` commits together with its ``succeeded`` agent_runs row, or is rolled back
with a failed attempt. Long workflows call :meth:`WorkflowContext.commit` after each step so
no transaction stays open for the whole run; steps committed that way must be idempotent
(upserts, "already done" checks) because a retry starts the workflow again from the top.

The attempt holds its job's *lease* (see :mod:`orchestrator._lease`). Once crash recovery
has given the job to another attempt, this one is *fenced*: its next ``commit()``, its success
record, every request of the HTTP clients built with :attr:`WorkflowContext.http_hooks` and
every :meth:`~WorkflowContext.external_call` raise :class:`~orchestrator.FencedAttempt` and
nothing is written or sent. When the worker is asked to stop, ``ctx.stopping`` turns true and
the next step boundary (``commit()``, ``check()``) raises :class:`~orchestrator.WorkerStopping`:
the attempt ends between two steps, its progress committed, and is retried at once elsewhere.

Example::

    async def run(ctx: WorkflowContext, data: Input) -> dict[str, int]:
        async with httpx.AsyncClient(event_hooks=ctx.http_hooks) as http:
            for chunk in chunks:
                await ctx.check()                      # fenced or stopping: stop here
                async with ctx.external_call("upload", chunk.key) as call:
                    call.outcome = (await http.post(url, json=chunk.body)).json()
                await ctx.connection.execute("INSERT INTO uploaded ... ON CONFLICT DO NOTHING")
                await ctx.commit()            # progress survives a crash or a retry
        next_id = await ctx.enqueue("pt2", {"client": data.client})  # only if this commits
        return {"chunks": len(chunks)}
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow

from orchestrator._errors import FencedAttempt, WorkerStopping
from orchestrator._external_calls import CallHandle, CallLedger, ExternalCall
from orchestrator._lease import Lease
from orchestrator._rate_limits import RateLimit, rate_limit
from orchestrator._settings import Settings

EnqueueInTransaction = Callable[..., Awaitable[int]]
ProgressWriter = Callable[[int, int | None, str | None], Awaitable[None]]
HttpHook = Callable[[Any], Awaitable[None]]

#: Request header naming the attempt that sent a request (for tracing on the other side).
RUN_HEADER = "X-Orchestrator-Run"


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
    _lease: Lease
    _ledger: CallLedger
    _stopping: Callable[[], bool]
    _commits: int = 0
    _progress: ProgressWriter | None = None

    async def commit(self) -> None:
        """Commit the work done so far; the next statement starts a new transaction.

        Refused with :class:`~orchestrator.FencedAttempt` (the transaction rolled back) once
        the attempt lost its lease. When the worker is stopping, the step is committed and
        :class:`~orchestrator.WorkerStopping` raised after it.
        """
        try:
            await self._lease.hold(self.connection)
        except FencedAttempt:
            await self.connection.rollback()
            raise
        await self.connection.commit()
        self._commits += 1
        if self._stopping():
            raise WorkerStopping(
                f"the worker is shutting down; stopped after step {self._commits} "
                "(committed) to resume on another attempt"
            )

    async def check(self) -> None:
        """Before a costly step: raise if the worker is stopping or the attempt was fenced."""
        if self._stopping():
            raise WorkerStopping("the worker is shutting down; stopped before the next step")
        await self._lease.confirm()

    @property
    def stopping(self) -> bool:
        """Whether the worker was asked to stop (finish the current step, then return)."""
        return self._stopping()

    @property
    def fenced(self) -> bool:
        """Whether this attempt learned that it lost its lease."""
        return self._lease.fenced

    @property
    def http_hooks(self) -> dict[str, list[HttpHook]]:
        """httpx ``event_hooks`` that check the lease before every request (a fenced attempt
        sends nothing) and name the attempt in an ``X-Orchestrator-Run`` header. A request
        whose ``extensions`` hold :attr:`RateLimit.SEND_GATE` (a shared limit's
        ``before_send``) is spaced by it after the lease check, the last step before it
        leaves::

            httpx.AsyncClient(event_hooks=ctx.http_hooks)
        """
        return {"request": [self._before_request]}

    async def _before_request(self, request: Any) -> None:
        # The lease only: a stopping worker lets the step in hand finish its requests (its
        # completion message included); steps end at commit() and check().
        await self._lease.confirm()
        gate = request.extensions.get(RateLimit.SEND_GATE)
        if gate is not None:
            # Spaced on its rate limit as it leaves, once the lease check (a round trip whose
            # time varies under load) is behind it; the wait may outlast the check's window.
            await gate()
            await self._lease.confirm_window()
        self._ledger.mark_sent()
        request.headers[RUN_HEADER] = str(self.run_id)

    def external_call(
        self,
        kind: str,
        key: str,
        request: Mapping[str, Any] | None = None,
        *,
        refused: Callable[[BaseException], bool] | None = None,
    ) -> AbstractAsyncContextManager[CallHandle]:
        """Record the intent of a non-idempotent call (committed, lease checked), run the
        block, record its outcome. See :mod:`orchestrator._external_calls`."""
        return self._ledger.call(kind, key, request, refused=refused)

    async def external_calls(self, kind: str | None = None) -> list[ExternalCall]:
        """This job's recorded external calls (all attempts), oldest first."""
        return await self._ledger.calls(kind)

    async def calls_in_doubt(self, kind: str | None = None) -> list[ExternalCall]:
        """Intents of earlier attempts that never got an outcome: resolve them before acting."""
        return [
            call
            for call in await self._ledger.calls(kind)
            if call.is_intent and call.run_id != self.run_id
        ]

    async def resolve(
        self, call: ExternalCall, outcome: Mapping[str, Any], *, failed: bool = False
    ) -> bool:
        """Record what this attempt found out about an earlier call in doubt."""
        return await self._ledger.resolve(call, outcome, failed=failed)

    def rate_limit(self, key: str, *, rate: float, burst: float = 1.0) -> RateLimit:
        """The shared limit ``key`` (e.g. ``"emailbison:https://bison.example"``), at most
        ``rate`` grants a second with bursts of ``burst``, shared by every worker process
        and host through PostgreSQL. ``await limit.acquire()`` before each request; report a
        429 with ``await limit.throttled(retry_after)``. Grants use pool connections of
        their own, never this attempt's transaction. See :mod:`orchestrator._rate_limits`.
        """
        return rate_limit(self._ledger.pool, key, rate=rate, burst=burst)

    async def enqueue(self, workflow: str, payload: Mapping[str, Any], **options: Any) -> int:
        """Enqueue a follow-up job inside this attempt's transaction.

        The job exists only if this attempt succeeds (it commits with the success record);
        options are those of :func:`orchestrator.enqueue_workflow`.
        """
        return await self._enqueue(
            workflow, payload, connection=self.connection, enqueued_by=self.job_id, **options
        )

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
