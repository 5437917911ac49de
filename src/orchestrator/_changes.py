"""Change notifications from a worker: ``orchestrator_changed``, batched per process.

The console listens on ``orchestrator_changed`` and re-reads its pages when jobs or runs
change. Triggers on ``agent_runs`` and on a job's status send it from every transaction that
writes them (migration 0007). A notification costs more than its few bytes: PostgreSQL
serialises the commits of all notifying transactions on one lock, held through the commit's
WAL flush. A job took four such transactions (its fetch, its ``running`` row, its success,
its end), so worker processes queued behind each other's disk flushes and adding processes
added little throughput.

Worker processes therefore switch the triggers off on their own connections (the session
setting ``orchestrator.notify_changes = off``, migration 0011) and say "changed" themselves,
through a :class:`ChangeNotifier`: the engine code that changes a run or a job's status calls
:meth:`ChangeNotifier.changed` after the change, and one notification per
:data:`DELAY_S` at most leaves the process, in a transaction of its own that writes nothing
(no WAL flush while it holds the lock). Every change is followed by a notification within
:data:`DELAY_S`; the console debounces to one refresh a second anyway. Other writers (the
CLI, the console's actions, SQL typed by a person) keep the triggers. Example::

    notifier = ChangeNotifier(lambda: pool)
    ...                      # an attempt's row committed
    notifier.changed()       # a notification follows within DELAY_S
    await notifier.close()   # sends what is pending
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from orchestrator._pool import autocommit
from orchestrator._queries import QUERIES

logger = logging.getLogger("orchestrator.changes")

#: Seconds between a change and its notification; changes within it share one notification.
DELAY_S = 0.25
#: The session setting that switches the notification triggers off (see migration 0011).
SETTING = "orchestrator.notify_changes"


async def quiet_triggers(conn: psycopg.AsyncConnection[Any]) -> None:
    """Pool ``configure`` hook of a worker: this session's writes notify through the
    process's :class:`ChangeNotifier`, not through the triggers."""
    async with autocommit(conn):
        await conn.execute(QUERIES["quiet_change_triggers"])


class ChangeNotifier:
    """Sends ``orchestrator_changed`` at most once per :data:`DELAY_S`, after a change.

    ``enabled=False`` (processes whose connections keep the triggers) makes it do nothing."""

    def __init__(
        self,
        pool: Callable[[], AsyncConnectionPool[psycopg.AsyncConnection[DictRow]]],
        *,
        enabled: bool = True,
        delay: float = DELAY_S,
    ) -> None:
        self.pool = pool  # called when sending: the pool opens after this is made
        self.enabled = enabled
        self.delay = delay
        self.sent = 0
        self._task: asyncio.Task[None] | None = None

    def changed(self) -> None:
        """A run or a job's status changed (committed): notify within :attr:`delay`."""
        if not self.enabled:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._send_later(), name="orchestrator-changed"
            )

    async def _send_later(self) -> None:
        await asyncio.sleep(self.delay)
        await self._send()

    async def _send(self) -> None:
        try:
            pool = self.pool()
            async with pool.connection(timeout=max(self.delay * 4, 1.0)) as conn, autocommit(conn):
                await conn.execute(QUERIES["notify_change"])
            self.sent += 1
        except Exception as exc:  # a missed refresh of the console must not hurt a job
            logger.debug("change notification not sent: %s", type(exc).__name__)

    async def close(self) -> None:
        """Send the pending notification now (the pool is about to close)."""
        task, self._task = self._task, None
        if task is None or task.done():
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await self._send()
