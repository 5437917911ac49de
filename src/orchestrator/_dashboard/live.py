"""Live updates: PostgreSQL notifications in, debounced server-sent events out.

One LISTEN connection per console process hears procrastinate's ``procrastinate_any_queue_v1``
(a job inserted) and ``orchestrator_changed`` (agent_runs written, a job's status changed;
see migration 0006). Each open page subscribes; after a notification every subscriber is told
"something changed" at most once per :data:`MIN_INTERVAL_S`, and the page re-reads itself.
A lost connection is re-opened with a growing pause; pages then get one refresh.

Example::

    changes = ChangeFeed(url)
    await changes.start()
    async for event in changes.subscribe():   # "change" (or "" for a keep-alive)
        ...
    await changes.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import psycopg
from psycopg import sql

logger = logging.getLogger("orchestrator.dashboard")

CHANNELS = ("procrastinate_any_queue_v1", "orchestrator_changed")
#: At most one refresh per subscriber per this many seconds.
MIN_INTERVAL_S = 1.0
#: A comment line is sent after this many quiet seconds, so proxies keep the stream open.
KEEPALIVE_S = 15.0
RECONNECT_DELAYS = (0.5, 1.0, 2.0, 5.0)


class ChangeFeed:
    """Fans PostgreSQL notifications out to subscribers, debounced."""

    def __init__(self, database_url: str, *, min_interval: float = MIN_INTERVAL_S) -> None:
        self._url = database_url
        self._min_interval = min_interval
        self._dirty = asyncio.Event()
        self._subscribers: set[asyncio.Queue[str | None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self.connected = asyncio.Event()
        self._closing = False

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen(), name="dashboard-listen"),
            asyncio.create_task(self._dispatch(), name="dashboard-dispatch"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for queue in list(self._subscribers):
            _offer(queue, None)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def close_subscribers(self) -> None:
        """End every open stream now (the server is stopping); new ones end at once."""
        self._closing = True
        for queue in list(self._subscribers):
            _offer(queue, None)

    def notify(self) -> None:
        """Mark the data changed (what a notification does); used by tests too."""
        self._dirty.set()

    async def subscribe(self, keepalive: float = KEEPALIVE_S) -> AsyncIterator[str]:
        """``"change"`` after each (debounced) change, ``""`` after ``keepalive`` quiet s."""
        queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=1)
        if self._closing:
            return
        self._subscribers.add(queue)
        try:
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), timeout=keepalive)
                except TimeoutError:
                    yield ""
                    continue
                if item is None:
                    return
                yield item
        finally:
            self._subscribers.discard(queue)

    async def _dispatch(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            for queue in list(self._subscribers):
                _offer(queue, "change")
            await asyncio.sleep(self._min_interval)

    async def _listen(self) -> None:
        failures = 0
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, connect_timeout=5
                )
            except psycopg.Error as exc:
                await self._pause(failures, exc)
                failures += 1
                continue
            try:
                async with conn:
                    for channel in CHANNELS:
                        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    if failures:
                        self.notify()  # changes may have been missed while away
                    failures = 0
                    self.connected.set()
                    async for _ in conn.notifies():
                        self._dirty.set()
            except psycopg.Error as exc:
                self.connected.clear()
                await self._pause(failures, exc)
                failures += 1

    @staticmethod
    async def _pause(failures: int, exc: BaseException) -> None:
        delay = RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)]
        logger.warning(
            "live updates: database connection lost (%s); retrying in %.1f s",
            type(exc).__name__,
            delay,
            extra={"event": "dashboard.listen_failed"},
        )
        await asyncio.sleep(delay)


def _offer(queue: asyncio.Queue[str | None], item: str | None) -> None:
    """Put without waiting; a subscriber that has not read the last one needs only one."""
    if item is None:
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()
    with contextlib.suppress(asyncio.QueueFull):
        queue.put_nowait(item)
