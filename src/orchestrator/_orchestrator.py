"""The composition root: settings, workflows, one pool and the procrastinate ``App``.

:class:`Orchestrator` is the only object that knows both procrastinate and the workflows
(through the registry the plugins fill). Example from application code::

    async with Orchestrator() as orch:
        job_id = await orch.enqueue_workflow("pt1", {"client": "Acme", "month": "2026-03"})
        print((await orch.queue_status()).as_dict())

Code that needs the database outside a job (CLI commands, the demo) uses
:meth:`Orchestrator.transaction`, never the pool.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import procrastinate
import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from orchestrator import _enqueue as enqueue_module
from orchestrator import _job_control as job_control
from orchestrator import _preflight as preflight
from orchestrator import _recovery as recovery
from orchestrator import _status as status
from orchestrator import _tasks as tasks
from orchestrator._changes import ChangeNotifier, quiet_triggers
from orchestrator._database import resolve_database_url
from orchestrator._driver_errors import driver_errors, translated
from orchestrator._errors import DuplicateJob
from orchestrator._job_manager import GuardedJobManager
from orchestrator._plugins import load_registry, plugin_secrets
from orchestrator._pool import AutocommitConnector, CheckedPool
from orchestrator._queries import QUERIES
from orchestrator._rate_limits import RateLimit, RateLimitState, rate_limit, rate_limit_states
from orchestrator._redaction import SecretScrubber
from orchestrator._registry import Registry
from orchestrator._runner import Runner
from orchestrator._schedules import Schedule
from orchestrator._schema import check_schema
from orchestrator._settings import Settings, load_settings, secret_values

Pool = AsyncConnectionPool[psycopg.AsyncConnection[DictRow]]


class Orchestrator:
    """Settings + registry + pool + procrastinate App, opened and closed together."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        registry: Registry | None = None,
        schedules: Sequence[Schedule] | None = None,
        database_url: str | None = None,
        worker: bool = False,
    ) -> None:
        """``worker=True`` tunes the pool for a worker process (see :mod:`orchestrator._pool`).

        Without ``registry``, the workflows and schedules of every plugin are registered.
        """
        self.settings = settings or load_settings()
        self._worker = worker
        if registry is None:
            registry, loaded = load_registry(self.settings.workflow_modules)
            schedules = loaded if schedules is None else schedules
        self.registry = registry
        self.schedules = list(schedules or [])
        self._database_url = database_url
        #: The embedded server's database, found by the orchestrator itself: migrated on use.
        self._embedded = database_url is None and self.settings.database_url is None
        self._runner: Runner | None = None
        #: Set by ``orchestrator worker`` when a shutdown begins: running workflows see it as
        #: ``ctx.stopping`` and stop at their next step.
        self.stopping = False
        self.scrubber = SecretScrubber.from_environment(
            [*secret_values(self.settings), *plugin_secrets(self.settings)]
        )
        if database_url is not None:
            self.scrubber.add([database_url])
        self._connector = AutocommitConnector(
            pool_factory=cast(Callable[..., AsyncConnectionPool[Any]], self._make_pool)
        )
        self.app = procrastinate.App(
            connector=self._connector,
            worker_defaults={
                "fetch_job_polling_interval": self.settings.poll_interval,
                "update_heartbeat_interval": self.settings.heartbeat_interval,
                "stalled_worker_timeout": self.settings.stalled_after,
                "shutdown_graceful_timeout": self.settings.shutdown_timeout,
                "concurrency": self.settings.concurrency,
            },
        )
        #: A worker's changes to runs and job statuses, told to the console (a worker's
        #: connections do not notify from the triggers: see orchestrator._changes).
        self.changes = ChangeNotifier(lambda: self.pool, enabled=worker)
        # A worker's late status update never ends a job that crash recovery moved on.
        self.job_manager = GuardedJobManager(self._connector, on_change=self.changes.changed)
        self.app.job_manager = self.job_manager
        for workflow in self.registry:
            tasks.register_workflow(self, workflow)
        tasks.register_maintenance(self)
        for schedule in self.schedules:
            tasks.register_schedule(self, schedule)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def database_url(self) -> str:
        if self._database_url is None:
            self._database_url = resolve_database_url(self.settings)
            self.scrubber.add([self._database_url])
        return self._database_url

    def _make_pool(self, **kwargs: Any) -> Pool:
        kwargs.pop("conninfo", None)
        kwargs.pop("check", None)  # CheckedPool checks every checkout itself, without backoff
        return CheckedPool(
            conninfo=self.database_url,
            min_size=self.settings.pool_min_size,
            max_size=max(self.settings.pool_max_size, self.settings.concurrency + 4),
            kwargs={"row_factory": dict_row, "connect_timeout": int(self.settings.connect_timeout)},
            timeout=self.settings.connect_timeout * 3,
            name="orchestrator",
            trust_recent=self._worker,
            configure=quiet_triggers if self._worker else None,
            **kwargs,
        )

    async def open(self) -> Orchestrator:
        """Check the database (reachable, schema at this version's revision: the embedded
        server's is migrated on first use), then open the pool."""
        await check_schema(
            self.database_url,
            connect_timeout=self.settings.connect_timeout,
            migrate=self._embedded,
        )
        with driver_errors("cannot open the connection pool"):
            await self.app.open_async()
        return self

    async def close(self) -> None:
        await self.changes.close()
        await self.app.close_async()
        self._runner = None

    async def __aenter__(self) -> Orchestrator:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def pool(self) -> Pool:
        """The shared pool (engine internals only; others use :meth:`transaction`)."""
        pool = cast(Pool, self._connector.pool)
        return pool

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            self._runner = Runner(
                registry=self.registry,
                settings=self.settings,
                pool=self.pool,
                enqueue=self.enqueue_workflow,
                scrubber=self.scrubber,
                stopping=lambda: self.stopping,
                jobs_finished=self.job_manager.finished_by_runner,
                on_change=self.changes.changed,
            )
        return self._runner

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[psycopg.AsyncConnection[DictRow]]:
        """A pooled connection in a transaction: committed when the block ends normally,
        rolled back when it raises. Rows come back as dicts.

        Example::

            async with orch.transaction() as conn:
                await conn.execute("UPDATE clients SET active = false WHERE id = %s", [7])
        """
        with driver_errors():
            async with self.pool.connection() as conn, conn.transaction():
                yield conn

    # -- enqueue ---------------------------------------------------------------------------

    async def enqueue_workflow(
        self,
        name: str,
        payload: Mapping[str, Any],
        *,
        delay: float | datetime.timedelta | None = None,
        schedule_at: datetime.datetime | None = None,
        priority: int | None = None,
        dedupe_key: str | None = None,
        attempts: int | None = None,
        queue: str | None = None,
        connection: psycopg.AsyncConnection[Any] | None = None,
        enqueued_by: int | None = None,
    ) -> int:
        """Enqueue one job and return its id.

        With ``dedupe_key`` set and a job holding that key still waiting or running, nothing
        is inserted and that job's id is returned (:meth:`enqueue_unique` says which case it
        was). With ``connection``, the insert joins that connection's open transaction.
        ``enqueued_by`` is the job doing the enqueue (a chain step): it does not count as a
        holder of the key it passes on.
        """
        request = enqueue_module.JobRequest(
            workflow=name,
            payload=payload,
            delay=delay,
            schedule_at=schedule_at,
            priority=priority,
            dedupe_key=dedupe_key,
            attempts=attempts,
            queue=queue,
        )
        job = enqueue_module.build_job(self.registry, self.settings, request)
        if dedupe_key is not None:
            enqueued = await self._enqueue_unique(job, dedupe_key, connection, enqueued_by)
            return enqueued.job_id
        ids = await enqueue_module.enqueue_jobs(self.app, [job], connection=connection)
        return ids[0]

    async def enqueue_unique(
        self,
        name: str,
        payload: Mapping[str, Any],
        *,
        dedupe_key: str,
        connection: psycopg.AsyncConnection[Any] | None = None,
        enqueued_by: int | None = None,
        **options: Any,
    ) -> enqueue_module.Enqueued:
        """Enqueue one job unless a job holding ``dedupe_key`` is waiting or running.

        Returns what happened (:class:`~orchestrator.Enqueued`): a new job, or the job found
        ``queued`` or ``running``. Concurrent calls with one key are serialised, so two of them
        never both insert. Other options are those of :meth:`enqueue_workflow`. Example::

            result = await orch.enqueue_unique("pt5", payload, dedupe_key="pt5:acme:2026-12-07")
            print(result.describe())      # "already running as job 12 (pt5)"
        """
        request = enqueue_module.JobRequest(
            workflow=name, payload=payload, dedupe_key=dedupe_key, **options
        )
        job = enqueue_module.build_job(self.registry, self.settings, request)
        return await self._enqueue_unique(job, dedupe_key, connection, enqueued_by)

    async def _enqueue_unique(
        self,
        job: Any,
        key: str,
        connection: psycopg.AsyncConnection[Any] | None,
        enqueued_by: int | None,
    ) -> enqueue_module.Enqueued:
        if connection is not None:
            return await self._enqueue_unique_on(connection, job, key, enqueued_by)
        with driver_errors("could not enqueue"):
            async with self.pool.connection() as conn, conn.transaction():
                return await self._enqueue_unique_on(conn, job, key, enqueued_by)

    async def _enqueue_unique_on(
        self,
        conn: psycopg.AsyncConnection[Any],
        job: Any,
        key: str,
        enqueued_by: int | None,
    ) -> enqueue_module.Enqueued:
        cursor = conn.cursor(row_factory=dict_row)
        with driver_errors("could not enqueue"):
            await cursor.execute(QUERIES["lock_dedupe_key"], {"key": key})
            await cursor.execute(
                QUERIES["active_job_by_dedupe_key"], {"key": key, "exclude": enqueued_by}
            )
            row = await cursor.fetchone()
        if row is None:
            try:
                ids = await enqueue_module.enqueue_jobs(self.app, [job], connection=conn)
            except DuplicateJob:
                # Inserted meanwhile by an enqueue that does not take the key's lock
                # (enqueue_many): the waiting job it made is the answer.
                existing = await self._waiting_job_with_key(key, conn)
                if existing is None:
                    raise
                return enqueue_module.Enqueued(existing, False, "queued", job.task_name)
            return enqueue_module.Enqueued(ids[0], True, "queued", job.task_name)
        state = "running" if row["status"] == "doing" else "queued"
        return enqueue_module.Enqueued(int(row["id"]), False, state, str(row["task_name"]))

    async def enqueue_many(
        self,
        requests: Sequence[enqueue_module.JobRequest],
        *,
        connection: psycopg.AsyncConnection[Any] | None = None,
    ) -> list[int]:
        """Validate every request, then insert them all in one round trip (all or nothing)."""
        jobs = [enqueue_module.build_job(self.registry, self.settings, r) for r in requests]
        return await enqueue_module.enqueue_jobs(self.app, jobs, connection=connection)

    async def check(self, name: str, payload: Mapping[str, Any]) -> list[str]:
        """Run the workflow's enqueue-time check on ``payload`` (see
        :mod:`orchestrator._preflight`): warnings to show, or :class:`InvalidPayload`."""
        workflow = self.registry.get(name)
        if workflow.check is None:
            workflow.parse(payload)
            return []
        async with self.transaction() as conn:
            return await preflight.run_check(workflow, payload, conn, self.settings)

    async def submit(
        self,
        name: str,
        payload: Mapping[str, Any],
        *,
        dedupe_key: str | None = None,
        **options: Any,
    ) -> preflight.Submission:
        """Enqueue as a person would: run the workflow's check (warnings come back, a refusal
        raises :class:`InvalidPayload`), and with ``dedupe_key`` add nothing when a job holding
        it is already waiting or *running*. ``options`` are :meth:`enqueue_workflow`'s."""
        return await preflight.submit(self, name, payload, dedupe_key=dedupe_key, **options)

    @translated("could not look up the waiting job")
    async def _waiting_job_with_key(
        self, key: str | None, connection: psycopg.AsyncConnection[Any] | None
    ) -> int | None:
        if key is None:
            return None
        if connection is not None:
            cursor = connection.cursor(row_factory=dict_row)
            await cursor.execute(QUERIES["waiting_job_by_dedupe_key"], {"key": key})
            row = await cursor.fetchone()
        else:
            async with self.pool.connection() as conn:
                cur = await conn.execute(QUERIES["waiting_job_by_dedupe_key"], {"key": key})
                row = await cur.fetchone()
        return None if row is None else int(row["id"])

    # -- status and control ----------------------------------------------------------------

    @translated("could not read the queue status")
    async def queue_status(self) -> status.QueueStatus:
        async with self.pool.connection() as conn:
            return await status.queue_status(conn, self.registry.names())

    @translated("could not read the shared rate limits")
    async def rate_limits(self) -> list[RateLimitState]:
        """Every shared rate limit's state now (``orchestrator status``, the console)."""
        async with self.pool.connection() as conn:
            return await rate_limit_states(conn)

    def rate_limit(self, key: str, *, rate: float, burst: float = 1.0) -> RateLimit:
        """This process's handle on the shared limit ``key`` (outside a workflow: scripts,
        benchmarks); a workflow uses ``ctx.rate_limit``."""
        return rate_limit(self.pool, key, rate=rate, burst=burst)

    @translated("could not read the runs")
    async def list_runs(self, **filters: Any) -> list[dict[str, Any]]:
        if filters.get("workflow"):
            filters["workflow"] = self.registry.get(filters["workflow"]).name
        return await job_control.list_runs(self.pool, **filters)

    @translated("could not read the job")
    async def get_job(self, job_id: int) -> dict[str, Any]:
        return await job_control.get_job(self.pool, job_id)

    @translated("could not read the job's external calls")
    async def external_calls(self, job_id: int) -> list[dict[str, Any]]:
        """The job's recorded external calls (intent, then outcome), oldest first; an intent
        whose attempt is over without an outcome is ``in_doubt``."""
        return await job_control.job_external_calls(self.pool, job_id)

    @translated("could not retry the job")
    async def retry_job(self, job_id: int) -> None:
        """Send a failed or cancelled job back to the queue with a fresh attempt budget."""
        await job_control.retry_job(self.pool, job_id)

    @translated("could not retry the jobs")
    async def retry_jobs(
        self, workflow: str, *, state: str = "failed", since: datetime.datetime | None = None
    ) -> job_control.BulkRetry:
        """Send every failed (or cancelled) job of a workflow back to the queue; ``since``
        keeps those whose last attempt finished then or later."""
        name = self.registry.get(workflow).name
        return await job_control.retry_jobs(self.pool, name, state, since)

    @translated("could not look up the dedupe key")
    async def unfinished_job(self, dedupe_key: str) -> dict[str, Any] | None:
        """``{job_id, state}`` of the waiting, delayed or running (``active``) job holding
        ``dedupe_key``, or ``None``: what a second enqueue with that key would run into."""
        return await job_control.unfinished_job_with_key(self.pool, dedupe_key)

    @translated("could not cancel the job")
    async def cancel_job(self, job_id: int) -> str:
        """Cancel a waiting job, or ask a running one to abort. Returns what happened."""
        return await job_control.cancel_job(self.pool, self.app.job_manager, job_id)

    @translated("could not re-queue the jobs cut off from the database")
    async def requeue_cut_off(self) -> list[int]:
        """Re-queue the jobs whose attempts this process could not record (database lost)."""
        requeued = await recovery.requeue_cut_off(self.pool, self.runner.cut_off)
        if requeued:
            self.changes.changed()
        return requeued

    @translated("recovery sweep failed")
    async def recover(self) -> recovery.RecoveryReport:
        if self._runner is not None and self._runner.cut_off:
            # This process's own attempts cut off from the database: re-queued at once.
            await recovery.requeue_cut_off(self.pool, self._runner.cut_off)
            self.changes.changed()
        report = await recovery.recover(
            self.pool,
            self.app.job_manager,
            stalled_after=self.settings.stalled_after,
            reconcile_after=self.settings.reconcile_after,
        )
        if report.requeued or report.finished or report.failed or report.reconciled:
            self.changes.changed()
        return report
