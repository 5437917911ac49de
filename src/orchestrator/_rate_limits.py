"""Shared rate limits: a token bucket per provider instance, kept in PostgreSQL.

Every worker process, on every host, draws from the same bucket (a row of
``orchestrator_rate_limits``), so ten workers uploading to one EmailBison instance together
stay within its rate instead of each believing it owns all of it. Keys name a provider and
an instance: ``emailbison:https://bison.example``, ``debounce``.

How a grant works. The bucket is stored as a GCRA *theoretical arrival time* (``tat``): it
is full when ``tat <= now``, each grant moves ``tat`` one interval (``1 / rate``) further, and
a request may go at ``max(now, tat - (burst - 1) / rate)``. A grant *reserves* the next free
slot in one statement (``rate_limit_grant`` in ``sql/rate_limits.sql``, its own short
transaction on a pool connection, never the workflow's) and the caller sleeps until it,
holding no connection and no lock. So waiters are served oldest first, whichever process
they run in: a client with four requests in flight holds at most four places in the queue,
and two clients with the same concurrency get the same share. Over any window of ``w``
seconds at most ``burst + rate * w`` slots are handed out.

Batches. One process claims up to :data:`BATCH_SECONDS` worth of slots (never more than the
burst) in one round trip and hands them to its own waiters in order: at 100 grants a second
that is one statement per ten grants, and since the slots are consecutive places in the
shared queue a batch neither breaks the rate nor lets its holder jump ahead of others (it
delays them by at most the batch's length). One rule decides when a slot is too old to use,
whether it still waits in the batch or its waiter slept past it: :data:`KEEP_LATE_S` (or one
interval, at rates under two a second). A waiter that wakes more than an interval after its
slot (its process starved of CPU, its event loop busy) but within that keeps the slot, and
goes no sooner than one interval after the process's previous request: late waiters leave
one by one instead of in a bunch. (Giving every late slot up, as
an earlier version did, wasted them: with the event loop busy 60 ms in every 100, 16 waiters
got 13.6 grants a second out of 20, and 5.8 when busy 300 ms in every 400.) A slot passed by
more than that is given up and a new one claimed: a request going so late would add to the
provider's next second rather than its own.

Sending. A grant is when a request may go, but the lease check and the event loop stand
between it and the wire. The worker's request hook (``ctx.http_hooks``) therefore passes each
request, once its lease is checked, through :meth:`RateLimit.before_send`: a bucket of the
process with the key's rate and burst, which lets requests that keep the pace go at once and
spaces those that bunched on the way (a client asks for it with the
:attr:`RateLimit.SEND_GATE` request extension).

429s. :meth:`RateLimit.throttled` records a provider's ``Retry-After`` on the row
(``blocked_until``): no process gets a slot of that key before then, and slots restart at
the rate (no burst) after it. A waiter that already held a slot when the block was set
learns of it when it wakes, if it slept longer than :data:`RECHECK_AFTER_S` (one cheap
SELECT), and queues again; so after a 429 at most the slots due within that time go out.

Example::

    limit = ctx.rate_limit("emailbison:https://bison.example", rate=20, burst=1)
    await limit.acquire()            # returns when this request may go
    response = await http.post(...)
    if response.status_code == 429:
        await limit.throttled(retry_after)   # slows every worker using the key
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from orchestrator._queries import named_blocks

Pool = AsyncConnectionPool[psycopg.AsyncConnection[DictRow]]

SQL = named_blocks("rate_limits.sql")

#: A process claims at most this many seconds' worth of slots per round trip.
BATCH_SECONDS = 0.1
#: A waiter that slept longer than this for its slot checks that no 429 blocked the key since.
RECHECK_AFTER_S = 0.5
#: A waiter that wakes this many seconds or more after its slot gives the slot up (or one
#: interval, at rates under two a second: a slot is never given up for less).
KEEP_LATE_S = 0.5
#: Longest key accepted (the column's check).
MAX_KEY_LENGTH = 300


def plan_slots(tat_s: float, start_s: float, n: int, rate: float, burst: float) -> list[float]:
    """When each of ``n`` reserved slots may be used, in seconds from the grant.

    ``tat_s`` is the bucket's theoretical arrival time *after* the grant and ``start_s`` the
    earliest any slot may go (the end of a 429 block), both from the grant's own clock.
    Slot ``i`` may go at ``max(start, base + i / rate - (burst - 1) / rate)`` where ``base``
    is ``tat`` before the grant. A full bucket of burst 3 at 10 a second: three at once,
    then one every 100 ms:

    >>> [round(s, 3) for s in plan_slots(0.5, 0.0, 5, rate=10, burst=3)]
    [0.0, 0.0, 0.0, 0.1, 0.2]

    A bucket already 1 s behind (a queue of waiters) gives slots from 1 s on, less the
    tolerance of the burst:

    >>> [round(s, 3) for s in plan_slots(1.2, 0.0, 2, rate=10, burst=1)]
    [1.0, 1.1]
    """
    interval = 1.0 / rate
    base = tat_s - n * interval
    tolerance = (burst - 1.0) * interval
    return [max(start_s, 0.0, base + i * interval - tolerance) for i in range(n)]


def batch_size(rate: float, burst: float) -> int:
    """Slots one process claims per round trip: :data:`BATCH_SECONDS` of the rate, at least
    one, at most the burst (a batch never holds more than one burst's worth).

    >>> batch_size(20, 1), batch_size(100, 50), batch_size(1000, 5)
    (1, 10, 5)
    """
    return max(1, min(int(burst), math.floor(rate * BATCH_SECONDS)))


def check_limit(key: str, rate: float, burst: float) -> None:
    """Refuse a key, rate or burst the table would refuse, naming the value at fault."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"rate limit key must be 1 to {MAX_KEY_LENGTH} characters")
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"rate limit {key!r}: rate must be a positive number, got {rate!r}")
    if not (burst >= 1 and math.isfinite(burst)):
        raise ValueError(f"rate limit {key!r}: burst must be at least 1, got {burst!r}")


