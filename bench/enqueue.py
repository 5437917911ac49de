"""Enqueue: jobs/s one at a time and in batches, against procrastinate's own defer calls.

Ours: ``Orchestrator.enqueue_workflow`` in a loop, and ``Orchestrator.enqueue_many`` with
1,000 :class:`~orchestrator._enqueue.JobRequest` per call (payloads validated, one INSERT per
call). Baseline: a bare procrastinate task's ``defer_async`` and ``batch_defer_async`` with
the same pool settings, on a database holding only procrastinate's schema. No worker runs.
Ours and the baseline take turns, each round on a fresh database, and the best round of
each counts (other load on the machine can only slow a round down).
"""

from __future__ import annotations

import time

from bench import bare_app
from bench.harness import Bench, progress
from bench.report import Goal, Result
from bench.workflows import registry
from orchestrator import Orchestrator
from orchestrator._enqueue import JobRequest
from orchestrator._settings import load_settings

FAMILY = "enqueue"
BATCH = 1_000
WARMUP = 50


async def _ours(url: str, singles: int, batched: int) -> tuple[float, float]:
    orch = Orchestrator(load_settings(), registry=registry(), schedules=[], database_url=url)
    await orch.open()
    try:
        for _ in range(WARMUP):
            await orch.enqueue_workflow("bench_noop", {})
        await orch.enqueue_many([JobRequest("bench_noop", {}) for _ in range(BATCH)])

        started = time.perf_counter()
        for _ in range(singles):
            await orch.enqueue_workflow("bench_noop", {})
        one_at_a_time = singles / (time.perf_counter() - started)

        started = time.perf_counter()
        for _ in range(batched // BATCH):
            await orch.enqueue_many([JobRequest("bench_noop", {}) for _ in range(BATCH)])
        in_batches = (batched // BATCH * BATCH) / (time.perf_counter() - started)
    finally:
        await orch.close()
    return one_at_a_time, in_batches


async def _bare(url: str, singles: int, batched: int) -> tuple[float, float]:
    app = bare_app.make_app(url)
    task = app.tasks[bare_app.NOOP]
    async with app.open_async():
        for _ in range(WARMUP):
            await task.defer_async(payload={})
        await task.batch_defer_async(*[bare_app.ARGS for _ in range(BATCH)])

        started = time.perf_counter()
        for _ in range(singles):
            await task.defer_async(payload={})
        one_at_a_time = singles / (time.perf_counter() - started)

        started = time.perf_counter()
        for _ in range(batched // BATCH):
            await task.batch_defer_async(*[bare_app.ARGS for _ in range(BATCH)])
        in_batches = (batched // BATCH * BATCH) / (time.perf_counter() - started)
    return one_at_a_time, in_batches


async def run(bench: Bench) -> list[Result]:
    singles = bench.scale(3_000, 500)
    batched = bench.scale(50_000, 5_000)
    rounds = bench.scale(3, 2)
    progress(
        f"enqueue: {singles} one at a time, {batched} in batches of {BATCH:,}, {rounds} rounds"
    )
    bare_single = bare_batch = our_single = our_batch = 0.0
    for _ in range(rounds):  # interleaved, each on a fresh database; the best of each counts
        async with bench.database("enq_bare", schema="bare") as url:
            single, batch = await _bare(url, singles, batched)
            bare_single, bare_batch = max(bare_single, single), max(bare_batch, batch)
        async with bench.database("enq_ours") as url:
            single, batch = await _ours(url, singles, batched)
            our_single, our_batch = max(our_single, single), max(our_batch, batch)
    return [
        Result(
            FAMILY,
            "one at a time (enqueue_workflow)",
            our_single,
            "jobs/s",
            baseline=bare_single,
            note=f"{singles} jobs, best of {rounds}",
            baseline_name="procrastinate defer_async",
        ),
        Result(
            FAMILY,
            f"batches of {BATCH:,} (enqueue_many)",
            our_batch,
            "jobs/s",
            baseline=bare_batch,
            note=f"{batched} jobs, best of {rounds}",
            baseline_name="procrastinate batch_defer_async",
            goal=Goal(10_000, at_least=True),
        ),
    ]
