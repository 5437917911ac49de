"""Pipeline: one synthetic month through PT1 → PT2 → PT3 → PT4 on a real worker.

A client is given deterministic Cole exports (``workflows.standins.synthetic``, without the ragged
rows and BOM a plain COPY would choke on) and the month is run as the schedule runs it: PT1
enqueued with ``chain``, each step enqueuing the next, one ``orchestrator worker`` process,
PT4 uploading to the local EmailBison stand-in limited to 20 requests/s (the workspace
already holds the custom variables, as for every month after a client's first). Step rates
come from each step's agent_runs duration. Baselines, measured in the same run:

- PT1 rows/s: a plain ``COPY ... (FORMAT csv)`` of the same files into a text staging table;
- PT2 rows/s: the Python rules (``clean_row`` and the email dedupe, the specification the
  SQL rules PT2 runs are tested against) over the same raw rows, without any database work;
- PT4 leads/s: the allowed rate (requests/s x 500 leads per request);
- the month end to end: the sum of the four steps' durations (the difference is the time
  between steps: fetch, start-up, enqueue of the next step).
"""

from __future__ import annotations

import datetime
import secrets
import shutil
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from psycopg.rows import dict_row

from bench.book import add_bench_client, copy_baseline, write_exports
from bench.harness import (
    DATA_DIR,
    Bench,
    connect,
    polling_connection,
    progress,
    start_standin,
    wait_until,
)
from bench.processes import Processes, orchestrator_worker, worker_env
from bench.report import Goal, Result
from orchestrator import Orchestrator
from orchestrator._settings import load_settings
from workflows.emailbison import MAX_LEADS_PER_REQUEST
from workflows.pt2_clay_format import Counts, clean_row
from workflows.pt4_emailbison_upload import CUSTOM_VARIABLES
from workflows.schedules import month_chain_payload, month_dedupe_key
from workflows.standins.emailbison_server import LocalEmailBison
from workflows.windows import SCHEDULE_TIMEZONE, format_month, renewal_month_for_run

FAMILY = "pipeline"
CLIENT = "Bench Home & Auto Agency"
KEY_ENV = "EMAILBISON_KEY_BENCH"
RATE_LIMIT = 20.0
STEPS = ("pt1", "pt2", "pt3", "pt4")


async def _run_month(
    bench: Bench, url: str, inbox: Path, month: str, tier: int
) -> tuple[float, dict[str, Any]]:
    """Wall time of the chained month and each step's agent_runs row (by workflow)."""
    api_key = secrets.token_hex(16)
    bison = LocalEmailBison()
    base_url = start_standin(bison)
    try:
        bison.add_workspace(api_key)
        for name in CUSTOM_VARIABLES:
            bison.add_custom_variable(api_key, name)
        bison.rate_limit_per_second = RATE_LIMIT
        orch = Orchestrator(load_settings(), database_url=url)
        await orch.open()
        try:
            async with orch.pool.connection() as conn:
                await add_bench_client(
                    conn, CLIENT, tier=tier, emailbison_url=base_url, key_env=KEY_ENV
                )
            env = worker_env(
                url,
                ORCHESTRATOR_COLE_INBOX=str(inbox),
                ORCHESTRATOR_EMAILBISON_RATE_LIMIT=str(RATE_LIMIT),
                ORCHESTRATOR_EMAILBISON_ALLOW_HTTP_LOOPBACK="1",  # the local stand-in
                **{KEY_ENV: api_key},
            )
            async with Processes() as procs:
                procs.start(orchestrator_worker(), env, "pipeline")
                started = time.perf_counter()
                await orch.enqueue_workflow(
                    "pt1",
                    month_chain_payload(CLIENT, month),
                    dedupe_key=month_dedupe_key(CLIENT, month),
                )
                runs: dict[str, Any] = {}

                async def finished() -> bool:
                    procs.check_alive()
                    runs.update(await _runs(url))
                    failed = [r for r in runs.values() if r["status"] not in ("succeeded",)]
                    if failed:
                        raise RuntimeError(f"bench: pipeline step failed: {failed[0]}")
                    return "pt4" in runs

                await wait_until(finished, timeout=900, interval=0.1, what="the month finishing")
                wall = time.perf_counter() - started
        finally:
            await orch.close()
    finally:
        bison.stop()
    return wall, runs


