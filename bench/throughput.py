"""Throughput: no-op jobs/s through real worker processes, ours against bare procrastinate.

Ours: ``orchestrator worker --processes P`` running ``bench_noop`` (a run row in agent_runs,
the job transaction, the runner, the maintenance tasks). Baseline: P processes of
``python -m bench.bare_app`` running a bare procrastinate no-op task with the same
concurrency, polling interval, pool and LISTEN/NOTIFY, on a procrastinate-only database.

The workers are started first and wait idle; then every job is enqueued (batches of 1,000)
and the rate is taken from procrastinate's own event timestamps: jobs / (last ``succeeded``
event - first ``started`` event). Start-up and shutdown therefore do not count. The CPU
time of the worker processes (and of the embedded PostgreSQL server) per job is reported
too: it varies less than the rate when other programs share the machine. With one process
ours and the baseline take turns for a few rounds; the best of each counts.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from datetime import datetime

from bench import bare_app
from bench.harness import Bench, connect, progress
from bench.processes import (
    Processes,
    bare_worker,
    orchestrator_worker,
    server_cpu_seconds,
    wait_for_jobs,
    wait_for_workers,
    worker_env,
)
from bench.report import Goal, Result
from bench.workflows import registry
from orchestrator import Orchestrator
from orchestrator._enqueue import JobRequest
from orchestrator._settings import load_settings

FAMILY = "throughput"
BATCH = 1_000
WINDOW_QUERY = """
SELECT count(*) FILTER (WHERE e.type = 'succeeded') AS done,
       min(e.at) FILTER (WHERE e.type = 'started') AS first_start,
       max(e.at) FILTER (WHERE e.type = 'succeeded') AS last_end
  FROM procrastinate_events e
  JOIN procrastinate_jobs j ON j.id = e.job_id
 WHERE j.task_name = %s
