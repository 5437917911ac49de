"""``orchestrator worker``: procrastinate workers that survive database outages.

Procrastinate's worker stops when its LISTEN connection or heartbeat fails (a database
restart, a killed backend). Here that worker is run in a loop: it is restarted as soon as the
database answers again, and a recovery sweep runs at every start. ``--processes N`` runs N
such processes under a small supervisor that restarts a child that died and forwards
SIGTERM/SIGINT to all of them.

SIGTERM stops fetching; running jobs see ``ctx.stopping`` (their next step boundary raises
``WorkerStopping``: the step in flight finishes, its progress is committed, the attempt is
retried at once elsewhere) and get ``ORCHESTRATOR_SHUTDOWN_TIMEOUT`` seconds to get there,
then are aborted and retried at once. procrastinate stops the worker's heartbeat when the
shutdown begins, before its jobs have finished (upstream #1585): a drain longer than
``ORCHESTRATOR_STALLED_AFTER`` would look like a dead worker to other workers' crash recovery,
which would run the draining jobs a second time. The heartbeat is therefore also sent from
here, until the procrastinate worker has returned (its last job finished or aborted).

After a database outage the worker is restarted, and first re-queues the jobs whose attempts
it ran and could not record (their runs become ``ConnectionLost``, outside the abandon limit).
At each heartbeat it also re-queues the jobs the database shows under it that it does not run
(a fetch whose answer was lost with its connection; see ``orchestrator._recovery``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import psycopg
from procrastinate import exceptions as pexc
from procrastinate.worker import Worker
from psycopg.rows import DictRow, dict_row

from orchestrator import _recovery as recovery
from orchestrator._changes import quiet_triggers
from orchestrator._driver_errors import reason, translate
from orchestrator._errors import DatabaseNotMigrated, OrchestratorError
from orchestrator._orchestrator import Orchestrator
from orchestrator._queries import QUERIES
from orchestrator._tasks import MAINTENANCE_QUEUE

logger = logging.getLogger("orchestrator.worker")

#: Pauses before restarting the procrastinate worker, growing while restarts fail at once
#: (database still down); capped at 2 s so a worker is back soon after the database.
RESTART_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0)
#: A run that lasted this long was healthy: its failure restarts after the shortest pause
#: (a killed backend every few seconds must not push the restarts out to the longest one).
HEALTHY_RUN_S = 1.0


async def run_worker(
    orch: Orchestrator,
    *,
    concurrency: int | None = None,
    queues: Sequence[str] | None = None,
    name: str | None = None,
    install_signal_handlers: bool = True,
) -> None:
    """Run one worker until SIGTERM/SIGINT (or :meth:`asyncio.Task.cancel`)."""
    stop = asyncio.Event()
    current: list[Worker] = []

    def request_stop() -> None:
        if not stop.is_set():
            logger.info("stop requested; finishing running jobs", extra={"event": "worker.stop"})
        stop.set()
        orch.stopping = True
        for worker in current:
            worker.stop()  # type: ignore[no-untyped-call]

    loop = asyncio.get_running_loop()
    if install_signal_handlers:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, request_stop)
    listen_queues = None if not queues else sorted({*queues, MAINTENANCE_QUEUE})
    failures = 0
    try:
        while not stop.is_set():
            worker = Worker(
                app=orch.app,
                queues=listen_queues,
                name=name or f"worker-{os.getpid()}",
                concurrency=concurrency or orch.settings.concurrency,
                fetch_job_polling_interval=orch.settings.poll_interval,
                abort_job_polling_interval=min(5.0, orch.settings.poll_interval * 4),
                shutdown_graceful_timeout=orch.settings.shutdown_timeout,
                update_heartbeat_interval=orch.settings.heartbeat_interval,
                stalled_worker_timeout=orch.settings.stalled_after,
                install_signal_handlers=False,
                listen_notify=True,
            )
            current[:] = [worker]
            started = time.monotonic()
            heartbeat = asyncio.create_task(
                _keep_heartbeat(orch, worker, stop.is_set), name="heartbeat"
            )
            try:
                if orch.runner.cut_off:
                    await orch.requeue_cut_off()
                await orch.recover()
                await _run_until_drained(worker, request_stop)
            except DatabaseNotMigrated:
                raise
            except (OrchestratorError, pexc.ConnectorException, psycopg.Error, OSError) as exc:
                if isinstance(translate(exc), DatabaseNotMigrated):
                    raise DatabaseNotMigrated() from None
                logger.warning(
                    "database unavailable (%s); restarting the worker",
                    orch.scrubber(reason(exc)),
                    extra={"event": "worker.db_unavailable"},
                )
            except Exception:
                # A bug or a poisoned job must not end the worker: log it once, restart.
                logger.exception(
                    "the worker stopped on an unexpected error; restarting it",
                    extra={"event": "worker.crashed"},
                )
            finally:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat
            if stop.is_set():
                break
            failures = 0 if time.monotonic() - started >= HEALTHY_RUN_S else failures + 1
            delay = RESTART_DELAYS[min(failures, len(RESTART_DELAYS) - 1)]
            logger.warning(
                "worker stopped unexpectedly; restarting in %.1f s",
                delay,
                extra={"event": "worker.restart"},
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
    finally:
        orch.stopping = False
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)


async def _run_until_drained(worker: Worker, request_stop: Callable[[], None]) -> None:
    """``worker.run()``; cancelling it is a graceful stop (running jobs see ``ctx.stopping``
    and drain) before the cancellation goes on."""
    run = asyncio.ensure_future(worker.run())  # type: ignore[no-untyped-call]
    try:
        await asyncio.shield(run)
    except asyncio.CancelledError:
        request_stop()
        await run
        raise


async def _keep_heartbeat(
    orch: Orchestrator, worker: Worker, stop_requested: Callable[[], bool]
) -> None:
    """The worker's heartbeat, every ``ORCHESTRATOR_HEARTBEAT_INTERVAL``, for as long as the
    procrastinate worker runs — including its graceful shutdown, when procrastinate's own
    heartbeat has already stopped. A drain is given ``SHUTDOWN_TIMEOUT + STALLED_AFTER``: a
    worker whose jobs are still not done by then (aborted jobs that do not end) stops beating,
    so that crash recovery re-queues them rather than leave them to a wedged process.
    Failures are left to procrastinate's own heartbeat to report."""
    settings = orch.settings
    interval = settings.heartbeat_interval
    drain_limit = settings.shutdown_timeout + settings.stalled_after
    stopping_since: float | None = None
    conn: psycopg.AsyncConnection[DictRow] | None = None
    try:
        while True:
            await asyncio.sleep(interval)
            if stop_requested() or _procrastinate_stopping(worker):
                stopping_since = stopping_since or time.monotonic()
                if time.monotonic() - stopping_since > drain_limit:
                    logger.warning(
                        "worker %s still draining after %.0f s; its heartbeat stops so that "
                        "crash recovery can take its jobs",
                        worker.worker_id,
                        drain_limit,
                        extra={"event": "worker.drain_overdue"},
                    )
                    return
            worker_id = worker.worker_id
            if worker_id is None:
                continue
            try:
                if conn is None or conn.closed:
                    conn = await _heartbeat_connection(orch)
                await conn.execute(QUERIES["heartbeat"], {"worker_id": worker_id})
                await _requeue_orphans(orch, worker, worker_id, conn)
            except Exception as exc:
                logger.debug(
                    "heartbeat of worker %s failed: %s", worker_id, orch.scrubber(str(exc))
                )
                if conn is not None:
                    await conn.close()
                    conn = None
    finally:
        if conn is not None:
            await conn.close()


