"""Module-level shortcuts on a process-wide :class:`~orchestrator.Orchestrator`.

For application code that just wants to enqueue::

    import orchestrator

    job_id = await orchestrator.enqueue_workflow("pt1", {"client": "Acme", "month": "2027-01"})
    counts = await orchestrator.queue_status()

The default orchestrator reads its settings from the environment and opens its pool on first
use (again if called from another event loop). With ``connection=``, nothing is opened: the
job is inserted through the caller's connection, inside its transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from orchestrator._enqueue import JobRequest
from orchestrator._orchestrator import Orchestrator
from orchestrator._status import QueueStatus

_default: Orchestrator | None = None
_opened_on: asyncio.AbstractEventLoop | None = None


def default_orchestrator() -> Orchestrator:
    """The process-wide orchestrator (not opened)."""
    global _default
    if _default is None:
        _default = Orchestrator()
    return _default


async def _opened() -> Orchestrator:
    global _default, _opened_on
    loop = asyncio.get_running_loop()
    if _opened_on is not loop:
        if _opened_on is not None:
            _default = None  # a pool opened on another (finished) loop cannot be reused
        orch = default_orchestrator()
        await orch.open()
        _opened_on = loop
    return default_orchestrator()


async def enqueue_workflow(
    name: str,
    payload: Mapping[str, Any],
    *,
    connection: psycopg.AsyncConnection[Any] | None = None,
    **options: Any,
) -> int:
    """Enqueue one job; see :meth:`Orchestrator.enqueue_workflow` for the options."""
    orch = default_orchestrator() if connection is not None else await _opened()
    return await orch.enqueue_workflow(name, payload, connection=connection, **options)


async def enqueue_many(
    requests: Sequence[JobRequest], *, connection: psycopg.AsyncConnection[Any] | None = None
) -> list[int]:
    """Enqueue a batch in one round trip, all or nothing."""
    orch = default_orchestrator() if connection is not None else await _opened()
    return await orch.enqueue_many(requests, connection=connection)


async def queue_status() -> QueueStatus:
    """Job counts in total and per workflow (``waiting``, ``delayed``, ``active``, ...)."""
    return await (await _opened()).queue_status()


async def close() -> None:
    """Close the default orchestrator's pool (e.g. at application shutdown)."""
    global _opened_on
    if _default is not None and _opened_on is not None:
        await _default.close()
        _opened_on = None
