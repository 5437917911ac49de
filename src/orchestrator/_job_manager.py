"""procrastinate's JobManager, with a worker's status updates limited to the job it fetched.

procrastinate ends a job (``finish_job``, ``retry_job``) by id, whatever happened to the job
meanwhile. A worker paused past ``ORCHESTRATOR_STALLED_AFTER`` (or cut off from the database)
comes back to a job crash recovery already re-queued and perhaps handed to another worker:
its late update would end the other worker's run (or the re-queued job) with its own, stale
verdict. Here the update applies only while the job is still ``doing`` with the ``attempts``
count it had when this worker fetched it; otherwise it is skipped and logged. Updates by id
(crash recovery, operators) are unchanged.

A successful attempt ends its job itself, in the job's transaction (see
:mod:`orchestrator._runner`): the runner notes it in :attr:`GuardedJobManager.finished_by_runner`
and procrastinate's finish for it costs no round trip.

A fetch whose answer never arrived (the connection died after the server committed it) leaves
a job ``doing`` under a live worker that does not know it:
:meth:`GuardedJobManager.no_fetch_in_flight` lets that worker compare its jobs with the
database's while no fetch is in flight (see ``orchestrator._recovery.requeue_orphans``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from procrastinate import jobs, manager, utils

from orchestrator._queries import QUERIES

logger = logging.getLogger("orchestrator._job_manager")


class GuardedJobManager(manager.JobManager):
    """A JobManager whose ``finish_job``/``retry_job`` leave a job that moved on alone."""

    def __init__(self, *args: Any, on_change: Callable[[], None] = lambda: None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        #: ``(job id, attempts when fetched)`` of jobs the runner already ended.
        self.finished_by_runner: set[tuple[int, int]] = set()
        #: Called after a job's status changed here (see orchestrator._changes).
        self.on_change = on_change
        self._fetch_locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}

    def _fetch_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._fetch_locks.get(loop)
        if lock is None:
            self._fetch_locks = {loop: (lock := asyncio.Lock())}
        return lock

    @contextlib.asynccontextmanager
    async def no_fetch_in_flight(self) -> AsyncIterator[bool]:
        """``True`` while it holds the lock every fetch takes, so that no fetch is in flight
        in this process and every job the database shows ``doing`` under this process's
        worker was handed to it already (procrastinate registers a fetched job before it
        yields again); ``False`` at once, without waiting, when a fetch is in flight (a
        caller such as the heartbeat must not wait for a fetch stuck on a dead server)."""
        lock = self._fetch_lock()
        if lock.locked():
            yield False
            return
        async with lock:  # free: taken without yielding to the event loop
            yield True

    async def fetch_job(self, queues: Iterable[str] | None, worker_id: int) -> jobs.Job | None:
        async with self._fetch_lock():
            job = await super().fetch_job(queues, worker_id)
        if job is not None:
            self.on_change()
        return job

    async def finish_job(self, job: jobs.Job, status: jobs.Status, delete_job: bool) -> None:
        assert job.id is not None
        key = (job.id, job.attempts)
        if key in self.finished_by_runner:
            # Ended as succeeded in the attempt's own transaction. The worker keeps its jobs
            # (orchestrator workers never delete them; pruning does), so nothing is left to do.
            self.finished_by_runner.discard(key)
            return
        row = await self.connector.execute_query_one_async(
            query=QUERIES["guarded_finish_job"],
            job_id=job.id,
            attempts=job.attempts,
            status=status.value,
            delete_job=delete_job,
        )
        self.on_change()
        self._log_skipped(job, row, f"finish as {status.value}")

    async def retry_job(
        self,
        job: jobs.Job,
        retry_at: datetime.datetime | None = None,
        priority: int | None = None,
        queue: str | None = None,
        lock: str | None = None,
    ) -> None:
        assert job.id is not None
        row = await self.connector.execute_query_one_async(
            query=QUERIES["guarded_retry_job"],
            job_id=job.id,
            attempts=job.attempts,
            retry_at=retry_at or utils.utcnow(),
            new_priority=priority,
            new_queue_name=queue,
            new_lock=lock,
        )
        self.on_change()
        self._log_skipped(job, row, "retry")

    @staticmethod
    def _log_skipped(job: jobs.Job, row: dict[str, Any], action: str) -> None:
        if row["applied"]:
            return
        logger.warning(
            "job %s moved on since this worker fetched it (re-queued by crash recovery); "
            "its stale %s was not applied",
            job.id,
            action,
            extra={"event": "job.stale_update_skipped", "job_id": job.id},
        )
