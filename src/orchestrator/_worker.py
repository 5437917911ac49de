"""``orchestrator worker``: procrastinate workers that survive database outages.

Procrastinate's worker stops when its LISTEN connection or heartbeat fails (a database
restart, a killed backend). Here that worker is run in a loop: it is restarted as soon as the
database answers again, and a recovery sweep runs at every start. ``--processes N`` runs N
such processes under a small supervisor that restarts a child that died and forwards
SIGTERM/SIGINT to all of them.

SIGTERM stops fetching; running jobs get ``ORCHESTRATOR_SHUTDOWN_TIMEOUT`` seconds to finish,
then are aborted and retried at once.
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
from collections.abc import Sequence

import psycopg
from procrastinate import exceptions as pexc
from procrastinate.worker import Worker

from orchestrator._driver_errors import reason, translate
from orchestrator._errors import DatabaseNotMigrated, OrchestratorError
from orchestrator._orchestrator import Orchestrator
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
            try:
                await orch.recover()
                await worker.run()  # type: ignore[no-untyped-call]
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
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)


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
