"""Shared rate limits against PostgreSQL: one bucket for every pool, process and host.

Assertions are on counts of grants (never more than the burst plus the rate times the time
taken), with tolerance for a loaded machine; no assertion needs a grant to be fast.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import textwrap
import time

import pytest

from orchestrator import Orchestrator, RateLimit
from orchestrator._rate_limits import KEEP_LATE_S
from tests.fix_db import registry_for_tests, settings_for_tests, subprocess_env

KEY = "emailbison:http://127.0.0.1:9"


async def _open(database_url: str) -> Orchestrator:
    orch = Orchestrator(
        settings_for_tests(), registry=registry_for_tests(), schedules=[], database_url=database_url
    )
    await orch.open()
    return orch


async def _draw(limit: RateLimit, until: float, times: list[float]) -> None:
    while time.monotonic() < until:
        await limit.acquire()
        times.append(time.monotonic())


def _most_in_any_window(times: list[float], width: float) -> int:
    ordered = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(ordered):
        while t - ordered[start] > width:
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_two_pools_share_one_bucket(database_url: str) -> None:
    """Two orchestrators (two pools), three tasks each, draw from one key for ~1.5 s."""
    rate, burst = 20.0, 3.0
    first, second = await _open(database_url), await _open(database_url)
    try:
        times: list[float] = []
        started = time.monotonic()
        until = started + 1.5
        limits = [o.rate_limit(KEY, rate=rate, burst=burst) for o in (first, second)]
        assert limits[0] is not limits[1]
        await asyncio.gather(*(_draw(limit, until, times) for limit in limits for _ in range(3)))
        elapsed = time.monotonic() - started
        [state] = await first.rate_limits()
    finally:
        await first.close()
        await second.close()
    # Grants are reserved slots: at most the burst plus the rate over the time taken.
    assert len(times) <= burst + rate * elapsed + 1
    assert state.granted >= len(times)  # the last waiters' slots may be claimed, unused
    assert state.granted <= burst + rate * (elapsed + 0.5)
    # Both pools were served (oldest waiter first, whichever pool it is in).
    assert limits[0].grants > 3 and limits[1].grants > 3
    # Over any half second, no more than the burst plus half a second's rate (plus one for
    # the scheduler's jitter in noting the time).
    assert _most_in_any_window(times, 0.5) <= burst + rate * 0.5 + 2
    assert (state.key, state.rate, state.burst) == (KEY, rate, burst)


@pytest.mark.slow
def test_processes_share_one_bucket(database_url: str) -> None:
    """Three worker-like processes on one key: their grants together stay within the limit."""
    script = textwrap.dedent(
        f"""
        import asyncio, json, time
        from orchestrator import Orchestrator
        from tests.fix_db import registry_for_tests, settings_for_tests

        async def main():
            orch = Orchestrator(settings_for_tests(), registry=registry_for_tests(),
                                schedules=[], database_url={database_url!r})
            await orch.open()
            limit = orch.rate_limit({KEY!r}, rate=10, burst=1)
            times = []
            until = time.time() + 2.0
            while time.time() < until:
                await limit.acquire()
                times.append(time.time())
            await orch.close()
            print(json.dumps(times))

        asyncio.run(main())
        """
    )
    env = subprocess_env(database_url)
    procs = [
        subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    per_process = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    every = [t for times in per_process for t in times]
    span = max(every) - min(every)
    assert len(every) <= 1 + 10 * span + 1
    assert all(len(times) >= 2 for times in per_process)  # none starved
    assert _most_in_any_window(every, 1.0) <= 1 + 10 * 1.0 + 2


async def test_a_429_blocks_the_key_for_everyone(database_url: str) -> None:
    first, second = await _open(database_url), await _open(database_url)
    try:
        one = first.rate_limit(KEY, rate=50, burst=5)
        other = second.rate_limit(KEY, rate=50, burst=5)
        assert await one.acquire() < 0.5
        reported = time.monotonic()
        blocked = await one.throttled(1.2)
        assert 1.0 < blocked <= 1.2
        [state] = await first.rate_limits()
        assert state.blocked_until is not None and state.throttled == 1
        # The other pool (another process, in effect) waits for the block, then no burst:
        # three grants take the block plus two intervals at least (lower bounds only: a
        # loaded machine makes waits longer, never shorter).
        waited = await other.acquire()
        assert waited >= 1.0
        await other.acquire()
        await other.acquire()
        assert time.monotonic() - reported >= blocked + 2 / 50 - 0.005
        # A shorter Retry-After reported later does not shorten the block.
        await one.throttled(10)
        assert 0 < await second.rate_limit(KEY, rate=50, burst=5).throttled(0.1) <= 10
    finally:
        await first.close()
        await second.close()


async def test_a_slot_held_before_a_block_is_given_up(database_url: str) -> None:
    """A waiter who reserved a slot and slept past the block's start queues again."""
    first, second = await _open(database_url), await _open(database_url)
    try:
        one = first.rate_limit(KEY, rate=1, burst=1)
        other = second.rate_limit(KEY, rate=1, burst=1)
        await one.acquire()  # the bucket is now empty: the next slot is 1 s away
        waiting = asyncio.create_task(other.acquire())
        await asyncio.sleep(0.3)  # `other` holds the slot at ~1 s and sleeps
        await one.throttled(2.0)  # everyone blocked until ~2.3 s
        waited = await waiting
        assert waited >= 2.0  # it did not go at its old slot
    finally:
        await first.close()
        await second.close()