class RateLimit:
    """One process's handle on a shared limit (see the module docstring).

    Safe to share between the tasks of one event loop: claims are serialised, slots are
    handed out in the order the tasks asked. Get one with ``ctx.rate_limit(key, ...)``, which
    returns the same handle for the same key in one process.
    """

    #: The ``httpx.Request.extensions`` key under which a client hands the request's
    #: :meth:`before_send` to the worker's request hook (``ctx.http_hooks``).
    SEND_GATE = "orchestrator.send_gate"

    def __init__(self, pool: Pool, key: str, *, rate: float, burst: float = 1.0) -> None:
        check_limit(key, rate, burst)
        # Weakly: the process-wide cache of handles is keyed by the pool and must not keep a
        # closed pool alive.
        self._pool = weakref.ref(pool)
        self.key = key
        self.rate = float(rate)
        self.burst = float(burst)
        self.batch = batch_size(self.rate, self.burst)
        self._slots: deque[float] = deque()  # monotonic times of slots claimed, not yet used
        self._lock = asyncio.Lock()
        self._blocked_until = 0.0  # monotonic: a 429 seen by this process
        #: Grants handed out by this process, and seconds its waiters slept in total.
        self.grants = 0
        self.waited_s = 0.0
        #: Grants whose waiter woke more than an interval after its slot (then paced).
        self.late = 0
        #: Slots given up because their waiter woke :data:`KEEP_LATE_S` or more after them.
        self.expired = 0
        #: Slots claimed from the shared row.
        self.claimed = 0
        self._last_go = -math.inf  # monotonic time this process's last grant went
        #: Requests through :meth:`before_send`, those it held back, and its bucket
        #: (theoretical arrival time).
        self.sent = 0
        self.spaced = 0
        self._send_tat = -math.inf

    def __repr__(self) -> str:
        return f"RateLimit({self.key!r}, rate={self.rate:g}, burst={self.burst:g})"

    @property
    def pool(self) -> Pool:
        pool = self._pool()
        if pool is None:
            raise RuntimeError(f"rate limit {self.key!r}: its connection pool is gone")
        return pool

    def configure(self, *, rate: float, burst: float) -> None:
        """Take new settings (the next claim writes them to the shared row)."""
        check_limit(self.key, rate, burst)
        self.rate, self.burst = float(rate), float(burst)
        self.batch = batch_size(self.rate, self.burst)

    async def acquire(self) -> float:
        """Wait for this process's next slot; return the seconds waited.

        Holds no database connection while waiting. A slot voided meanwhile by a 429 (this
        process's or, after a long sleep, anyone's) is given up and a new one claimed. A waiter
        that wakes late goes one interval after the process's previous grant at the soonest.
        """
        started = time.monotonic()
        while True:
            async with self._lock:
                at = await self._next_slot()
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._blocked_until > time.monotonic():
                continue  # this process saw a 429 while we slept: the slot is void
            if delay > RECHECK_AFTER_S and await self._blocked_for() > 0:
                continue
            now = time.monotonic()
            if self._expired(at, now):
                self.expired += 1
                continue
            if now - at > 1.0 / self.rate:
                # Woke after its slot (the process starved of CPU, or its event loop busy):
                # paced behind the process's previous grant rather than sent with it.
                self.late += 1
                go = max(now, self._last_go + 1.0 / self.rate)
                self._last_go = go
                if go > now:
                    await asyncio.sleep(go - now)
            else:
                self._last_go = max(self._last_go, now)
            self.grants += 1
            waited = time.monotonic() - started
            self.waited_s += waited
            return waited

    async def before_send(self) -> float:
        """Space this process's requests on the key as they leave; return the seconds held.

        A grant is the slot a request may go at, but between the grant and the wire lie the
        lease check (a database round trip) and the event loop: under load they vary by
        hundreds of milliseconds, and requests granted apart left together (measured: 24-26
        arriving in one second at 20 a second, and 429s from a provider counting a second's
        worth). So the worker's request hook passes each request, its lease checked, through
        a bucket of this process with the key's rate and burst: requests that still keep the
        pace go at once, bunched ones leave one interval apart.
        """
        self.sent += 1
        interval = 1.0 / self.rate
        now = time.monotonic()
        go = max(now, self._send_tat - (self.burst - 1.0) * interval)
        self._send_tat = max(self._send_tat, go) + interval
        if go <= now:
            return 0.0
        self.spaced += 1
        await asyncio.sleep(go - now)
        return go - now

    async def throttled(self, retry_after: float) -> float:
        """A provider answered 429: block the key for everyone for ``retry_after`` seconds.

        Returns the seconds the key stays blocked (a longer block set by another process
        wins). The slots this process holds are dropped.
        """
        seconds = max(0.0, min(float(retry_after), 3600.0))
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                SQL["rate_limit_throttled"], {"key": self.key, "seconds": seconds}
            )
            row = await cursor.fetchone()
        blocked = float(row["blocked_s"]) if row is not None else seconds
        self._slots.clear()
        self._blocked_until = max(self._blocked_until, time.monotonic() + blocked)
        return blocked

    def _expired(self, slot: float, now: float) -> bool:
        """Whether ``slot`` passed too long ago to be used (:data:`KEEP_LATE_S`, or one
        interval at rates under two a second): a request going now would add to the
        provider's next second rather than its own."""
        return now - slot >= max(KEEP_LATE_S, 1.0 / self.rate)

    async def _next_slot(self) -> float:
        now = time.monotonic()
        while self._slots and self._expired(self._slots[0], now):  # too old to use
            self._slots.popleft()
        if not self._slots:
            await self._claim()
        return self._slots.popleft()

    async def _claim(self) -> None:
        n = self.batch
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                SQL["rate_limit_grant"],
                {"key": self.key, "rate": self.rate, "burst": self.burst, "n": n},
            )
            row = await cursor.fetchone()
        assert row is not None
        self.claimed += n
        received = time.monotonic()
        slots = plan_slots(float(row["tat_s"]), float(row["start_s"]), n, self.rate, self.burst)
        self._slots.extend(received + s for s in slots)

    async def _blocked_for(self) -> float:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(SQL["rate_limit_blocked_for"], {"key": self.key})
            row = await cursor.fetchone()
        return float(row["blocked_s"]) if row is not None else 0.0


