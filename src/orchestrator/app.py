"""The composition root: the only module that knows both procrastinate and the workflows.

:class:`Orchestrator` wires settings, the workflow registry, one psycopg pool (shared by
procrastinate and the workflows' writes) and the procrastinate ``App``. Each workflow becomes
one procrastinate task named after it, whose body is the :class:`~orchestrator.runner.Runner`.

``orchestrator.procrastinate_app.app`` exposes the same App to ``procrastinate --app=...``.
Example from application code::

    async with Orchestrator() as orch:
        job_id = await orch.enqueue_workflow("pt1", {"client": "Acme", "month": "2026-03"})
        print((await orch.queue_status()).as_dict())
"""

from __future__ import annotations

import datetime
import functools
import importlib
import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import procrastinate
import psycopg
from procrastinate import exceptions as pexc
from procrastinate.job_context import JobContext
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from orchestrator import enqueue as enqueue_module
from orchestrator import pruning, recovery, status
from orchestrator.database import check_connection, resolve_database_url
from orchestrator.errors import (
    ConfigurationError,
    DatabaseUnavailable,
    DuplicateJob,
    JobNotFound,
    OrchestratorError,
)
from orchestrator.pool import CheckedPool
from orchestrator.queries import QUERIES
from orchestrator.redaction import SecretScrubber
from orchestrator.registry import Registry, Workflow
from orchestrator.retry import DecidedRetryStrategy
from orchestrator.runner import Cancelled, Runner
from orchestrator.schedules import Schedule, ScheduleContext
from orchestrator.settings import Settings, load_settings

logger = logging.getLogger("orchestrator")

MAINTENANCE_QUEUE = "orchestrator"
Pool = AsyncConnectionPool[psycopg.AsyncConnection[DictRow]]


