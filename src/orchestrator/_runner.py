"""Runs one attempt of a workflow job and keeps its ``agent_runs`` record.

The sequence for every attempt:

1. ``start_attempt`` (own transaction, committed at once so a ``running`` row is visible):
   stops here if the job already has a ``succeeded`` row — a re-run after a crash that came
   between our commit and procrastinate's status update — and marks attempts a dead worker
   left ``running`` as ``abandoned``. It runs in autocommit mode, one round trip instead of
   BEGIN, statement and COMMIT.
2. The workflow runs on the same pooled connection (one checkout, one connection check per
   attempt) inside a transaction; its success record and the job's end (procrastinate's
   ``succeeded``) are written in that same transaction by one statement, so effects, record
   and job status commit together or not at all. A workflow that wrote nothing on its
   connection (no transaction open) has its success sent in autocommit mode: one round trip.
   procrastinate's own status update for that job is then skipped
   (:class:`~orchestrator._job_manager.GuardedJobManager`).
3. On failure the transaction is rolled back and the attempt recorded as ``retrying``,
   ``failed`` or ``cancelled``; the retry decision travels to procrastinate in
   :class:`~orchestrator._retry.AttemptFailed`.

The ``running`` row is the attempt's lease (:mod:`orchestrator._lease`): the success record
and the failure record are written only while the row is still ``running``. An attempt crash
recovery fenced meanwhile writes neither; it notes ``Fenced`` on its abandoned row and leaves
the job to the attempt that holds it now. An attempt whose outcome could not be recorded at
all (the database went away) is remembered in :attr:`Runner.cut_off`, so that its worker
re-queues the job as soon as the database answers again (see ``orchestrator._recovery``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, LiteralString, NoReturn

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from pydantic import BaseModel

from orchestrator._context import EnqueueInTransaction, WorkflowContext
from orchestrator._driver_errors import constraint_name, is_connection_lost, reason
from orchestrator._errors import (
    DatabaseUnavailable,
    FencedAttempt,
    InvalidPayload,
    OrchestratorError,
    WorkflowError,
)
from orchestrator._external_calls import CallLedger
from orchestrator._lease import Lease
from orchestrator._pool import autocommit
from orchestrator._progress import ProgressReporter
from orchestrator._queries import QUERIES
from orchestrator._redaction import SecretScrubber, redact_payload
from orchestrator._registry import Registry, Workflow
from orchestrator._retry import (
    ONE_SUCCESS_CONSTRAINT,
    AttemptFailed,
    Cancelled,
    ConnectionLost,
    RetryPolicy,
    ShutdownAbort,
    decide,
    effective_policy,
)
from orchestrator._settings import Settings

logger = logging.getLogger("orchestrator.runs")

MAX_TRACEBACK_CHARS = 8_000


@dataclass(frozen=True)
class AttemptOutcome:
    status: str
    output: Any = None


@dataclass(frozen=True)
class CutOff:
    """An attempt that ended without its outcome recorded: the database was out of reach.

    ``attempts`` is the job's procrastinate attempt count when it was fetched: the job is
    re-queued only if it is still that fetch (``doing`` with that count).
    """

    run_id: int
    job_id: int
    attempts: int


def worker_label(worker_id: int | None) -> str:
    return f"{socket.gethostname()}:{os.getpid()}" + (f"#{worker_id}" if worker_id else "")


class Runner:
    """Executes attempts for the workflows of one registry against one pool."""

    def __init__(
        self,
        *,
        registry: Registry,
        settings: Settings,
        pool: AsyncConnectionPool[psycopg.AsyncConnection[DictRow]],
        enqueue: EnqueueInTransaction,
        scrubber: SecretScrubber,
        stopping: Callable[[], bool] = lambda: False,
        jobs_finished: set[tuple[int, int]] | None = None,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.pool = pool
        self.enqueue = enqueue
        self.scrub = scrubber
        self.stopping = stopping
        #: Attempts cut off from the database before their outcome was recorded.
        self.cut_off: list[CutOff] = []
        #: ``(job id, attempts when fetched)`` of jobs whose success statement also ended the
        #: job: the job manager skips procrastinate's update for them.
        self.jobs_finished = set() if jobs_finished is None else jobs_finished
        #: Called after an attempt's row changed (see orchestrator._changes).
        self.on_change = on_change

    async def run(
        self,
        *,
        workflow_name: str,
        payload: Mapping[str, Any],
        job_id: int,
        attempt: int,
        queue: str,
        worker_id: int | None,
        attempts_override: int | None = None,
        abort_reason: Callable[[], str | None] = lambda: None,
        args_problem: str | None = None,
    ) -> AttemptOutcome:
        """Run one attempt; raise :class:`AttemptFailed` (with the decision) when it fails."""
        workflow = self.registry.get(workflow_name)
        policy = effective_policy(workflow.retry, self.settings, attempts_override)
        started = time.monotonic()
        log_fields: dict[str, Any] = {
            "workflow": workflow.name,
            "job_id": job_id,
            "attempt": attempt,
        }

        failure: BaseException | None = None
        async with self.pool.connection() as conn:
            row = await _start_attempt(
                conn,
                {
                    "job_id": job_id,
                    "workflow": workflow.name,
                    "attempt": attempt,
                    "input": Jsonb(redact_payload(payload, workflow.secret_fields)),
                    "worker": worker_label(worker_id),
                    "queue": queue,
                    "worker_id": worker_id,
                },
            )
            self.on_change()
            if row["succeeded_run_id"] is not None:
                logger.info(
                    "workflow %s job %s already succeeded (run %s); not running it again",
                    workflow.name,
                    job_id,
                    row["succeeded_run_id"],
                    extra={"event": "workflow.already_completed", **log_fields},
                )
                return AttemptOutcome(status="already_succeeded")
            run_id: int = row["run_id"]
            failures_before: int = row["failures"]
            losses_before: int = row["connection_losses"]
            log_fields["run_id"] = run_id
            try:
                if args_problem is not None:
                    raise InvalidPayload(f"job {job_id} cannot run: {args_problem}")
                data = workflow.parse(payload)
                output = await self._run_in_transaction(
                    conn, workflow, data, run_id, job_id, attempt, policy.attempts
                )
            except BaseException as exc:
                failure = exc
        # The failure is recorded on another connection, once this one is back in the pool.
        if failure is not None:
            duration = time.monotonic() - started
            if isinstance(failure, asyncio.CancelledError) and abort_reason() == "shutdown":
                failure = ShutdownAbort("the worker shut down before the attempt finished")
            elif _lost_connection(failure):
                lost = ConnectionLost(
                    f"the attempt lost its database connection ({reason(failure)})"
                )
                lost.__cause__ = failure
                failure = lost
            try:
                await asyncio.shield(
                    self._record_failure(
                        failure,
                        run_id,
                        (failures_before, losses_before),
                        policy,
                        log_fields,
                        duration,
                    )
                )
            except (psycopg.Error, PoolTimeout):
                self.cut_off.append(CutOff(run_id=run_id, job_id=job_id, attempts=attempt - 1))
                raise
        duration = time.monotonic() - started
        logger.info(
            "workflow %s job %s attempt %s succeeded in %.3f s",
            workflow.name,
            job_id,
            attempt,
            duration,
            extra={"event": "workflow.completed", "duration_s": round(duration, 6), **log_fields},
        )
        return AttemptOutcome(status="succeeded", output=output)

    async def _run_in_transaction(
        self,
        conn: psycopg.AsyncConnection[DictRow],
        workflow: Workflow[Any],
        data: BaseModel,
        run_id: int,
        job_id: int,
        attempt: int,
        max_attempts: int,
    ) -> Any:
        lease = Lease(
            self.pool, run_id, stalled_after=self.settings.stalled_after, on_hold=self.on_change
        )
        ctx = WorkflowContext(
            connection=conn,
            run_id=run_id,
            job_id=job_id,
            workflow=workflow.name,
            attempt=attempt,
            max_attempts=max_attempts,
            settings=self.settings,
            logger=logging.LoggerAdapter(
                logging.getLogger(f"orchestrator.workflow.{workflow.name}"),
                {"workflow": workflow.name, "job_id": job_id, "run_id": run_id},
            ),
            _enqueue=self.enqueue,
            _progress=ProgressReporter(self.pool, run_id, on_write=self.on_change),
            _lease=lease,
            _ledger=CallLedger(self.pool, lease, job_id=job_id, run_id=run_id),
            _stopping=self.stopping,
        )
        try:
            result = await workflow.run(ctx, data)
            output = _jsonable(result)
            params = {
                "run_id": run_id,
                "output": Jsonb(output),
                "job_id": job_id,
                "attempts": attempt - 1,  # procrastinate's count when the job was fetched
            }
            if conn.info.transaction_status == TransactionStatus.IDLE:
                # Nothing written on the job's connection: the statement is the transaction.
                async with autocommit(conn):
                    row = await _fetch_one(conn, QUERIES["finish_success"], params)
            else:
                row = await _fetch_one(conn, QUERIES["finish_success"], params)
            if row is None or row["run_id"] is None:
                raise lease.fence("crash recovery re-queued the job before its success")
            await conn.commit()  # nothing to commit after an autocommit statement
            if row["job_finished"]:
                self.jobs_finished.add((job_id, attempt - 1))
            self.on_change()
            return output
        except BaseException:
            await _rollback_quietly(conn)
            raise

    async def _record_failure(
        self,
        exc: BaseException,
        run_id: int,
        before: tuple[int, int],
        policy: RetryPolicy,
        log_fields: dict[str, Any],
        duration: float,
    ) -> NoReturn:
        cause = exc
        verdict = decide(exc, before[0], policy, losses_before=before[1])
        status, retry_in = verdict.status.value, verdict.retry_in
        message = self.scrub(str(exc) or type(exc).__name__)
        error: dict[str, Any] = {
            "type": type(cause).__name__,
            "message": message,
            "traceback": self.scrub(
                "".join(traceback.format_exception(cause))[-MAX_TRACEBACK_CHARS:]
            ),
        }
        if retry_in is not None:
            error["retry_in_s"] = retry_in
        try:
            async with self.pool.connection() as conn:
                cursor = await conn.execute(
                    QUERIES["finish_failure"],
                    {"run_id": run_id, "status": status, "error": Jsonb(error)},
                )
                recorded = await cursor.fetchone() is not None
                if not recorded:
                    await conn.execute(
                        QUERIES["record_fenced"],
                        {"run_id": run_id, "message": self.scrub(_fenced_message(exc))},
                    )
            self.on_change()
        except (psycopg.Error, PoolTimeout):
            logger.exception(
                "could not record the outcome of run %s", run_id, extra={"event": "record_failed"}
            )
            raise
        if not recorded:
            # Fenced: crash recovery gave the job to another attempt, which owns its status
            # now. procrastinate's update from this worker is skipped (GuardedJobManager); a
            # retry at once is the harmless verdict should it still apply.
            logger.warning(
                "workflow %s job %s attempt %s was fenced (superseded) after %.3f s: %s: %s",
                log_fields["workflow"],
                log_fields["job_id"],
                log_fields["attempt"],
                duration,
                error["type"],
                message,
                extra={
                    "event": "workflow.fenced",
                    "duration_s": round(duration, 6),
                    "error_type": error["type"],
                    "error_message": message,
                    **log_fields,
                },
            )
            raise AttemptFailed(exc, retry_in=0.0) from exc
        level = logging.ERROR if status == "failed" else logging.WARNING
        logger.log(
            level,
            "workflow %s job %s attempt %s %s",
            log_fields["workflow"],
            log_fields["job_id"],
            log_fields["attempt"],
            failure_summary(status, duration, error["type"], message, retry_in),
            # The traceback (also kept in agent_runs) only for a surprise, never for an
            # expected failure such as a PermanentError or RetryableError.
            exc_info=None if _expected(exc) else exc,
            extra={
                "event": f"workflow.{status}",
                "duration_s": round(duration, 6),
                "error_type": error["type"],
                "error_message": message,
                "retry_in_s": retry_in,
                **log_fields,
            },
        )
        if status == "cancelled":
            raise Cancelled(message) from exc
        raise AttemptFailed(exc, retry_in=retry_in) from exc


def failure_summary(
    status: str, duration: float, error_type: str, message: str, retry_in: float | None
) -> str:
    """How a failed attempt reads in the log: what happened, how long it ran, what is next.

    >>> failure_summary("retrying", 0.0123, "RetryableError", "HTTP 503", 10.0)
    'failed after running 0.012 s: RetryableError: HTTP 503; retry in 10 s'
    >>> failure_summary("failed", 1.5, "PermanentError", "bad key", None)
    'failed after running 1.500 s: PermanentError: bad key; no retry'
    """
    verb = "failed" if status in ("retrying", "failed") else status  # cancelled, abandoned
    text = f"{verb} after running {duration:.3f} s: {error_type}: {message}"
    if status == "retrying" and retry_in is not None:
        return f"{text}; retry in {retry_in:g} s"
    if status == "failed":
        return f"{text}; no retry"
    return text


def _expected(exc: BaseException) -> bool:
    """Failures the workflow or the operator meant; anything else is a surprise (a bug)."""
    return (
        isinstance(
            exc,
            WorkflowError
            | InvalidPayload
            | Cancelled
            | asyncio.CancelledError
            | FencedAttempt
            | DatabaseUnavailable,
        )
        or constraint_name(exc) == ONE_SUCCESS_CONSTRAINT
    )


def _lost_connection(exc: BaseException) -> bool:
    """Whether the attempt failed because the database went out of reach (not a bad query)."""
    if isinstance(exc, DatabaseUnavailable):
        return True
    if isinstance(exc, OrchestratorError):
        return False
    return any(is_connection_lost(error) for error in (exc, exc.__cause__) if error is not None)


def _fenced_message(exc: BaseException) -> str:
    if isinstance(exc, FencedAttempt):
        return str(exc)
    return (
        "attempt fenced: crash recovery re-queued the job while it ran (its worker was "
        f"silent); it stopped on {type(exc).__name__}: {exc}"
    )


async def _start_attempt(conn: psycopg.AsyncConnection[DictRow], params: dict[str, Any]) -> DictRow:
    """Run ``start_attempt`` as its own transaction, committed by the server in the same
    round trip (autocommit), and leave the connection ready for the job's transaction."""
    async with autocommit(conn):
        row = await _fetch_one(conn, QUERIES["start_attempt"], params)
    assert row is not None
    return row


async def _fetch_one(
    conn: psycopg.AsyncConnection[DictRow], query: LiteralString, params: dict[str, Any]
) -> DictRow | None:
    cursor = await conn.execute(query, params)
    return await cursor.fetchone()


async def _rollback_quietly(conn: psycopg.AsyncConnection[DictRow]) -> None:
    try:
        await asyncio.shield(conn.rollback())
    except (psycopg.Error, asyncio.CancelledError):
        # A connection that cannot roll back is broken; closing it makes the pool drop it.
        await conn.close()


def _jsonable(result: Any) -> Any:
    if result is None:
        return None
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json")
    return json.loads(json.dumps(result, default=str))