_handles: weakref.WeakKeyDictionary[Pool, dict[str, RateLimit]] = weakref.WeakKeyDictionary()


def rate_limit(pool: Pool, key: str, *, rate: float, burst: float = 1.0) -> RateLimit:
    """The process's handle on ``key`` for this pool (created on first use), so every task
    of the process shares its claimed slots; new settings are taken on the way."""
    handles = _handles.setdefault(pool, {})
    handle = handles.get(key)
    if handle is None:
        handle = handles[key] = RateLimit(pool, key, rate=rate, burst=burst)
    elif (handle.rate, handle.burst) != (float(rate), float(burst)):
        handle.configure(rate=rate, burst=burst)
    return handle


@dataclass(frozen=True)
class RateLimitState:
    """A shared limit as ``orchestrator status`` shows it."""

    key: str
    rate: float
    burst: float
    #: Grants available at once now (0 while waiters queue).
    tokens: float
    #: Seconds until a new request would get a slot (the queue ahead of it, or a block).
    next_grant_in_s: float
    #: Set while a provider's 429 holds the key back.
    blocked_until: datetime | None
    grants_this_minute: int
    grants_last_minute: int
    granted: int
    throttled: int
    last_grant_at: datetime

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        for name in ("blocked_until", "last_grant_at"):
            if values[name] is not None:
                values[name] = values[name].isoformat()
        return values


async def rate_limit_states(conn: psycopg.AsyncConnection[DictRow]) -> list[RateLimitState]:
    """Every shared limit's state (the ``orchestrator_rate_limit_status`` view), by key."""
    cursor = await conn.execute(SQL["rate_limit_status"])
    rows: Sequence[DictRow] = await cursor.fetchall()
    return [
        RateLimitState(
            key=row["key"],
            rate=float(row["rate"]),
            burst=float(row["burst"]),
            tokens=float(row["tokens"]),
            next_grant_in_s=float(row["next_grant_in_s"]),
            blocked_until=row["blocked_until"],
            grants_this_minute=int(row["grants_this_minute"]),
            grants_last_minute=int(row["grants_last_minute"]),
            granted=int(row["granted"]),
            throttled=int(row["throttled"]),
            last_grant_at=row["last_grant_at"],
        )
        for row in rows
    ]
