"""Dashboard: the console's pages and /metrics with a million finished jobs.

Each page is requested through the app (httpx's ASGI transport, no network) on a freshly
migrated database (the baseline, after the growth family's seed of 3,000 jobs), then again
after ``--growth-rows`` finished jobs, events and agent_runs rows were bulk-inserted (the
growth family's fill). Goal: every page within 2x of the small database, and under the
console's 2 s statement timeout. Medians of ``repeat`` requests after a warm-up.
"""

from __future__ import annotations

import httpx

from bench.growth import SEED_ROWS, _fill, _registry
from bench.harness import Bench, progress, time_calls
from bench.report import Goal, Result
from orchestrator import Orchestrator
from orchestrator._dashboard.app import create_app
from orchestrator._dashboard.config import DashboardSettings
from orchestrator._settings import load_settings
from workflows.board import PAGES

FAMILY = "dashboard"
PATHS = {
    "overview": "/",
    "jobs (first page)": "/jobs",
    "jobs (workflow + state)": "/jobs?workflow=pt3&state=failed",
    "jobs (client filter)": "/jobs?client=Client+7",
    "failures inbox": "/failures",
    "pipeline board": "/board",
    "metrics": "/metrics",
}


async def _measure(http: httpx.AsyncClient, repeat: int) -> dict[str, float]:
    medians = {}
    for name, path in PATHS.items():

        async def call(path: str = path) -> None:
            response = await http.get(path)
            if response.status_code != 200:
                raise RuntimeError(f"bench: {path} answered {response.status_code}")

        medians[name] = await time_calls(call, repeat, warmup=2)
    return medians


async def run(bench: Bench) -> list[Result]:
    rows = bench.growth_rows
    seed = min(SEED_ROWS, rows)
    repeat = bench.scale(30, 10)
    async with bench.database("dashboard") as url:
        orch = Orchestrator(load_settings(), registry=_registry(), schedules=[], database_url=url)
        await orch.open()
        settings = DashboardSettings.of(orch.settings)
        app = create_app(
            orch, settings=settings, pages=PAGES, manage_orchestrator=False, live=False
        )
        app.state.console.metrics.ttl = 0.0  # measure the queries, not the cache
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
                await _fill(url, seed)
                small = await _measure(http, repeat)
                progress(f"dashboard: baselines measured; filling to {rows:,} jobs")
                await _fill(url, rows - seed)
                full = await _measure(http, repeat)
        finally:
            await orch.close()
    return [
        Result(
            FAMILY,
            f"{name}, {rows:,} finished jobs",
            full[name] * 1000,
            "ms",
            baseline=small[name] * 1000,
            baseline_name=f"same page, {seed:,} jobs",
            goal=Goal(2.0, at_least=False, on_ratio=True),
            note=f"median of {repeat}",
        )
        for name in PATHS
    ]
