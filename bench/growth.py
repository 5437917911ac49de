"""Growth: fetch and status queries with a million finished jobs, against an empty database.

Each query is timed on a freshly migrated database (the baseline), then again after
``--growth-rows`` finished jobs (with their ``deferred`` and final events) and as many
agent_runs rows have been bulk-inserted with ``generate_series`` and the tables vacuumed and
analysed, as autovacuum would have done. The goal: every figure within 2x of the empty one.

- fetch: procrastinate's ``fetch_job`` of one new job (the job is enqueued and finished
  outside the timing);
- the status answers through the public API on the pooled connections (prepared after a
  few calls, as in a long-running application): ``queue_status``, ``list_runs`` without a
  filter, by workflow, by status, by both, and ``get_job``.

Medians of ``repeat`` calls after a warm-up.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from procrastinate import jobs

from bench.harness import Bench, connect, progress, time_calls
from bench.report import Goal, Result
from bench.workflows import WORKFLOWS as BENCH_WORKFLOWS
from orchestrator import Orchestrator
from orchestrator._registry import Registry
from orchestrator._settings import load_settings
from workflows.catalog import WORKFLOWS as PIPELINE_WORKFLOWS

FAMILY = "growth"
WORKFLOW_NAMES = ("pt1", "pt2", "pt3", "pt4", "pt5", "bench_noop")
#: Jobs in the baseline database: with the fill's mix, every list_runs filter measured finds
#: a full page (20 runs), so the baseline returns as many rows as the big database does.
SEED_ROWS = 3_000

FILL_JOBS = """
INSERT INTO procrastinate_jobs (queue_name, task_name, args, status, attempts)
SELECT 'default',
       (%(names)s::text[])[1 + i %% 6],
       jsonb_build_object('payload',
                          jsonb_build_object('client', 'Client ' || (i %% 97), 'month', '2026-01')),
       CASE WHEN i %% 50 = 0 THEN 'failed'
            WHEN i %% 199 = 0 THEN 'cancelled'
            ELSE 'succeeded' END::procrastinate_job_status,
       CASE WHEN i %% 50 = 0 THEN 3 ELSE 1 END
  FROM generate_series(1, %(rows)s) AS i
"""
FILL_EVENTS = """
INSERT INTO procrastinate_events (job_id, type, at)
SELECT j.id, e.type::procrastinate_job_event_type,
       now() - make_interval(secs => ((%(last)s - j.id) * 2.5)::float8) + e.offset_
  FROM procrastinate_jobs j
 CROSS JOIN LATERAL (VALUES ('deferred', interval '0'),
                            (CASE j.status WHEN 'succeeded' THEN 'succeeded'
                                           WHEN 'failed' THEN 'failed'
                                           ELSE 'cancelled' END, interval '2 seconds'))
       AS e(type, offset_)
 WHERE j.id > %(first)s
"""
FILL_RUNS = """
INSERT INTO agent_runs (job_id, workflow, attempt, status, input, output, error, started_at,
                        finished_at, worker, queue)
SELECT j.id, j.task_name, j.attempts,
       CASE j.status WHEN 'succeeded' THEN 'succeeded'
                     WHEN 'failed' THEN 'failed'
                     ELSE 'cancelled' END::agent_run_status,
       j.args -> 'payload',
       CASE WHEN j.status = 'succeeded' THEN '{"people": 1234, "zips": 17}'::jsonb END,
       CASE WHEN j.status <> 'succeeded'
            THEN jsonb_build_object('type', 'RetryableError', 'message', 'bench failure',
                                    'traceback', repeat('  File "x.py", line 1, in run\n', 12))
       END,
       t.started, t.started + interval '2 seconds', 'bench-host:1', 'default'
  FROM procrastinate_jobs j
 CROSS JOIN LATERAL (
       SELECT now() - make_interval(secs => ((%(last)s - j.id) * 2.5)::float8) AS started) t
 WHERE j.id > %(first)s