async def _heartbeat_connection(orch: Orchestrator) -> psycopg.AsyncConnection[DictRow]:
    """The heartbeat's own connection, outside the pool: jobs that hold every pooled
    connection (a PT4's chunks write their ledger on pool connections) must not hold up the
    beat that tells crash recovery this worker is alive."""
    conn = await psycopg.AsyncConnection.connect(
        orch.database_url,
        row_factory=dict_row,
        connect_timeout=int(orch.settings.connect_timeout),
    )
    try:
        await quiet_triggers(conn)  # the worker's own writes notify through its ChangeNotifier
        await conn.set_autocommit(True)  # each beat its own transaction, never one left open
    except BaseException:  # a failure or the worker stopping: not left open for the GC
        await conn.close()
        raise
    return conn


async def _requeue_orphans(
    orch: Orchestrator, worker: Worker, worker_id: int, conn: psycopg.AsyncConnection[DictRow]
) -> None:
    """Re-queue the jobs the database says this worker runs and it does not (a fetch whose
    answer was lost with its connection), while no fetch is in flight. procrastinate 3.10
    keeps the jobs it runs in a private mapping, from the fetch's return until their status
    update is done."""
    running = getattr(worker, "_running_jobs", None)
    if not isinstance(running, dict):
        return
    async with orch.job_manager.no_fetch_in_flight() as idle:
        if not idle:
            return  # the next heartbeat looks again
        held = [context.job.id for context in running.values() if context.job.id is not None]
        if await recovery.requeue_orphans(conn, worker_id, held):
            orch.changes.changed()


def _procrastinate_stopping(worker: Worker) -> bool:
    """Whether procrastinate's worker began its shutdown on its own (a failed side task: the
    database went away). procrastinate 3.10 keeps that in a private event."""
    event = getattr(worker, "_stop_event", None)
    return isinstance(event, asyncio.Event) and event.is_set()


def supervise(argv_for_child: Sequence[str], processes: int, env: dict[str, str]) -> int:
    """Run ``processes`` worker processes; restart any that dies; stop all on a signal."""
    stopping = False
    children: dict[int, subprocess.Popen[bytes]] = {}

    def spawn(slot: int) -> None:
        children[slot] = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", *argv_for_child], env=env
        )

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for slot in range(processes):
        spawn(slot)
    while True:
        alive = False
        for slot, child in list(children.items()):
            code = child.poll()
            if code is None:
                alive = True
            elif not stopping:
                logger.warning(
                    "worker process %s exited with %s; restarting it",
                    child.pid,
                    code,
                    extra={"event": "worker.process_restart"},
                )
                spawn(slot)
                alive = True
        if not alive:
            break
        time.sleep(0.2)
    codes = [child.returncode for child in children.values()]
    return 0 if all(code in (0, -signal.SIGTERM, -signal.SIGINT) for code in codes) else 1
