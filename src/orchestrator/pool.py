"""The connection pool: psycopg's, with a health check that costs no time when it fails.

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

import time

import psycopg
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout


class CheckedPool(AsyncConnectionPool[psycopg.AsyncConnection[DictRow]]):
    """An async pool whose checkouts skip dead connections without waiting.

    Do not pass ``check=``: the check is done by :meth:`getconn` itself.
    """

    async def getconn(self, timeout: float | None = None) -> psycopg.AsyncConnection[DictRow]:
        budget = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        # Each failed check drops one connection; more failures in a row than the pool can
        # hold mean that fresh connections die too: the last error is raised.
        for attempt in range(self.max_size + 1):
            conn = await super().getconn(self._left(deadline, budget))
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