"""

Call = Callable[[], Awaitable[object]]


def _registry() -> Registry:
    return Registry([*PIPELINE_WORKFLOWS, *BENCH_WORKFLOWS])


async def _fetch_probe(orch: Orchestrator, repeat: int) -> float:
    """Median seconds of procrastinate's fetch of one new job."""
    manager = orch.app.job_manager
    worker_id = await manager.register_worker()
    samples = []
    try:
        for n in range(repeat + 5):
            await orch.enqueue_workflow("bench_noop", {})
            started = time.perf_counter()
            job = await manager.fetch_job(queues=None, worker_id=worker_id)
            elapsed = time.perf_counter() - started
            if job is None:
                raise RuntimeError("bench: the probe job was not fetched")
            await manager.finish_job(job, status=jobs.Status.SUCCEEDED, delete_job=False)
            if n >= 5:
                samples.append(elapsed)
    finally:
        await manager.unregister_worker(worker_id)
    samples.sort()
    return samples[len(samples) // 2]


async def _measure(orch: Orchestrator, repeat: int) -> dict[str, float]:
    """Median seconds per query, keyed by the benchmark's name."""
    medians = {"fetch a new job (procrastinate)": await _fetch_probe(orch, repeat)}
    job_id = await _some_job(orch)
    calls: dict[str, Call] = {
        "queue_status": orch.queue_status,
        "list_runs (no filter)": orch.list_runs,
        "list_runs (workflow)": lambda: orch.list_runs(workflow="pt3"),
        "list_runs (status)": lambda: orch.list_runs(status="failed"),
        "list_runs (workflow + status)": lambda: orch.list_runs(workflow="pt3", status="failed"),
        "get_job": lambda: orch.get_job(job_id),
    }
    for name, call in calls.items():
        medians[name] = await time_calls(call, repeat)
    return medians


async def _some_job(orch: Orchestrator) -> int:
    async with orch.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT id FROM procrastinate_jobs WHERE task_name = 'bench_noop' "
            "ORDER BY id LIMIT 1 OFFSET (SELECT count(*) / 2 FROM procrastinate_jobs "
            "WHERE task_name = 'bench_noop')"
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(row["id"])


async def _fill(url: str, rows: int) -> None:
    started = time.perf_counter()
    async with await connect(url) as conn:
        cursor = await conn.execute("SELECT COALESCE(max(id), 0) FROM procrastinate_jobs")
        first = await _scalar(cursor)
        await conn.execute(FILL_JOBS, {"names": list(WORKFLOW_NAMES), "rows": rows})
        cursor = await conn.execute("SELECT max(id) FROM procrastinate_jobs")
        last = await _scalar(cursor)
        params = {"first": first, "last": last}
        await conn.execute(FILL_EVENTS, params)
        await conn.execute(FILL_RUNS, params)
        inserted = time.perf_counter() - started
        await conn.execute("VACUUM ANALYZE procrastinate_jobs, procrastinate_events, agent_runs")
    progress(
        f"growth: {rows:,} jobs, {2 * rows:,} events, {rows:,} runs inserted in "
        f"{inserted:.1f} s, vacuumed in {time.perf_counter() - started - inserted:.1f} s"
    )


async def _scalar(cursor: Any) -> int:
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def run(bench: Bench) -> list[Result]:
    rows = bench.growth_rows
    seed = min(SEED_ROWS, rows)
    repeat = bench.scale(200, 50)
    async with bench.database("growth") as url:
        orch = Orchestrator(load_settings(), registry=_registry(), schedules=[], database_url=url)
        await orch.open()
        try:
            empty = await _measure(orch, repeat)
            await _fill(url, seed)
            small = await _measure(orch, repeat)
            progress(f"growth: baselines measured; filling to {rows:,} jobs")
            await _fill(url, rows - seed)
            full = await _measure(orch, repeat)
        finally:
            await orch.close()
    return [
        Result(
            FAMILY,
            f"{name}, {rows:,} finished jobs",
            full[name] * 1000,
            "ms",
            baseline=small[name] * 1000,
            baseline_name=f"same query, {seed:,} jobs (a full page per filter)",
            goal=Goal(2.0, at_least=False, on_ratio=True),
            note=f"median of {repeat}",
            extra={"empty_database_ms": empty[name] * 1000},
        )
        for name in empty
    ]
