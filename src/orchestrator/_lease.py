"""An attempt's lease on its job, checked before every step commit and external call.

An attempt holds its job's lease while its ``agent_runs`` row is ``running``. Crash recovery
takes the lease away (it *fences* the attempt) by marking the row ``abandoned`` before it
re-queues the job, and it only does so once the attempt's worker has been silent for
``ORCHESTRATOR_STALLED_AFTER`` seconds. Two checks follow from that:

- **Step commits** (:meth:`Lease.hold` inside the job's transaction) update the row
  ``WHERE status = 'running'``: the row lock orders the commit against recovery's fence, so a
  step either commits while the lease is held or is refused (:class:`FencedAttempt`, the
  transaction rolled back).
- **External calls** (:meth:`Lease.confirm`) cannot be atomic with a remote server, so the
  check also bounds the lease in time: the database answers with the row's status and how long
  the worker's last heartbeat keeps the lease (``last_heartbeat + STALLED_AFTER - now()``);
  the request may leave only while the local monotonic clock is inside that window. A worker
  paused (SIGSTOP, a stalled event loop) after a check therefore re-checks before it sends,
  and finds itself fenced, instead of sending on a stale answer.

Once fenced, a lease stays fenced: every later check raises again.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

import psycopg
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from orchestrator._errors import FencedAttempt, WorkerStopping
from orchestrator._queries import QUERIES

Pool = AsyncConnectionPool[psycopg.AsyncConnection[DictRow]]

#: Seconds of lease kept in reserve for the time between a check and the request leaving.
MARGIN_S = 0.2
#: Re-checks before giving up on a window that keeps running out (a starved event loop).
MAX_CHECKS = 5


class LeaseExpired(WorkerStopping):
    """the worker's heartbeat is older than STALLED_AFTER: the attempt stops before acting"""


class Lease:
    """The lease of one attempt (its ``agent_runs`` row ``run_id``)."""

    def __init__(
        self,
        pool: Pool,
        run_id: int,
        *,
        stalled_after: float,
        on_hold: Callable[[], None] = lambda: None,
    ) -> None:
        self.pool = pool
        #: Called once a step's hold is taken (its row counts the step; see _changes).
        self.on_hold = on_hold
        self.run_id = run_id
        self.stalled_after = stalled_after
        self._fenced: FencedAttempt | None = None
        self._sent_at = -math.inf  # monotonic time the last good check was sent
        self._valid_until = -math.inf
        self._lock = asyncio.Lock()
        self.checks = 0

    @property
    def fenced(self) -> bool:
        return self._fenced is not None

    def fence(self, reason: str) -> FencedAttempt:
        """Remember that the lease is lost; returns the error to raise."""
        if self._fenced is None:
            self._fenced = FencedAttempt(f"attempt fenced (run {self.run_id}): {reason}")
        return self._fenced

    def _raise_if_fenced(self) -> None:
        if self._fenced is not None:
            raise FencedAttempt(str(self._fenced))

    async def confirm(self) -> None:
        """Return only if the lease is held *now*; raise :class:`FencedAttempt` otherwise.

        A check sent after this call began is reused by concurrent callers (one round trip
        for a burst of requests); the answer is trusted only inside its time window.
        """
        self._raise_if_fenced()
        arrived = time.monotonic()
        for _ in range(MAX_CHECKS):
            async with self._lock:
                self._raise_if_fenced()
                if self._sent_at < arrived or time.monotonic() >= self._valid_until:
                    await self._check()
            if time.monotonic() < self._valid_until:
                return
            arrived = time.monotonic()
        raise LeaseExpired(
            f"the lease of run {self.run_id} kept running out before a request could leave"
        )

    async def confirm_window(self) -> None:
        """After a wait that followed :meth:`confirm` (a request spaced by its rate limit):
        return at once while that answer's time window lasts, else check again. The request
        still leaves only inside a window the database gave."""
        self._raise_if_fenced()
        if time.monotonic() < self._valid_until:
            return
        await self.confirm()

    async def _check(self) -> None:
        sent = time.monotonic()
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                QUERIES["lease"], {"run_id": self.run_id, "stalled_after": self.stalled_after}
            )
            row = await cursor.fetchone()
        self.checks += 1
        if row is None or row["status"] != "running":
            status = "gone" if row is None else row["status"]
            raise self.fence(f"its agent_runs row is {status}; another attempt owns the job")
        remaining = row["remaining_s"]
        if remaining is None:  # no worker heartbeat bounds this attempt (run in-process)
            self._sent_at, self._valid_until = sent, math.inf
            return
        if float(remaining) <= MARGIN_S:
            raise LeaseExpired(
                f"the worker's last heartbeat is older than {self.stalled_after:g} s "
                "(ORCHESTRATOR_STALLED_AFTER); stopping before recovery re-queues the job"
            )
        self._sent_at, self._valid_until = sent, sent + float(remaining) - MARGIN_S

    async def hold(self, conn: psycopg.AsyncConnection[DictRow]) -> None:
        """Inside the job's transaction, just before it commits: lock the run row and count
        the step, or raise :class:`FencedAttempt` (the caller rolls back)."""
        self._raise_if_fenced()
        cursor = await conn.execute(QUERIES["hold_lease"], {"run_id": self.run_id})
        if await cursor.fetchone() is None:
            raise self.fence("crash recovery re-queued the job before this step committed")
        self.on_hold()  # the notification leaves after a delay, after the step's commit
