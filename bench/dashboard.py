"""Dashboard: every console page and ``/metrics`` with a million finished jobs and runs.

Each page is requested through the real app (httpx's ASGI transport, no network) on a
freshly migrated database holding the growth family's seed of 3,000 finished jobs and runs
(the baseline), then again after the growth family's fill up to ``--growth-rows`` finished
jobs, events and agent_runs rows. Besides the fill, the database holds what the pages need
to show something real: 97 clients (the fill's payloads name "Client 0" … "Client 96") plus
one with no job at all, one old finished job with a dedupe key, and 200 old jobs delayed by
a year (unfinished jobs deep in the history).

Figures are the p95 of ``repeat`` requests per page (p50 beside it), after a warm-up; the
goal is an absolute one, 100 ms p95 per page, with the 3,000-job figure as the baseline.
The live endpoint (``/events``) runs no query of its own: a notification makes the open page
re-request itself, which is what is measured here.

:func:`measure_pages` takes any migrated and filled database, so a kept one can be
measured again while working on a page::

    timings = asyncio.run(measure_pages(url, repeat=20))
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from bench.growth import SEED_ROWS, _fill, _registry
from bench.harness import Bench, connect, percentile, progress
from bench.report import Goal, Result
from orchestrator import Orchestrator
from orchestrator._dashboard.app import create_app
from orchestrator._dashboard.config import DashboardSettings
from orchestrator._settings import load_settings
from workflows.board import PAGES

FAMILY = "dashboard"
GOAL_MS = 100.0
QUIET_CLIENT = "Bench quiet client"
DEDUPE_KEY = "bench:dedupe:old-job"


@dataclass(frozen=True)
class Ids:
    """Rows the pages are pointed at: a failed job, a busy client, a client with no job."""

    failed_job: int
    busy_client: int
    quiet_client: int


PAGES_MEASURED: dict[str, Callable[[Ids], str]] = {
    "overview": lambda ids: "/",
    "jobs (first page)": lambda ids: "/jobs",
    "jobs (workflow + state)": lambda ids: "/jobs?workflow=pt3&state=failed",
    "jobs (client filter)": lambda ids: "/jobs?client=Client+7",
    "jobs (delayed, old jobs)": lambda ids: "/jobs?state=delayed",
    "jobs (dedupe key of an old job)": lambda ids: f"/jobs?dedupe_key={DEDUPE_KEY}",
    "jobs (free-text search)": lambda ids: "/jobs?q=Client+7",
    "jobs (free-text search, no match)": lambda ids: "/jobs?q=no+such+text",
    "job detail": lambda ids: f"/jobs/{ids.failed_job}",
    "failures inbox": lambda ids: "/failures",
    "failures (one error type)": lambda ids: "/failures?error_type=RetryableError",
    "pipeline board": lambda ids: "/board",
    "client page": lambda ids: f"/board/clients/{ids.busy_client}",
    "client page (no job)": lambda ids: f"/board/clients/{ids.quiet_client}",
    "metrics": lambda ids: "/metrics",
    "readyz": lambda ids: "/readyz",
}

SEED_PAGES_DATA = (
    """
    INSERT INTO clients (name, tier, licensed_states)
    SELECT 'Client ' || i, 100, '{TX}' FROM generate_series(0, 96) AS i
    ON CONFLICT (name) DO NOTHING
    """,
    """
    INSERT INTO clients (name, tier, licensed_states) VALUES (%(quiet)s, 200, '{TX}')
    ON CONFLICT (name) DO NOTHING
    """,
    """
    INSERT INTO procrastinate_jobs (queue_name, task_name, args, status, attempts, queueing_lock)
    SELECT 'default', 'pt1', '{"payload": {"client": "Client 7", "month": "2025-12"}}',
           'succeeded', 1, %(dedupe)s
     WHERE NOT EXISTS (SELECT 1 FROM procrastinate_jobs WHERE queueing_lock = %(dedupe)s)
    """,
    # delayed a year: old jobs still unfinished, which the state filter must find at once
    """
    INSERT INTO procrastinate_jobs (queue_name, task_name, args, status, scheduled_at)
    SELECT 'default', 'pt2',
           jsonb_build_object('payload', jsonb_build_object('client', 'Client ' || i,
                                                            'month', '2027-01')),
           'todo', now() + interval '365 days'
      FROM generate_series(1, 200) AS i
     WHERE NOT EXISTS (SELECT 1 FROM procrastinate_jobs WHERE status = 'todo')
    """,
)


async def seed_pages_data(url: str) -> None:
    """The clients and the old dedupe-keyed job (before the fill, so the job is old)."""
    params = {"quiet": QUIET_CLIENT, "dedupe": DEDUPE_KEY}
    async with await connect(url) as conn:
        for statement in SEED_PAGES_DATA:
            await conn.execute(statement, params)


async def _ids(url: str) -> Ids:
    async with await connect(url) as conn:
        cursor = await conn.execute(
            """
            SELECT (SELECT job_id FROM agent_runs WHERE status = 'failed'
                     ORDER BY id LIMIT 1
                    OFFSET (SELECT count(*) / 2 FROM agent_runs WHERE status = 'failed'))
                       AS failed_job,
                   (SELECT id FROM clients WHERE name = 'Client 7') AS busy_client,
                   (SELECT id FROM clients WHERE name = %(quiet)s) AS quiet_client
            """,
            {"quiet": QUIET_CLIENT},
        )
        row = await cursor.fetchone()
    assert row is not None and None not in row, row
    return Ids(int(row[0]), int(row[1]), int(row[2]))


async def measure_pages(url: str, repeat: int, warmup: int = 3) -> dict[str, tuple[float, float]]:
    """(p50, p95) seconds per page of :data:`PAGES_MEASURED`, through the real app on ``url``."""
    ids = await _ids(url)
    orch = Orchestrator(load_settings(), registry=_registry(), schedules=[], database_url=url)
    await orch.open()
    app = create_app(
        orch,
        settings=DashboardSettings.of(orch.settings),
        pages=PAGES,
        manage_orchestrator=False,
        live=False,
    )
    app.state.console.metrics.ttl = 0.0  # measure the queries, not the cache
    timings: dict[str, tuple[float, float]] = {}
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            for name, path_of in PAGES_MEASURED.items():
                path = path_of(ids)
                samples = []
                for n in range(warmup + repeat):
                    started = time.perf_counter()
                    response = await http.get(path)
                    elapsed = time.perf_counter() - started
                    if response.status_code != 200:
                        raise RuntimeError(f"bench: {path} answered {response.status_code}")
                    if n >= warmup:
                        samples.append(elapsed)
                timings[name] = (percentile(samples, 50), percentile(samples, 95))
    finally:
        await orch.close()
    return timings


async def run(bench: Bench) -> list[Result]:
    rows = bench.growth_rows
    seed = min(SEED_ROWS, rows)
    repeat = bench.scale(20, 10)
    async with bench.database("dashboard") as url:
        await seed_pages_data(url)
        await _fill(url, seed)
        small = await measure_pages(url, repeat)
        progress(f"dashboard: baselines measured; filling to {rows:,} jobs")
        await _fill(url, rows - seed)
        full = await measure_pages(url, repeat)
    for name in PAGES_MEASURED:
        progress(
            f"dashboard: {name:36s} p50 {full[name][0] * 1000:7.1f} ms  "
            f"p95 {full[name][1] * 1000:7.1f} ms  (at {seed:,} jobs: p50 "
            f"{small[name][0] * 1000:.1f} ms, p95 {small[name][1] * 1000:.1f} ms)"
        )
    return [
        Result(
            FAMILY,
            f"{name} p95, {rows:,} finished jobs + runs",
            full[name][1] * 1000,
            "ms",
            baseline=small[name][1] * 1000,
            baseline_name=f"same page p95, {seed:,} jobs",
            goal=Goal(GOAL_MS, at_least=False),
            note=f"p95 of {repeat}; p50 {full[name][0] * 1000:.1f} ms",
            extra={"p50_ms": full[name][0] * 1000, "baseline_p50_ms": small[name][0] * 1000},
        )
        for name in PAGES_MEASURED
    ]
