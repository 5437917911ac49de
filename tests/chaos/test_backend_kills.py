"""Backend kills: every connection of the test database is terminated, again and again.

``pg_terminate_backend`` hits the workers' pooled connections (idle ones and those in the
middle of a job, a fetch or a heartbeat) and their LISTEN connection alike. Attempts whose
connection died are recorded as ``retrying`` and run again; a worker whose fetch or
heartbeat failed is restarted by ``orchestrator worker``; the listener reconnects. After each
kill a fresh high-priority job is enqueued and the time from its insert to its attempt's start
is measured: typically well under 1 s (see START_BOUND for the one exception).
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from tests.chaos.harness import ChaosRun, record

pytestmark = pytest.mark.chaos

SEED = 3107
WORKERS = 2
KILLS = 8
#: Seconds between the end of one probe and the next kill.
PAUSE = 1.0
#: The work must outlast the kills (about 1.2 s each): at full concurrency (2 workers x 8)
#: these jobs take at least 3,000 x 75 ms / 16 = 14 s, against ~10 s of kills.
JOBS = 3_000
SLEEP = (0.05, 0.1)
#: The issue's promise: after each kill, a new job starts within 1 s. Met by most probes;
#: the documented exception (procrastinate 3.10 on Python 3.11): a worker whose fetch query
#: was killed stops and is restarted by ``orchestrator worker``; procrastinate's shutdown
#: cancels the LISTEN task, but the same kill also ended that task's wait for notifications,
#: and Python 3.11's ``asyncio.wait_for`` drops a cancellation that arrives as the awaited
#: future completes. The listener reconnects and procrastinate cancels it again only after
#: ``procrastinate.utils.CANCEL_TIMEOUT`` (1 s). When every worker is in that state, a new job
#: waits ~1.1-1.2 s. Hence: the median within TYPICAL_BOUND (the promise itself: most probes
#: start within 1 s; a slow machine's median was 0.52 s, a fast one's well under half a
#: second, and probes stuck in that exception would put it at 1.1 s or more), none beyond
#: START_BOUND.
TYPICAL_BOUND = 1.0
START_BOUND = 1.5


async def test_backend_kills(database_url: str, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    async with ChaosRun(database_url, tmp_path) as run:
        keys, job_ids = await run.enqueue_rows("backend", JOBS, rng, sleep=SLEEP)
        started = time.monotonic()
        for _ in range(WORKERS):
            run.workers.start()
        # Kill only once the workers are up and busy.
        await run.probe_start_latency("backend-warmup", timeout=30)
        probe_keys = ["backend-warmup"]
        probe_ids: list[int] = []

        terminated: list[int] = []
        latencies: list[float] = []
        for n in range(KILLS):
            rows = await run.db.rows(
                "SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            terminated.append(sum(1 for r in rows if r["killed"]))
            key = f"backend-probe-{n}"
            latencies.append(await run.probe_start_latency(key, timeout=30))
            probe_keys.append(key)
            await asyncio.sleep(PAUSE)

        probe_ids = [
            r["job_id"]
            for r in await run.db.rows(
                "SELECT DISTINCT job_id FROM test_effects WHERE key = ANY(%s)", [probe_keys]
            )
        ]
        remaining_at_last_kill = await run.db.value(
            "SELECT count(*) FROM procrastinate_jobs WHERE id = ANY(%s) AND status <> 'succeeded'",
            [job_ids],
        )
        wait_s = await run.wait_until_done(job_ids)
        duration = time.monotonic() - started
        run.workers.assert_survivors_alive()
        restarts = run.workers.logs().count("restarting the worker")
        counts = await run.check_invariants([*job_ids, *probe_ids], [*keys, *probe_keys])

        record(
            "3 backend kills",
            jobs=len(job_ids) + len(probe_keys),
            workers=WORKERS,
            kills=len(terminated),
            backends_terminated=terminated,
            worker_restarts=restarts,
            jobs_left_after_last_kill=remaining_at_last_kill,
            runs=counts.runs_by_status,
            wall_s=duration,
            drain_after_last_kill_s=wait_s,
            jobs_per_s=(len(job_ids) + len(probe_keys)) / duration,
            probe_start_s=[round(x, 3) for x in latencies],
            worst_start_after_kill_s=max(latencies),
            probes_over_1s=sum(x > 1.0 for x in latencies),
        )
        assert len(terminated) == KILLS
        assert all(n >= WORKERS for n in terminated), "the kills missed the workers"
        assert remaining_at_last_kill > 0, "the jobs were done before the kills ended"
        assert sorted(latencies)[len(latencies) // 2] <= TYPICAL_BOUND, latencies
        assert max(latencies) <= START_BOUND, f"a new job waited {max(latencies):.3f} s"
