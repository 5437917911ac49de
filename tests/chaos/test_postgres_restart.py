"""PostgreSQL restart mid-run, on a server this test starts itself.

Three workers are busy when the server is stopped (fast shutdown: every session terminated),
kept down for ~3 s and started again. Workers must come back on their own — pool and LISTEN
connection — and finish everything. Meanwhile the test keeps enqueueing small batches: each
batch either returns ids (tracked: each such job must succeed exactly once) or raises
(counted as not enqueued; should its insert have committed anyway, that job must succeed
exactly once too). After the restart a fresh job must start promptly.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from orchestrator._database import with_database
from orchestrator._enqueue import JobRequest
from orchestrator._migrate import upgrade
from tests.chaos.harness import DEFAULT_JOBS, ChaosRun, record
from tests.chaos.own_server import OwnPostgres
from tests.fix_db import TEST_TABLES, subprocess_env

pytestmark = pytest.mark.chaos

SEED = 5432
WORKERS = 3
OUTAGE_S = 3.0
#: Enqueue attempts during the outage: a batch every ENQUEUE_EVERY s.
ENQUEUE_EVERY = 0.1
ENQUEUE_BATCH = 10
#: From the server answering again to a fresh high-priority job started.
PROMPT_START_BOUND = 5.0


@dataclass
class Enqueuer:
    """Keeps enqueueing small batches until stopped; remembers what each call answered."""

    run: ChaosRun
    keys: list[str] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    failed_keys: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def loop(self) -> None:
        for n in range(10_000):
            if self.stop.is_set():
                return
            keys = [f"outage-{n:04d}-{i}" for i in range(ENQUEUE_BATCH)]
            requests = [JobRequest("write_row", {"key": k, "sleep": 0.01}) for k in keys]
            try:
                ids = await asyncio.wait_for(self.run.orch.enqueue_many(requests), 15)
            except Exception as exc:  # loud failure: nothing returned, counted as not enqueued
                self.failed_keys += keys
                self.errors.append(type(exc).__name__)
            else:
                assert len(ids) == len(keys)
                self.keys += keys
                self.ids += ids
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), ENQUEUE_EVERY)


async def test_postgres_restart(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    with OwnPostgres() as pg:
        with psycopg.connect(pg.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier("chaos")))
        url = with_database(pg.url(), "chaos")
        await asyncio.to_thread(upgrade, url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(TEST_TABLES)
        env = subprocess_env(url, ORCHESTRATOR_CONNECT_TIMEOUT="2")

        async with ChaosRun(url, tmp_path, worker_env=env, connect_timeout=2) as run:
            keys, job_ids = await run.enqueue_rows("restart", DEFAULT_JOBS, rng, sleep=(0.02, 0.05))
            started = time.monotonic()
            for _ in range(WORKERS):
                run.workers.start()
            await run.probe_start_latency("restart-warmup", timeout=30)
            await asyncio.sleep(1.0)

            enqueuer = Enqueuer(run)
            enqueuing = asyncio.create_task(enqueuer.loop())
            await asyncio.sleep(0.5)
            left_before = await run.db.value(
                "SELECT count(*) FROM procrastinate_jobs WHERE id = ANY(%s)"
                " AND status <> 'succeeded'",
                [job_ids],
            )
            stop_s = await asyncio.to_thread(pg.stop, "fast")
            down_at = time.monotonic()
            await asyncio.sleep(OUTAGE_S)
            start_s = await asyncio.to_thread(pg.start)
            up_at = time.monotonic()
            server_up = await run.db.value("SELECT clock_timestamp()")
            # First attempt started by any worker after the restart.
            first_start = None
            for _ in range(1_000):
                first_start = await run.db.value(
                    "SELECT min(started_at) FROM agent_runs WHERE started_at > %s", [server_up]
                )
                if first_start is not None or time.monotonic() - up_at > 30:
                    break
                await asyncio.sleep(0.05)
            resumed_s = None if first_start is None else (first_start - server_up).total_seconds()
            probe_s = await run.probe_start_latency("restart-probe", timeout=30)
            probe_enqueue_s = run.last_enqueue_s
            await asyncio.sleep(1.0)
            enqueuer.stop.set()
            await asyncio.wait_for(enqueuing, 30)

            # A batch that raised may still have been inserted (the commit reached the
            # server, its answer did not): such jobs must run exactly once as well.
            surprise = await run.db.rows(
                "SELECT id, args -> 'payload' ->> 'key' AS key FROM procrastinate_jobs"
                " WHERE args -> 'payload' ->> 'key' = ANY(%s)",
                [enqueuer.failed_keys],
            )
            all_ids = [*job_ids, *enqueuer.ids, *(r["id"] for r in surprise)]
            all_keys = [*keys, *enqueuer.keys, *(r["key"] for r in surprise)]
            probe_ids = await run.db.rows(
                "SELECT job_id FROM test_effects WHERE key IN ('restart-warmup', 'restart-probe')"
            )
            all_ids += [r["job_id"] for r in probe_ids]
            all_keys += ["restart-warmup", "restart-probe"]
            wait_s = await run.wait_until_done(all_ids)
            duration = time.monotonic() - started
            run.workers.assert_survivors_alive()
            counts = await run.check_invariants(all_ids, all_keys)
            logs = run.workers.logs()

            record(
                "2 postgres restart",
                jobs=len(all_ids),
                workers=WORKERS,
                jobs_left_at_stop=left_before,
                stop_s=stop_s,
                down_s=up_at - down_at,
                start_s=start_s,
                enqueue_batches_ok=len(enqueuer.ids) // ENQUEUE_BATCH,
                enqueue_batches_raised=len(enqueuer.failed_keys) // ENQUEUE_BATCH,
                enqueue_errors=sorted(set(enqueuer.errors)),
                raised_but_inserted=len(surprise),
                first_job_start_after_restart_s=resumed_s,
                probe_enqueue_call_s=probe_enqueue_s,
                probe_start_after_restart_s=probe_s,
                worker_restarts=logs.count("restarting the worker"),
                runs=counts.runs_by_status,
                wall_s=duration,
                drain_s=wait_s,
                jobs_per_s=len(all_ids) / duration,
            )
            assert pg.starts == 2
            assert left_before > 0, "the jobs were done before the restart"
            assert enqueuer.ids, "no enqueue succeeded around the outage"
            assert resumed_s is not None
            assert resumed_s <= PROMPT_START_BOUND
            assert probe_s <= PROMPT_START_BOUND