async def test_waiters_that_wake_late_keep_their_slots_and_go_one_by_one(
    database_url: str,
) -> None:
    """A process starved past its slots uses them, paced one interval apart: no slot is
    wasted (giving them up starved a busy process of grants) and none bunches with the next."""
    orch = await _open(database_url)
    try:
        limit = orch.rate_limit(KEY + "/late", rate=10, burst=1)
        await limit.acquire()  # the bucket is empty: the next slots are 100 and 200 ms away
        went: list[float] = []

        async def one() -> None:
            await limit.acquire()
            went.append(time.monotonic())

        waiting = [asyncio.create_task(one()), asyncio.create_task(one())]
        await asyncio.sleep(0.03)  # both hold a slot and sleep
        time.sleep(0.5)  # noqa: ASYNC251 - the event loop blocked past both slots, on purpose
        woke = time.monotonic()
        await asyncio.gather(*waiting)
        assert limit.late == 2
        assert limit.grants == limit.claimed == 3  # no slot given up, none claimed again
        first, second = sorted(went)
        assert second - first >= 0.1 - 0.005  # one interval apart, not together
        assert first - woke < 0.1  # the first went at once: its slot had passed
    finally:
        await orch.close()


async def _wake_late(database_url: str, key: str, rate: float, late_by: float) -> RateLimit:
    """Take the bucket's only token, then let a second waiter hold the next slot while the
    event loop is blocked until ``late_by`` seconds after that slot; the limit after it."""
    orch = await _open(database_url)
    try:
        limit = orch.rate_limit(key, rate=rate, burst=1)
        await limit.acquire()  # the bucket is empty: the next slot is an interval away
        waiting = asyncio.create_task(limit.acquire())
        await asyncio.sleep(0.03)  # it holds that slot and sleeps
        time.sleep(1.0 / rate - 0.03 + late_by)  # noqa: ASYNC251 - blocked on purpose
        await waiting
        return limit
    finally:
        await orch.close()


async def test_a_waiter_that_wakes_much_too_late_gives_its_slot_up(database_url: str) -> None:
    """A slot passed by more than KEEP_LATE_S is not used: a new one is claimed."""
    limit = await _wake_late(database_url, KEY + "/expired", rate=10, late_by=KEEP_LATE_S + 0.1)
    assert limit.expired == 1
    assert limit.grants == 2 and limit.claimed == 3


async def test_at_a_slow_rate_a_slot_is_kept_for_up_to_an_interval(database_url: str) -> None:
    """At one request a second, waking 0.7 s after the slot is within an interval: it goes."""
    limit = await _wake_late(database_url, KEY + "/slow", rate=1, late_by=0.7)
    assert limit.expired == 0
    assert limit.grants == limit.claimed == 2


async def test_waiters_are_served_oldest_first_across_clients(database_url: str) -> None:
    """A client with a long queue of requests does not starve one that comes later."""
    first, second = await _open(database_url), await _open(database_url)
    try:
        rate = 20.0
        busy = first.rate_limit(KEY, rate=rate, burst=1)
        late = second.rate_limit(KEY, rate=rate, burst=1)
        order: list[str] = []

        async def client(limit: RateLimit, name: str, requests: int, in_flight: int) -> None:
            gate = asyncio.Semaphore(in_flight)

            async def one() -> None:
                async with gate:
                    await limit.acquire()
                    order.append(name)

            await asyncio.gather(*(one() for _ in range(requests)))

        big = asyncio.create_task(client(busy, "busy", 30, 4))
        await asyncio.sleep(0.3)
        await client(late, "late", 5, 4)
        # The late client's five grants came while the busy one still had many to go.
        assert order.count("busy") < 30
        await big
        last_late = max(i for i, name in enumerate(order) if name == "late")
        assert last_late < len(order) - 5
    finally:
        await first.close()
        await second.close()


async def test_requests_that_bunch_after_their_grants_leave_spaced(database_url: str) -> None:
    """Requests granted apart but held up on the way (a slow lease check, a busy event loop)
    reach before_send together: they leave one interval apart, after a burst's worth."""
    orch = await _open(database_url)
    try:
        limit = orch.rate_limit(KEY + "/send", rate=10, burst=2)
        went: list[float] = []

        async def send() -> None:
            await limit.before_send()
            went.append(time.monotonic())

        started = time.monotonic()
        await asyncio.gather(*(send() for _ in range(5)))
        went.sort()
        assert went[1] - started < 0.05  # the burst of two goes at once
        gaps = [b - a for a, b in itertools.pairwise(went[1:])]
        assert all(gap >= 0.1 - 0.01 for gap in gaps), gaps  # then one interval apart
        assert limit.spaced == 3
        # A request keeping the pace is not held back.
        await asyncio.sleep(0.35)
        assert await limit.before_send() == 0.0
    finally:
        await orch.close()


async def test_bad_settings_are_refused(orch: Orchestrator) -> None:
    with pytest.raises(ValueError, match="rate must be a positive"):
        orch.rate_limit(KEY, rate=0)
    with pytest.raises(ValueError, match="burst must be at least 1"):
        orch.rate_limit(KEY, rate=1, burst=0.5)
    with pytest.raises(ValueError, match="1 to 300 characters"):
        orch.rate_limit("", rate=1)