async def _runs(url: str) -> dict[str, Any]:
    conn = await polling_connection(url)
    cursor = await conn.execute(
        """
        SELECT workflow, status::text, extract(epoch FROM finished_at - started_at),
               output, error ->> 'message'
          FROM agent_runs WHERE status <> 'running' ORDER BY id
        """
    )
    return {
        row[0]: {"status": row[1], "seconds": float(row[2]), "output": row[3], "error": row[4]}
        for row in await cursor.fetchall()
    }


async def _rules_baseline(url: str, month: str) -> tuple[int, float]:
    """(rows, seconds) of PT2's rule loop alone over the month's raw rows."""
    year, mon = (int(p) for p in month.split("-"))
    async with await connect(url) as conn:
        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute(
            """
            SELECT r.id, r.first_name, r.last_name, r.address_1, r.city, r.state, r.zip5,
                   r.cell_phone_number, r.email_address, r.purchase_date, r.home_value,
                   r.head_household, r.date_of_birth, r.dedupe_key
              FROM raw_leads r JOIN clients c ON c.id = r.client_id
             WHERE c.name = %s AND r.month = %s ORDER BY r.id
            """,
            [CLIENT, datetime.date(year, mon, 1)],
        )
        raws = await cursor.fetchall()
    counts = Counts(raw_rows=len(raws))
    seen: set[str] = set()
    started = time.perf_counter()
    for raw in raws:
        candidate = clean_row(raw, year, mon, counts)
        if candidate is not None and candidate.email not in seen:
            seen.add(candidate.email)
    return len(raws), time.perf_counter() - started


async def run(bench: Bench) -> list[Result]:
    rows = bench.scale(100_000, 15_000)
    tier = 200 if not bench.quick else 100
    today = datetime.datetime.now(ZoneInfo(SCHEDULE_TIMEZONE)).date()
    month = format_month(*renewal_month_for_run(today))
    inbox = DATA_DIR / f"inbox-{bench.run_id}"
    shutil.rmtree(inbox, ignore_errors=True)
    try:
        files = await write_exports(inbox, client=CLIENT, month=month, rows=rows, seed=4)
        progress(f"pipeline: {rows:,} synthetic rows in {len(files)} files, month {month}")
        async with bench.database("pipeline") as url:
            wall, runs = await _run_month(bench, url, inbox, month, tier)
            progress(f"pipeline: month done in {wall:.1f} s; measuring the baselines")
            copy_rows, copy_s = await copy_baseline(url, files)
            rule_rows, rule_s = await _rules_baseline(url, month)
    finally:
        shutil.rmtree(inbox, ignore_errors=True)
    return _results(runs, wall, rows, copy_rows / copy_s, rule_rows / rule_s, tier)


def _results(
    runs: dict[str, Any], wall: float, rows: int, copy_rate: float, rule_rate: float, tier: int
) -> list[Result]:
    pt2_rows = int(runs["pt2"]["output"]["counts"]["raw_rows"])
    windows = runs["pt4"]["output"]["windows"]
    leads = sum(int(w["sent_this_run"]) for w in windows)
    allowed = RATE_LIMIT * MAX_LEADS_PER_REQUEST
    steps = {name: runs[name]["seconds"] for name in STEPS}
    return [
        Result(
            FAMILY,
            f"PT1 Cole pull, {rows:,} rows",
            rows / steps["pt1"],
            "rows/s",
            baseline=copy_rate,
            baseline_name="plain COPY of the same CSV files",
            goal=Goal(100_000, at_least=True),
            extra={"seconds": steps["pt1"]},
        ),
        Result(
            FAMILY,
            f"PT2 Clay format, {pt2_rows:,} rows",
            pt2_rows / steps["pt2"],
            "rows/s",
            baseline=rule_rate,
            baseline_name="PT2 Python rules (the spec) alone, no DB",
            goal=Goal(100_000, at_least=True),
            extra={"seconds": steps["pt2"], "counts": runs["pt2"]["output"]["counts"]},
        ),
        Result(
            FAMILY,
            f"PT4 EmailBison upload, {leads:,} leads",
            leads / steps["pt4"],
            "leads/s",
            baseline=allowed,
            baseline_name=f"allowed: {RATE_LIMIT:g} req/s x {MAX_LEADS_PER_REQUEST}",
            goal=Goal(0.9, at_least=True, on_ratio=True),
            extra={"seconds": steps["pt4"]},
        ),
        Result(
            FAMILY,
            f"month PT1→PT4 end to end, {leads:,}-lead tier-{tier} client",
            wall,
            "s",
            baseline=sum(steps.values()),
            baseline_name="sum of the 4 step durations",
            extra={"steps_s": steps, "pt3_s": steps["pt3"]},
        ),
    ]
