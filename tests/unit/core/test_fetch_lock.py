"""The heartbeat's orphan check never waits for a fetch (one stuck on a dead server)."""

from __future__ import annotations

import asyncio
from typing import Any

from procrastinate import jobs

from orchestrator._job_manager import GuardedJobManager


class _SlowConnector:
    """Answers procrastinate's fetch when told to."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def execute_query_one_async(self, query: str, **arguments: Any) -> dict[str, Any]:
        await self.release.wait()
        return {"id": None}


async def test_no_fetch_in_flight_says_false_at_once_while_a_fetch_waits() -> None:
    connector = _SlowConnector()
    manager = GuardedJobManager(connector)
    async with manager.no_fetch_in_flight() as idle:
        assert idle
    fetch = asyncio.create_task(manager.fetch_job(None, worker_id=1))
    await asyncio.sleep(0)  # the fetch takes the lock and waits for its answer
    async with asyncio.timeout(1):
        async with manager.no_fetch_in_flight() as idle:
            assert not idle
    connector.release.set()
    job: jobs.Job | None = await fetch
    assert job is None
    async with manager.no_fetch_in_flight() as idle:
        assert idle


async def test_a_fetch_waits_while_the_check_runs() -> None:
    connector = _SlowConnector()
    connector.release.set()
    manager = GuardedJobManager(connector)
    async with manager.no_fetch_in_flight() as idle:
        assert idle
        fetch = asyncio.create_task(manager.fetch_job(None, worker_id=1))
        await asyncio.sleep(0.05)
        assert not fetch.done()
    assert await fetch is None