def load_registry(settings: Settings) -> tuple[Registry, list[Schedule]]:
    """The PT1-PT5 workflows and schedules, plus those of ``ORCHESTRATOR_WORKFLOW_MODULES``."""
    registry = Registry()
    schedules: list[Schedule] = []
    for module_name in ["workflows.catalog", *settings.extra_workflow_modules()]:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigurationError(
                f"invalid setting ORCHESTRATOR_WORKFLOW_MODULES: cannot import {module_name!r}: "
                f"{exc}"
            ) from None
        workflows: Sequence[Workflow[Any]] = getattr(module, "WORKFLOWS", ())
        for workflow in workflows:
            registry.register(workflow)
        schedules.extend(getattr(module, "SCHEDULES", ()))
    return registry, schedules


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
        """``worker=True`` tunes the pool for a worker process (see :mod:`orchestrator.pool`)."""
        self.settings = settings or load_settings()
        self._worker = worker
        if registry is None:
            registry, loaded = load_registry(self.settings)
            schedules = loaded if schedules is None else schedules
        self.registry = registry
        self.schedules = list(schedules or [])
        self._database_url = database_url
        self._runner: Runner | None = None
        self.scrubber = SecretScrubber.from_environment(
            [
                self.settings.database_url,
                self.settings.slack_webhook_url,
                self.settings.debounce_api_key,
                self.settings.clay_webhook_url,
                self.settings.clay_webhook_auth,
            ]
        )
        if database_url is not None:
            self.scrubber.add([database_url])
        self._connector = procrastinate.PsycopgConnector(
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
        for workflow in self.registry:
            self._register_workflow(workflow)
        self._register_maintenance()
        for schedule in self.schedules:
            self._register_schedule(schedule)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def database_url(self) -> str:
        if self._database_url is None:
            self._database_url = resolve_database_url(self.settings)
            # The embedded server's URL carries a generated password the settings never saw.
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
            **kwargs,
        )

    async def open(self) -> Orchestrator:
        await check_connection(self.database_url, self.settings.connect_timeout)
        try:
            await self.app.open_async()
        except pexc.ConnectorException as exc:
            raise DatabaseUnavailable(
                self.scrubber(f"cannot open the connection pool: {exc}")
            ) from None
        return self

    async def close(self) -> None:
        await self.app.close_async()
        self._runner = None

    async def __aenter__(self) -> Orchestrator:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def pool(self) -> Pool:
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
            )
        return self._runner

    @asynccontextmanager
    async def connection(self) -> Any:
        async with self.pool.connection() as conn:
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
    ) -> int:
        """Enqueue one job and return its id.

        With ``dedupe_key`` set and a job holding that key still waiting, nothing is inserted
        and the waiting job's id is returned. With ``connection``, the insert joins that
        connection's open transaction.
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
        try:
            ids = await enqueue_module.enqueue_jobs(self.app, [job], connection=connection)
        except DuplicateJob:
            existing = await self._waiting_job_with_key(dedupe_key, connection)
            if existing is None:
                raise
            return existing
        return ids[0]

    async def enqueue_many(
        self,
        requests: Sequence[enqueue_module.JobRequest],
        *,
        connection: psycopg.AsyncConnection[Any] | None = None,
    ) -> list[int]:
        """Validate every request, then insert them all in one round trip (all or nothing)."""
        jobs = [enqueue_module.build_job(self.registry, self.settings, r) for r in requests]
        return await enqueue_module.enqueue_jobs(self.app, jobs, connection=connection)

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

    async def queue_status(self) -> status.QueueStatus:
        async with self.pool.connection() as conn:
            return await status.queue_status(conn, self.registry.names())

    async def list_runs(self, **filters: Any) -> list[dict[str, Any]]:
        if filters.get("workflow"):
            filters["workflow"] = self.registry.get(filters["workflow"]).name
        async with self.pool.connection() as conn:
            return await status.list_runs(conn, **filters)

    async def get_job(self, job_id: int) -> dict[str, Any]:
        async with self.pool.connection() as conn:
            job = await status.get_job(conn, job_id)
        if job is None:
            raise JobNotFound(f"no workflow job with id {job_id}")
        return job

    async def retry_job(self, job_id: int) -> None:
        """Send a failed or cancelled job back to the queue with a fresh attempt budget."""
        job = await self.get_job(job_id)
        if job["state"] not in ("failed", "cancelled"):
            raise OrchestratorError(
                f"job {job_id} is {job['state']}; only failed or cancelled jobs can be retried"
            )
        async with self.pool.connection() as conn:
            try:
                cursor = await conn.execute(QUERIES["retry_failed_job"], {"job_id": job_id})
            except psycopg.errors.UniqueViolation:
                raise DuplicateJob(
                    f"job {job_id} not retried: another waiting job holds its dedupe key "
                    f"{job['dedupe_key']!r}"
                ) from None
            if await cursor.fetchone() is None:
                raise OrchestratorError(f"job {job_id} changed state; not retried")

    async def cancel_job(self, job_id: int) -> str:
        """Cancel a waiting job, or ask a running one to abort. Returns what happened."""
        job = await self.get_job(job_id)
        if job["state"] in ("completed", "failed", "cancelled"):
            raise OrchestratorError(f"job {job_id} is already {job['state']}")
        done = await self.app.job_manager.cancel_job_by_id_async(job_id, abort=True)
        if not done:
            raise OrchestratorError(f"job {job_id} could not be cancelled (it just finished?)")
        return "abort requested" if job["state"] == "active" else "cancelled"

    async def recover(self) -> recovery.RecoveryReport:
        return await recovery.recover(
            self.pool,
            self.app.job_manager,
            stalled_after=self.settings.stalled_after,
            reconcile_after=self.settings.reconcile_after,
        )

    # -- procrastinate tasks ---------------------------------------------------------------

    def _register_workflow(self, workflow: Workflow[Any]) -> None:
        orchestrator = self

        async def run_workflow(
            context: JobContext, payload: dict[str, Any], attempts: int | None = None
        ) -> None:
            job = context.job
            assert job.id is not None

            def abort_reason() -> str | None:
                reason = context.abort_reason()
                return None if reason is None else str(reason.value)

            try:
                await orchestrator.runner.run(
                    workflow_name=workflow.name,
                    payload=payload,
                    job_id=job.id,
                    attempt=job.attempts + 1,
                    queue=job.queue,
                    worker_id=job.worker_id,
                    attempts_override=attempts,
                    abort_reason=abort_reason,
                )
            except Cancelled as exc:
                raise pexc.JobAborted(str(exc)) from exc

        run_workflow.__name__ = f"run_{workflow.name}"
        self.app.task(
            name=workflow.name,
            queue=workflow.queue,
            pass_context=True,
            retry=DecidedRetryStrategy(),
        )(run_workflow)

    def _register_maintenance(self) -> None:
        orchestrator = self
        interval = self.settings.recovery_interval

        async def recover_stalled_jobs(timestamp: int) -> None:
            await orchestrator.recover()

        async def prune_finished_jobs(timestamp: int) -> None:
            await pruning.prune_finished_jobs(
                orchestrator.pool, retention_days=orchestrator.settings.retention_days
            )

        recover_task = self.app.task(
            name="orchestrator.recover", queue=MAINTENANCE_QUEUE, pass_context=False
        )(recover_stalled_jobs)
        # Above every workflow job: a sweep queued behind a backlog would leave stalled and
        # unreconciled jobs waiting for the whole backlog.
        self.app.periodic(
            cron=f"* * * * * */{interval}",
            periodic_id="recover",
            priority=enqueue_module.MAX_PRIORITY + 1,
        )(recover_task)
        prune_task = self.app.task(
            name="orchestrator.prune", queue=MAINTENANCE_QUEUE, pass_context=False
        )(prune_finished_jobs)
        self.app.periodic(cron="17 * * * *", periodic_id="prune")(prune_task)

    def _register_schedule(self, schedule: Schedule) -> None:
        orchestrator = self

        async def fire(timestamp: int) -> None:
            fired_at = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
            async with orchestrator.pool.connection() as conn:
                ctx = ScheduleContext(
                    connection=conn,
                    settings=orchestrator.settings,
                    enqueue=functools.partial(orchestrator.enqueue_workflow, connection=conn),
                )
                await schedule.handler(ctx, fired_at)
                await conn.commit()

        task = self.app.task(name=f"orchestrator.schedule.{schedule.id}", queue=MAINTENANCE_QUEUE)(
            fire
        )
        self.app.periodic(cron=schedule.cron, periodic_id=schedule.id)(task)
