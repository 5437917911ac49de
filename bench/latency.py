"""Latency: defer → start on an idle worker, and how late a retry starts after it is due.

Every time is read from the database clock, so the bench process and the worker never
compare clocks:

- defer → start, ours: ``agent_runs.started_at`` (the attempt's ``running`` row, written just
  before the workflow runs) minus the job's ``deferred`` event (written by the enqueue
  INSERT). Baseline: a bare procrastinate task's ``started`` event minus its ``deferred``
  event. Jobs are enqueued one at a time, 50 ms apart, so the worker is idle each time and
  is woken by LISTEN/NOTIFY.
- retry lateness, ours: attempt 2's ``started_at`` minus (attempt 1's ``finished_at`` + the
  retry delay it recorded). Baseline: the bare task's second ``started`` event minus the
  ``scheduled_at`` its retry was given. Retries are found by polling (``poll_interval``,
  0.5 s by default) in both cases; the delay is 1 s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import LiteralString

from bench import bare_app
from bench.harness import Bench, connect, percentile, progress
from bench.processes import (
    Processes,
    bare_worker,
    orchestrator_worker,
    wait_for_jobs,
    wait_for_workers,
    worker_env,
)
from bench.report import Goal, Result
from bench.workflows import registry
from orchestrator import Orchestrator
from orchestrator._settings import load_settings

FAMILY = "latency"
GAP_S = 0.05
RETRY_GAP_S = 0.137  # spreads the retries' due times over the polling interval

OURS_START_MS = """
SELECT 1000 * extract(epoch FROM r.started_at - e.at)
  FROM agent_runs r
  JOIN procrastinate_events e ON e.job_id = r.job_id AND e.type = 'deferred'
 WHERE r.workflow = 'bench_noop' AND r.attempt = 1
"""
BARE_START_MS = """
SELECT 1000 * extract(epoch FROM s.at - d.at)
  FROM procrastinate_jobs j
  JOIN procrastinate_events d ON d.job_id = j.id AND d.type = 'deferred'
  JOIN procrastinate_events s ON s.job_id = j.id AND s.type = 'started'
 WHERE j.task_name = 'bare_noop'
"""
OURS_RETRY_LATE_S = """
SELECT extract(epoch FROM r2.started_at - r1.finished_at) - (r1.error ->> 'retry_in_s')::float
  FROM agent_runs r1
  JOIN agent_runs r2 ON r2.job_id = r1.job_id AND r2.attempt = 2
 WHERE r1.workflow = 'bench_flaky' AND r1.attempt = 1
"""
BARE_RETRY_LATE_S = """
SELECT extract(epoch FROM max(e.at) FILTER (WHERE e.type = 'started')
                        - max(e.at) FILTER (WHERE e.type = 'scheduled'))
  FROM procrastinate_jobs j
  JOIN procrastinate_events e ON e.job_id = j.id
 WHERE j.task_name = 'bare_flaky'
 GROUP BY j.id
"""

Enqueue = Callable[[str], Awaitable[object]]


async def _values(url: str, query: LiteralString) -> list[float]:
    async with await connect(url) as conn:
        cursor = await conn.execute(query)
        return [float(row[0]) for row in await cursor.fetchall()]


async def _measure(
    bench: Bench,
    *,
    ours: bool,
    samples: int,
    retries: int,
) -> tuple[list[float], list[float]]:
    """(defer → start in ms, retry lateness in s) for one kind of worker."""
    kind = "ours" if ours else "bare"
    noop, flaky = ("bench_noop", "bench_flaky") if ours else (bare_app.NOOP, bare_app.FLAKY)
    async with (
        bench.database(f"lat_{kind}", schema="full" if ours else "bare") as url,
        Processes() as procs,
    ):
        procs.start(
            orchestrator_worker() if ours else bare_worker(), worker_env(url), f"lat_{kind}"
        )
        await wait_for_workers(url, 1, procs)
        async with _Enqueuer(url, ours) as enqueue:
            await asyncio.sleep(1.0)  # let the worker settle (start-up recovery, periodic tasks)
            for _ in range(samples):
                await enqueue(noop)
                await asyncio.sleep(GAP_S)
            await wait_for_jobs(url, noop, procs, timeout=60, interval=0.05)
            for _ in range(retries):
                await enqueue(flaky)
                await asyncio.sleep(RETRY_GAP_S)
            await wait_for_jobs(url, flaky, procs, timeout=60 + retries, interval=0.1)
        starts = await _values(url, OURS_START_MS if ours else BARE_START_MS)
        lateness = await _values(url, OURS_RETRY_LATE_S if ours else BARE_RETRY_LATE_S)
    if len(starts) != samples or len(lateness) != retries:
        raise RuntimeError(f"bench: latency ({kind}) lost samples: {len(starts)}, {len(lateness)}")
    progress(
        f"latency: {kind}: defer → start p50 {percentile(starts, 50):.1f} ms, "
        f"retry late p50 {percentile(lateness, 50):.3f} s"
    )
    return starts, lateness


class _Enqueuer:
    """``async with _Enqueuer(url, ours) as enqueue: await enqueue(task_name)``."""

    def __init__(self, url: str, ours: bool) -> None:
        self.url = url
        self.ours = ours
        self._close: Callable[[], Awaitable[None]] | None = None

    async def __aenter__(self) -> Enqueue:
        if self.ours:
            orch = Orchestrator(
                load_settings(), registry=registry(), schedules=[], database_url=self.url
            )
            await orch.open()
            self._close = orch.close

            async def ours(name: str) -> object:
                return await orch.enqueue_workflow(name, {})

            return ours
        app = bare_app.make_app(self.url)
        await app.open_async()
        self._close = app.close_async

        async def bare(name: str) -> object:
            return await app.tasks[name].defer_async(payload={})

        return bare

    async def __aexit__(self, *exc: object) -> None:
        if self._close is not None:
            await self._close()


async def run(bench: Bench) -> list[Result]:
    samples = bench.scale(200, 40)
    retries = bench.scale(20, 6)
    progress(f"latency: {samples} jobs on an idle worker, {retries} retries")
    bare_start, bare_late = await _measure(bench, ours=False, samples=samples, retries=retries)
    our_start, our_late = await _measure(bench, ours=True, samples=samples, retries=retries)
    note = f"{samples} jobs, {GAP_S * 1000:.0f} ms apart, one idle worker"
    retry_note = f"{retries} retries due 1 s after the failure, poll interval"
    retry_note += f" {load_settings().poll_interval:g} s"
    return [
        Result(
            FAMILY,
            "defer → start p50",
            percentile(our_start, 50),
            "ms",
            baseline=percentile(bare_start, 50),
            baseline_name="bare procrastinate task",
            goal=Goal(10, at_least=False),
            note=note,
        ),
        Result(
            FAMILY,
            "defer → start p99",
            percentile(our_start, 99),
            "ms",
            baseline=percentile(bare_start, 99),
            baseline_name="bare procrastinate task",
            goal=Goal(50, at_least=False),
            note=note,
        ),
        Result(
            FAMILY,
            "retry start after due, p50",
            percentile(our_late, 50),
            "s",
            baseline=percentile(bare_late, 50),
            baseline_name="bare procrastinate retry",
            note=retry_note,
        ),
        Result(
            FAMILY,
            "retry start after due, max",
            max(our_late),
            "s",
            baseline=max(bare_late),
            baseline_name="bare procrastinate retry",
            goal=Goal(1.0, at_least=False),
            note=retry_note,
        ),
    ]
