"""Fleet month: the whole book of clients through PT1 → PT4 on the same day, at the provider's pace.

Fifty clients (mixed tiers: every third one a 200-reply package, the others 100; about 1.5
million raw Cole rows in all) run their month as the schedule runs it, all enqueued at once:
PT1 with ``chain``, each step enqueuing the next. Four worker processes (``orchestrator worker
--processes 4``) share one EmailBison stand-in (one instance, a workspace per client) that
answers in 300 ms and refuses more than 20 requests a second with a 429. The workers are
configured with the same 20 requests/s as the shared limit, so they must pace themselves
together through PostgreSQL.

Figures, each beside what bounds it in the same run:

- the month's wall time beside the time the shared limit itself imposes (every request the
  instance answered, divided by the allowed rate): the goal is at most 1.15 times it;
- the 429s the stand-in had to send (goal: none);
- the slowest client's finish time beside the fastest one's (from the common start; goal:
  within 2x), which is what fairness between clients looks like from the outside.
"""

from __future__ import annotations

import datetime
import secrets
import shutil
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bench.book import add_bench_client, write_exports
from bench.harness import (
    DATA_DIR,
    Bench,
    polling_connection,
    progress,
    start_standin,
    wait_until,
)
from bench.processes import CpuClock, Processes, orchestrator_worker, worker_env
from bench.report import Goal, Result
from orchestrator import Orchestrator
from orchestrator._settings import load_settings
from workflows.pt4_emailbison_upload import CUSTOM_VARIABLES
from workflows.schedules import month_chain_payload, month_dedupe_key
from workflows.standins.emailbison_server import LocalEmailBison
from workflows.windows import SCHEDULE_TIMEZONE, format_month, renewal_month_for_run

FAMILY = "fleet"
RATE_LIMIT = 20.0
LATENCY_S = 0.3
WORKER_PROCESSES = 4


def fleet_plan(clients: int, total_rows: int) -> list[tuple[str, int, int]]:
    """``(name, tier, raw rows)`` per client: every third client is tier 200 with twice the
    rows of a tier-100 client, so the rows add up to about ``total_rows``.

    >>> [(tier, rows) for _, tier, rows in fleet_plan(3, 120_000)]
    [(200, 60000), (100, 30000), (100, 30000)]
    """
    weights = [2 if i % 3 == 0 else 1 for i in range(clients)]
    unit = total_rows / sum(weights)
    return [
        (f"Fleet Agency {i + 1:02d}", 200 if w == 2 else 100, round(unit * w))
        for i, w in enumerate(weights)
    ]


def key_env(index: int) -> str:
    return f"EMAILBISON_KEY_FLEET_{index + 1:02d}"


async def _pt4_runs(url: str) -> list[dict[str, Any]]:
    conn = await polling_connection(url)
    cursor = await conn.execute(
        """
        SELECT workflow, status::text, input ->> 'client', finished_at, output,
               error ->> 'message'
          FROM agent_runs WHERE status <> 'running' ORDER BY id
        """
    )
    return [
        {
            "workflow": row[0],
            "status": row[1],
            "client": row[2],
            "finished_at": row[3],
            "output": row[4],
            "error": row[5],
        }
        for row in await cursor.fetchall()
    ]


