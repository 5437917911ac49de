"""The connection pool: psycopg's, with a health check that costs no time when it fails;
procrastinate's connector on it, running its single statements in autocommit mode.

Connections idle in a pool die together when the server restarts or their backends are
terminated. psycopg_pool's own ``check=`` callback catches them, but sleeps between two failed
checks with its reconnection backoff (about 1 s, then 2, 4, 8 ...): with a dozen dead idle
connections one checkout waits half a minute and ends in ``PoolTimeout``. Here a connection
that fails the check is handed back (the pool discards it and opens a replacement) and the
next one is tried at once; only when the pool is empty does a checkout wait, for a new
connection. Example::

    pool = CheckedPool(conninfo=url, min_size=1, max_size=10, open=False)
    await pool.open()
    async with pool.connection() as conn:   # never a dead connection
        ...
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import procrastinate
import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

#: In a worker, a connection handed back less than this many seconds ago in a clean state is
#: not checked again: under load that check is one round trip per checkout (three per job),
#: and a connection that died in the meantime fails its first statement loudly, which a
#: worker turns into a retry. Application pools (enqueue) check every checkout.
RECENT_S = 1.0


class CheckedPool(AsyncConnectionPool[psycopg.AsyncConnection[DictRow]]):
    """An async pool whose checkouts skip dead connections without waiting.

    Do not pass ``check=``: the check is done by :meth:`getconn` itself. With
    ``trust_recent=True`` (workers) it is skipped for a connection returned healthy within the
    last :data:`RECENT_S` seconds.
    """

    def __init__(self, *args: Any, trust_recent: bool = False, **kwargs: Any) -> None:
        self._trust_recent = trust_recent
        self._returned_at = {}
        super().__init__(*args, **kwargs)

    _returned_at: dict[int, float]

    async def putconn(self, conn: psycopg.AsyncConnection[DictRow]) -> None:
        if (
            self._trust_recent
            and not conn.closed
            and conn.info.transaction_status == TransactionStatus.IDLE
        ):
            self._returned_at[id(conn)] = time.monotonic()
        else:
            self._returned_at.pop(id(conn), None)
        await super().putconn(conn)

    def _recently_healthy(self, conn: psycopg.AsyncConnection[DictRow]) -> bool:
        returned = self._returned_at.pop(id(conn), None)
        return returned is not None and time.monotonic() - returned < RECENT_S

    async def getconn(self, timeout: float | None = None) -> psycopg.AsyncConnection[DictRow]:
        budget = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        # Each failed check drops one connection; more failures in a row than the pool can
        # hold mean that fresh connections die too: the last error is raised.
        for attempt in range(self.max_size + 1):
            conn = await super().getconn(self._left(deadline, budget))
            if self._recently_healthy(conn):
                return conn
            try:
                await self.check_connection(conn)
            except BaseException as exc:
                await self.putconn(conn)  # a broken one is dropped and replaced by the pool
                if not isinstance(exc, Exception) or attempt == self.max_size:
                    raise
                continue
            return conn
        raise AssertionError("unreachable")

    @staticmethod
    def _left(deadline: float, budget: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise PoolTimeout(f"couldn't get a working connection after {budget:.2f} sec")
        return left


@contextlib.asynccontextmanager
async def autocommit(
    conn: psycopg.AsyncConnection[Any],
) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A pooled connection in autocommit mode for the block, back in transaction mode after.

    A single statement sent this way is its own transaction, committed by the server in the
    same round trip: one round trip instead of three (``BEGIN``, the statement, ``COMMIT``).
    Switching costs nothing (the connection is idle: psycopg only flips a flag). A connection
    that cannot be switched back (a statement cut short) is closed, so the pool drops it rather
    than hand out a connection in the wrong mode."""
    await conn.set_autocommit(True)
    try:
        yield conn
    finally:
        if not conn.closed:
            try:
                await conn.set_autocommit(False)
            except psycopg.Error:
                await conn.close()


class AutocommitConnector(procrastinate.PsycopgConnector):
    """procrastinate's connector, sending its pool queries in autocommit mode.

    Every query procrastinate runs on its pool (fetch a job, finish or retry it, heartbeats)
    is one statement, atomic by itself; in transaction mode each cost three round trips, so a
    job's fetch and finish cost six instead of two. Queries run on a connection the caller
    passes (an enqueue inside the caller's transaction) are left in that transaction.
    ``_get_cursor`` is procrastinate 3.10's one place where a connection is taken for a query
    (the version is pinned below 3.11)."""

    @contextlib.asynccontextmanager
    async def _get_cursor(
        self, connection: psycopg.AsyncConnection[Any] | None = None
    ) -> AsyncIterator[psycopg.AsyncCursor[DictRow]]:
        if connection is not None:
            async with super()._get_cursor(connection) as cursor:
                yield cursor
            return
        async with (
            self.pool.connection() as conn,
            autocommit(conn),
            super()._get_cursor(conn) as cursor,
        ):
            yield cursor
