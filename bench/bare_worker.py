"""``python -m bench.bare_worker``: run the bare procrastinate App like ``orchestrator worker``.

Same Worker options as :func:`orchestrator._worker.run_worker` (concurrency, polling intervals,
heartbeat, graceful shutdown, LISTEN/NOTIFY), the same logging set-up as the orchestrator's
CLI, taken from the same ``ORCHESTRATOR_*`` settings, and the same garbage-collector tuning
(:mod:`orchestrator._gc`), so that a ratio against it measures bookkeeping, not the
collector. ::

    ORCHESTRATOR_DATABASE_URL=postgresql://... python -m bench.bare_worker --concurrency 4
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from procrastinate.worker import Worker

from bench.bare_app import make_app
from orchestrator._gc import tune_for_worker
from orchestrator._log import configure_logging
from orchestrator._settings import Settings, load_settings


async def run_worker(database_url: str, settings: Settings, concurrency: int) -> None:
    """One worker with the options ``orchestrator worker`` uses, until SIGTERM/SIGINT."""
    bare = make_app(database_url, settings)
    async with bare.open_async():
        tune_for_worker()  # as orchestrator worker does once it has started
        worker = Worker(
            app=bare,
            queues=None,
            name=f"bare-{os.getpid()}",
            concurrency=concurrency,
            fetch_job_polling_interval=settings.poll_interval,
            abort_job_polling_interval=min(5.0, settings.poll_interval * 4),
            shutdown_graceful_timeout=settings.shutdown_timeout,
            update_heartbeat_interval=settings.heartbeat_interval,
            stalled_worker_timeout=settings.stalled_after,
            install_signal_handlers=True,
            listen_notify=True,
        )
        await worker.run()  # type: ignore[no-untyped-call]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_worker")
    parser.add_argument("--concurrency", type=int, help="jobs at once (default: the setting)")
    args = parser.parse_args(argv)
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format, str)
    url = os.environ.get("ORCHESTRATOR_DATABASE_URL")
    if not url:
        print("bench.bare_worker: set ORCHESTRATOR_DATABASE_URL", file=sys.stderr)
        return 2
    logging.getLogger("bench").info("bare procrastinate worker starting")
    asyncio.run(run_worker(url, settings, args.concurrency or settings.concurrency))
    return 0


if __name__ == "__main__":
    sys.exit(main())
