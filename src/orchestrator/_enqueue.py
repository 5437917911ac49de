"""Putting workflow jobs in the queue: validated first, inserted in one round trip.

A payload is checked against the workflow's input model before anything is written, so an
unknown name or a bad field is refused with the reason and nothing is inserted. With
``connection=`` the job is inserted inside the caller's open transaction (NOTIFY fires at
commit; a rollback leaves no job). ``dedupe_key`` maps to procrastinate's queueing lock: at
most one waiting job per key; :meth:`~orchestrator.Orchestrator.enqueue_workflow` also
returns a *running* job holding the key instead of adding a second one (see
:class:`Enqueued`). A workflow's ``lock`` becomes procrastinate's job lock.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from procrastinate import App
from procrastinate.jobs import Job
from psycopg.pq import TransactionStatus

from orchestrator._driver_errors import driver_errors
from orchestrator._errors import DuplicateJob, InvalidPayload
from orchestrator._registry import Registry
from orchestrator._settings import Settings

MAX_PRIORITY = 1_000_000
#: Nesting limit of job arguments, also enforced by a CHECK constraint on procrastinate_jobs.
MAX_DEPTH = 32


@dataclass(frozen=True)
class JobRequest:
    """One job for :func:`enqueue_many`."""

    workflow: str
    payload: Mapping[str, Any]
    delay: float | datetime.timedelta | None = None
    schedule_at: datetime.datetime | None = None
    priority: int | None = None
    dedupe_key: str | None = None
    attempts: int | None = None
    queue: str | None = None


@dataclass(frozen=True)
class Enqueued:
    """What an enqueue with a dedupe key did: ``created`` a job, or found one ``queued``
    (waiting or delayed) or ``running`` under the same key."""

    job_id: int
    created: bool
    state: str
    workflow: str

    def describe(self) -> str:
        """``job 12 enqueued``, ``already queued as job 12``, ``already running as job 12``."""
        if self.created:
            return f"job {self.job_id} enqueued"
        return f"already {self.state} as job {self.job_id} ({self.workflow})"


def build_job(registry: Registry, settings: Settings, request: JobRequest) -> Job:
    """Validate one request and turn it into a procrastinate job (nothing written)."""
    workflow = registry.get(request.workflow)
    if _too_deep(request.payload, MAX_DEPTH - 2):  # job args wrap the payload in one level
        raise InvalidPayload(
            f"payload for workflow {workflow.name!r} nests deeper than {MAX_DEPTH - 2} levels"
        )
    data = workflow.parse(request.payload)
    payload = data.model_dump(mode="json", exclude_unset=True, by_alias=True)
    text = json.dumps(payload)
    size = len(text)
    if size > settings.max_payload_bytes:
        raise InvalidPayload(
            f"payload for workflow {workflow.name!r} is {size} bytes; the limit is "
            f"{settings.max_payload_bytes} (ORCHESTRATOR_MAX_PAYLOAD_BYTES)"
        )
    if "\\u0000" in text and _has_nul(payload):
        raise InvalidPayload(
            f"payload for workflow {workflow.name!r} contains a NUL character (\\u0000), "
            "which PostgreSQL cannot store"
        )
    if request.delay is not None and request.schedule_at is not None:
        raise InvalidPayload("give either delay or schedule_at, not both")
    scheduled_at = request.schedule_at
    if scheduled_at is not None and scheduled_at.utcoffset() is None:
        raise InvalidPayload("schedule_at must be timezone-aware (e.g. 2026-01-15T09:00:00Z)")
    if request.delay is not None:
        delay = (
            request.delay
            if isinstance(request.delay, datetime.timedelta)
            else datetime.timedelta(seconds=float(request.delay))
        )
        if delay < datetime.timedelta(0):
            raise InvalidPayload(f"delay must not be negative, got {delay}")
        scheduled_at = datetime.datetime.now(datetime.UTC) + delay
    priority = 0 if request.priority is None else int(request.priority)
    if abs(priority) > MAX_PRIORITY:
        raise InvalidPayload(f"priority must be between -{MAX_PRIORITY} and {MAX_PRIORITY}")
    if request.attempts is not None and not 1 <= request.attempts <= 100:
        raise InvalidPayload(f"attempts must be between 1 and 100, got {request.attempts}")
    if request.dedupe_key is not None and not 0 < len(request.dedupe_key) <= 500:
        raise InvalidPayload("dedupe_key must be 1 to 500 characters")
    args: dict[str, Any] = {"payload": payload}
    if request.attempts is not None:
        args["attempts"] = request.attempts
    return Job(
        id=None,
        queue=request.queue or workflow.queue,
        lock=workflow.lock_key(data),
        queueing_lock=request.dedupe_key,
        task_name=workflow.name,
        task_kwargs=args,
        scheduled_at=scheduled_at,
        priority=priority,
    )


def _too_deep(value: Any, limit: int) -> bool:
    """Whether a JSON-like value nests containers deeper than ``limit`` (no recursion)."""
    level = [value]
    depth = 0
    while level:
        level = [
            child
            for parent in level
            for child in (
                parent.values()
                if isinstance(parent, dict)
                else parent
                if isinstance(parent, list)
                else ()
            )
            if isinstance(child, dict | list)
        ]
        if isinstance(value, dict | list) and depth == 0:
            depth = 1
        if level:
            depth += 1
        if depth > limit:
            return True
    return False


def _has_nul(value: Any) -> bool:
    """Whether a JSON-like value holds U+0000 in any string (PostgreSQL's jsonb refuses it)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


async def enqueue_jobs(
    app: App,
    jobs: Sequence[Job],
    *,
    connection: psycopg.AsyncConnection[Any] | None = None,
) -> list[int]:
    """Insert validated jobs in one statement, all or nothing; return their ids."""
    if not jobs:
        return []
    try:
        return await _insert(app, jobs, connection)
    except DuplicateJob:
        keys = [j.queueing_lock for j in jobs if j.queueing_lock]
        raise DuplicateJob(
            f"a waiting job already holds dedupe key {keys[0] if len(keys) == 1 else keys}"
        ) from None


async def _insert(
    app: App, jobs: Sequence[Job], connection: psycopg.AsyncConnection[Any] | None
) -> list[int]:
    with driver_errors("could not enqueue"):
        if (
            connection is not None
            and not connection.autocommit
            and connection.info.transaction_status == TransactionStatus.IDLE
        ):
            # Nothing ran on this connection yet: open the caller's implicit transaction now,
            # or ``transaction()`` below would start one of its own and commit it at once.
            await connection.execute("SELECT 1")
        if (
            connection is not None
            and connection.info.transaction_status == TransactionStatus.INTRANS
        ):
            # A savepoint keeps a refused insert from aborting the caller's transaction.
            async with connection.transaction():
                deferred = await app.job_manager.batch_defer_jobs_async(
                    list(jobs), connection=connection
                )
        else:
            deferred = await app.job_manager.batch_defer_jobs_async(
                list(jobs), connection=connection
            )
    return [int(job.id) for job in deferred if job.id is not None]
