from __future__ import annotations

import asyncio
import contextlib

from orchestrator import Orchestrator
from orchestrator._worker import run_worker
from tests.fix_db import wait_for


async def test_job_runs_and_records(orch: Orchestrator) -> None:
    job_id = await orch.enqueue_workflow("write_row", {"key": "a"})
    task = asyncio.create_task(run_worker(orch, install_signal_handlers=False))

    async def done() -> bool:
        return (await orch.queue_status()).total.completed == 1

    await wait_for(done, timeout=20)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    runs = await orch.list_runs(job_id=job_id)
    assert [r["status"] for r in runs] == ["succeeded"]
