"""Throughput: no-op jobs/s through real worker processes, ours against bare procrastinate.

Ours: ``orchestrator worker --processes P`` running ``bench_noop`` (a run row in agent_runs,
the job transaction, the runner, the maintenance tasks). Baseline: P processes of
``python -m bench.bare_app`` running a bare procrastinate no-op task with the same
concurrency, polling interval, pool and LISTEN/NOTIFY, on a procrastinate-only database.

The workers are started first and wait idle; then every job is enqueued (batches of 1,000)
and the rate is taken from procrastinate's own event timestamps: jobs / (last ``succeeded``
event - first ``started`` event). Start-up and shutdown therefore do not count. The CPU
time of the worker processes (and of the embedded PostgreSQL server) per job is reported
too: it varies less than the rate when other programs share the machine.

At 1, 2 and 4 processes ours and the baseline take turns for 3 rounds (1 with ``--quick``)
and the median of each counts; the machine's load (1-minute load average) is printed beside
every measurement and kept in the results, since other programs on the machine move both
figures (the ratio, measured in turns, moves much less).
"""

from __future__ import annotations

import asyncio
import os
import statistics
from dataclasses import asdict, dataclass
from datetime import datetime

from bench import bare_app
from bench.harness import Bench, connect, progress
from bench.processes import (
    CpuClock,
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
    load: float  # the machine's 1-minute load average when the measurement ended


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
        clock = CpuClock(procs, bench)
        if ours:
            await _enqueue_ours(url, jobs)
        else:
            await _enqueue_bare(url, jobs)
        task_name = "bench_noop" if ours else bare_app.NOOP
        await wait_for_jobs(url, task_name, procs, timeout=60 + jobs / 20, interval=0.05)
        cpu = clock.spent()
        rate = await _rate(url, task_name, jobs)
    measured = Measured(
        rate=rate,
        worker_cpu_ms=1000 * cpu.workers / jobs,
        server_cpu_ms=None if cpu.server is None else 1000 * cpu.server / jobs,
        load=os.getloadavg()[0],
    )
    server = "" if measured.server_cpu_ms is None else f", server CPU {measured.server_cpu_ms:.2f}"
    progress(
        f"throughput: {kind}, {processes} process(es): {rate:,.0f} jobs/s, worker CPU "
        f"{measured.worker_cpu_ms:.2f} ms/job{server} (load {measured.load:.2f})"
    )
    return measured


def _median(runs: list[Measured]) -> Measured:
    """The median of each figure over the rounds (one slow round, when other programs took
    the CPUs, moves it less than a mean; a best-of hides how often that happens)."""
    server = [m.server_cpu_ms for m in runs if m.server_cpu_ms is not None]
    return Measured(
        rate=statistics.median(m.rate for m in runs),
        worker_cpu_ms=statistics.median(m.worker_cpu_ms for m in runs),
        server_cpu_ms=statistics.median(server) if server else None,
        load=statistics.median(m.load for m in runs),
    )


async def run(bench: Bench) -> list[Result]:
    jobs = bench.scale(3_000, 500)
    rounds = bench.scale(3, 1)
    concurrency = load_settings().concurrency
    progress(
        f"throughput: {jobs} no-op jobs per measurement, concurrency {concurrency}, "
        f"median of {rounds} round(s)"
    )
    results = []
    for processes in (1, 2, 4):
        bare_runs: list[Measured] = []
        our_runs: list[Measured] = []
        for _ in range(rounds):  # interleaved: both see the same load
            bare_runs.append(await measure(bench, ours=False, processes=processes, jobs=jobs))
            our_runs.append(await measure(bench, ours=True, processes=processes, jobs=jobs))
        bare, ours = _median(bare_runs), _median(our_runs)
        loads = ", ".join(f"{m.load:.1f}" for m in [*bare_runs, *our_runs])
        label = f"{processes} worker process{'es' if processes > 1 else ''}"
        note = (
            f"concurrency {concurrency} per process, {jobs} jobs, median of {rounds}; "
            f"machine load {loads}"
        )
        extra = {
            "ours": [asdict(m) for m in our_runs],
            "bare": [asdict(m) for m in bare_runs],
            "round_ratios": [o.rate / b.rate for o, b in zip(our_runs, bare_runs, strict=True)],
        }
        progress(
            f"throughput: {label}: ours {ours.rate:,.0f} jobs/s, bare {bare.rate:,.0f} jobs/s, "
            f"ratio {ours.rate / bare.rate:.2f} (load {loads})"
        )
        results.append(
            Result(
                FAMILY,
                f"no-op workflow, {label}",
                ours.rate,
                "jobs/s",
                baseline=bare.rate,
                baseline_name=f"bare procrastinate no-op task, {label}",
                goal=Goal(0.85, at_least=True, on_ratio=True),
                note=note,
                extra=extra,
            )
        )
        if processes in (1, 4):
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
        if processes == 1 and ours.server_cpu_ms is not None and bare.server_cpu_ms is not None:
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