async def _run_fleet(
    bench: Bench,
    url: str,
    inbox: Path,
    month: str,
    plan: list[tuple[str, int, int]],
    bison: LocalEmailBison,
) -> tuple[float, datetime.datetime, list[dict[str, Any]], dict[str, float | None]]:
    keys = {key_env(i): secrets.token_hex(16) for i in range(len(plan))}
    for key in keys.values():
        bison.add_workspace(key)
        for name in CUSTOM_VARIABLES:
            bison.add_custom_variable(key, name)
    orch = Orchestrator(load_settings(), database_url=url)
    await orch.open()
    try:
        async with orch.pool.connection() as conn:
            for index, (name, tier, _rows) in enumerate(plan):
                await add_bench_client(
                    conn,
                    name,
                    tier=tier,
                    emailbison_url=bison.base_url,
                    key_env=key_env(index),
                )
        env = worker_env(
            url,
            ORCHESTRATOR_COLE_INBOX=str(inbox),
            ORCHESTRATOR_EMAILBISON_RATE_LIMIT=str(RATE_LIMIT),
            ORCHESTRATOR_EMAILBISON_ALLOW_HTTP_LOOPBACK="1",  # the local stand-in
            **keys,
        )
        bison.reset_log()
        async with Processes() as procs:
            procs.start(orchestrator_worker(processes=WORKER_PROCESSES), env, "fleet")
            started_at = datetime.datetime.now(datetime.UTC)
            started = time.perf_counter()
            clock = CpuClock(procs, bench)
            for name, _tier, _rows in plan:
                await orch.enqueue_workflow(
                    "pt1",
                    month_chain_payload(name, month),
                    dedupe_key=month_dedupe_key(name, month),
                )
            runs: list[dict[str, Any]] = []
            last_report = [time.monotonic()]

            async def finished() -> bool:
                procs.check_alive()
                runs[:] = await _pt4_runs(url)
                failed = [r for r in runs if r["status"] != "succeeded"]
                if failed:
                    raise RuntimeError(f"bench: fleet step failed: {failed[0]}")
                done = sum(1 for r in runs if r["workflow"] == "pt4")
                if time.monotonic() - last_report[0] > 15:
                    last_report[0] = time.monotonic()
                    progress(f"fleet: {len(runs)} steps done, {done}/{len(plan)} uploads")
                return done == len(plan)

            await wait_until(finished, timeout=3600, interval=0.5, what="the fleet month")
            wall = time.perf_counter() - started
            spent = clock.spent()
            cpu = {
                "workers": spent.workers,
                "PostgreSQL": spent.server,
                "the bench and stand-in": spent.this_process,
            }
            progress(
                f"fleet: CPU over the {wall:.0f} s month (2 cores: {2 * wall:.0f} s): "
                + ", ".join(f"{k} {v:.0f} s" for k, v in cpu.items() if v is not None)
            )
    finally:
        await orch.close()
    return wall, started_at, runs, cpu


async def run(bench: Bench) -> list[Result]:
    clients = bench.scale(50, 6)
    total_rows = bench.scale(1_500_000, 60_000)
    plan = fleet_plan(clients, total_rows)
    today = datetime.datetime.now(ZoneInfo(SCHEDULE_TIMEZONE)).date()
    month = format_month(*renewal_month_for_run(today))
    inbox = DATA_DIR / f"fleet-inbox-{bench.run_id}"
    shutil.rmtree(inbox, ignore_errors=True)
    bison = LocalEmailBison()
    start_standin(bison)
    try:
        started = time.perf_counter()
        for index, (name, _tier, rows) in enumerate(plan):
            await write_exports(inbox, client=name, month=month, rows=rows, seed=index)
        progress(
            f"fleet: {clients} clients, {sum(r for _, _, r in plan):,} synthetic rows written "
            f"in {time.perf_counter() - started:.0f} s"
        )
        bison.slow_seconds = LATENCY_S
        bison.rate_limit_per_second = RATE_LIMIT
        async with bench.database("fleet") as url:
            wall, started_at, runs, cpu = await _run_fleet(bench, url, inbox, month, plan, bison)
        answered = [r for r in bison.requests if r.status != 429]
        refused = bison.request_count(status=429)
    finally:
        bison.stop()
        shutil.rmtree(inbox, ignore_errors=True)
    return _results(plan, wall, started_at, runs, len(answered), refused, cpu)


def _results(
    plan: list[tuple[str, int, int]],
    wall: float,
    started_at: datetime.datetime,
    runs: list[dict[str, Any]],
    answered: int,
    refused: int,
    cpu: dict[str, float | None],
) -> list[Result]:
    rows = sum(r for _, _, r in plan)
    uploads = [r for r in runs if r["workflow"] == "pt4"]
    leads = sum(
        int(w["sent_this_run"]) for r in uploads for w in (r["output"] or {}).get("windows", [])
    )
    finish = {r["client"]: (r["finished_at"] - started_at).total_seconds() for r in uploads}
    slowest, fastest = max(finish.values()), min(finish.values())
    imposed = answered / RATE_LIMIT
    label = f"{len(plan)} clients, {rows:,} rows, {WORKER_PROCESSES} worker processes"
    return [
        Result(
            FAMILY,
            f"month PT1→PT4, {label}",
            wall,
            "s",
            baseline=imposed,
            baseline_name=f"{answered:,} requests at the shared {RATE_LIMIT:g} req/s",
            goal=Goal(1.15, at_least=False, on_ratio=True),
            extra={"leads": leads, "requests": answered, "finish_s": finish, "cpu_s": cpu},
        ),
        Result(
            FAMILY,
            "429 answers from the shared instance",
            float(refused),
            "answers",
            goal=Goal(0, at_least=False),
            extra={"requests": answered},
        ),
        Result(
            FAMILY,
            "slowest client's finish vs fastest client's",
            slowest,
            "s",
            baseline=fastest,
            baseline_name="the fastest client's finish (same start)",
            goal=Goal(2.0, at_least=False, on_ratio=True),
        ),
    ]