"""


async def _rate(url: str, task_name: str, jobs: int) -> float:
    async with await connect(url) as conn:
        cursor = await conn.execute(WINDOW_QUERY, [task_name])
        row = await cursor.fetchone()
    assert row is not None
    done, first_start, last_end = int(row[0]), row[1], row[2]
    if done != jobs or not isinstance(first_start, datetime) or not isinstance(last_end, datetime):
        raise RuntimeError(f"bench: {done} of {jobs} {task_name} jobs succeeded")
    return jobs / max((last_end - first_start).total_seconds(), 1e-6)


async def _enqueue_ours(url: str, jobs: int) -> None:
    orch = Orchestrator(load_settings(), registry=registry(), schedules=[], database_url=url)
    await orch.open()
    try:
        for start in range(0, jobs, BATCH):
            count = min(BATCH, jobs - start)
            await orch.enqueue_many([JobRequest("bench_noop", {}) for _ in range(count)])
    finally:
        await orch.close()


async def _enqueue_bare(url: str, jobs: int) -> None:
    app = bare_app.make_app(url)
    async with app.open_async():
        task = app.tasks[bare_app.NOOP]
        for start in range(0, jobs, BATCH):
            count = min(BATCH, jobs - start)
            await task.batch_defer_async(*[bare_app.ARGS for _ in range(count)])


@dataclass(frozen=True)
class Measured:
    rate: float
    worker_cpu_ms: float  # worker processes' CPU per job
    server_cpu_ms: float | None  # PostgreSQL's CPU per job (embedded server only)


async def measure(bench: Bench, *, ours: bool, processes: int, jobs: int) -> Measured:
    """Jobs/s (and CPU per job) of ``processes`` worker processes draining ``jobs`` jobs."""
    kind = "ours" if ours else "bare"
    async with (
        bench.database(f"tp_{kind}_{processes}", schema="full" if ours else "bare") as url,
        Processes() as procs,
    ):
        env = worker_env(url)
        if ours:
            procs.start(orchestrator_worker(processes=processes), env, f"tp_ours_{processes}")
        else:
            for n in range(processes):
                procs.start(bare_worker(), env, f"tp_bare_{processes}_{n}")
        await wait_for_workers(url, processes, procs)
        await asyncio.sleep(0.5)  # start-up work (recovery sweep, periodic tasks) is not measured
        worker_cpu, server_cpu = procs.cpu_seconds(), server_cpu_seconds(bench)
        if ours:
            await _enqueue_ours(url, jobs)
        else:
            await _enqueue_bare(url, jobs)
        task_name = "bench_noop" if ours else bare_app.NOOP
        await wait_for_jobs(url, task_name, procs, timeout=60 + jobs / 20, interval=0.05)
        worker_cpu = procs.cpu_seconds() - worker_cpu
        server_after = server_cpu_seconds(bench)
        rate = await _rate(url, task_name, jobs)
    measured = Measured(
        rate=rate,
        worker_cpu_ms=1000 * worker_cpu / jobs,
        server_cpu_ms=None
        if server_cpu is None or server_after is None
        else 1000 * (server_after - server_cpu) / jobs,
    )
    progress(
        f"throughput: {kind}, {processes} process(es): {rate:,.0f} jobs/s, worker CPU "
        f"{measured.worker_cpu_ms:.2f} ms/job, server CPU {measured.server_cpu_ms or 0:.2f} ms/job"
    )
    return measured


def _best(runs: list[Measured]) -> Measured:
    """The fastest rate and the lowest CPU costs seen (other load only adds to them)."""
    server = [m.server_cpu_ms for m in runs if m.server_cpu_ms is not None]
    return Measured(
        rate=max(m.rate for m in runs),
        worker_cpu_ms=min(m.worker_cpu_ms for m in runs),
        server_cpu_ms=min(server) if server else None,
    )


async def run(bench: Bench) -> list[Result]:
    jobs = bench.scale(3_000, 500)
    concurrency = load_settings().concurrency
    progress(f"throughput: {jobs} no-op jobs per measurement, concurrency {concurrency}")
    results = []
    for processes in (1, 2, 4):
        rounds = bench.scale(3, 1) if processes == 1 else 1
        bare_runs: list[Measured] = []
        our_runs: list[Measured] = []
        for _ in range(rounds):  # interleaved
            bare_runs.append(await measure(bench, ours=False, processes=processes, jobs=jobs))
            our_runs.append(await measure(bench, ours=True, processes=processes, jobs=jobs))
        bare, ours = _best(bare_runs), _best(our_runs)
        label = f"{processes} worker process{'es' if processes > 1 else ''}"
        note = f"concurrency {concurrency} per process, {jobs} jobs, best of {rounds}"
        results.append(
            Result(
                FAMILY,
                f"no-op workflow, {label}",
                ours.rate,
                "jobs/s",
                baseline=bare.rate,
                baseline_name=f"bare procrastinate no-op task, {label}",
                goal=Goal(0.85, at_least=True, on_ratio=True) if processes == 1 else None,
                note=note,
                extra={
                    "ours": [asdict(m) for m in our_runs],
                    "bare": [asdict(m) for m in bare_runs],
                },
            )
        )
        if processes == 1:
            results.append(
                Result(
                    FAMILY,
                    f"worker CPU per no-op job, {label}",
                    ours.worker_cpu_ms,
                    "ms",
                    baseline=bare.worker_cpu_ms,
                    baseline_name="bare procrastinate worker",
                    note=note + "; less sensitive to other load than the rate",
                )
            )
            if ours.server_cpu_ms is not None and bare.server_cpu_ms is not None:
                results.append(
                    Result(
                        FAMILY,
                        f"PostgreSQL CPU per no-op job, {label}",
                        ours.server_cpu_ms,
                        "ms",
                        baseline=bare.server_cpu_ms,
                        baseline_name="bare procrastinate worker",
                        note=note + "; all server processes, enqueue included",
                    )
                )
    return results
