"""Ingest: PT1 (Cole pull) and PT2 (Clay format) rows/s at 100,000 and 1,000,000 rows.

Each size gets a fresh database, deterministic synthetic exports
(``workflows.standins.synthetic``; at most 10,000 records per file, so 1,000,000 rows are
100+ files) and one ``orchestrator worker`` process; PT1 and then PT2 are enqueued for the
month (PT2 without Debounce or Clay, which are other benchmarks' business) and each step's
rate comes from its ``agent_runs`` duration. Figures, each beside a baseline measured in the
same run:

- PT1 rows/s vs a plain ``COPY ... (FORMAT csv)`` of the same files into a text table (the
  floor of any load that lets PostgreSQL parse);
- PT2 rows/s vs PT2's Python rules (``clean_rows``, the specification the SQL is tested
  against) over the same raw rows, without any database work: what the old row-by-row PT2
  could reach at best;
- at 1,000,000 rows, each step's rows/s vs its own rate at 100,000 rows: a ratio near 1 means
  the cost grows linearly with the rows;
- PT1 on messy exports (BOM, ragged rows, cells spanning lines, as the demo's): those files
  go through the Python reader, so this shows what the fallback costs.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

from psycopg.rows import dict_row

from bench.book import add_bench_client, copy_baseline, write_exports
from bench.harness import DATA_DIR, Bench, connect, polling_connection, progress, wait_until
from bench.processes import Processes, orchestrator_worker, worker_env
from bench.report import Goal, Result
from orchestrator import Orchestrator
from orchestrator._settings import load_settings
from workflows.pt2_clay_format import clean_rows

FAMILY = "ingest"
CLIENT = "Ingest Bench Agency"
MONTH = "2026-12"


async def _run_steps(url: str, inbox: Path, steps: tuple[str, ...]) -> dict[str, Any]:
    """Run ``steps`` one after the other on one worker; their agent_runs rows by workflow."""
    orch = Orchestrator(load_settings(), database_url=url)
    await orch.open()
    try:
        async with orch.pool.connection() as conn:
            await add_bench_client(
                conn,
                CLIENT,
                tier=200,
                emailbison_url="http://127.0.0.1:9/",
                key_env="EMAILBISON_KEY_INGEST_BENCH",
            )
        env = worker_env(url, ORCHESTRATOR_COLE_INBOX=str(inbox))
        runs: dict[str, Any] = {}
        async with Processes() as procs:
            procs.start(orchestrator_worker(), env, "ingest")
            for step in steps:
                await orch.enqueue_workflow(step, {"client": CLIENT, "month": MONTH})

                async def finished(step: str = step) -> bool:
                    procs.check_alive()
                    runs.update(await _runs(url))
                    if step in runs and runs[step]["status"] != "succeeded":
                        raise RuntimeError(f"bench: {step} failed: {runs[step]}")
                    return step in runs

                await wait_until(finished, timeout=1800, interval=0.1, what=f"{step} finishing")
    finally:
        await orch.close()
    return runs


async def _runs(url: str) -> dict[str, Any]:
    conn = await polling_connection(url)
    cursor = await conn.execute(
        """
        SELECT workflow, status::text, extract(epoch FROM finished_at - started_at), output
          FROM agent_runs WHERE status <> 'running' ORDER BY id
        """
    )
    return {
        row[0]: {"status": row[1], "seconds": float(row[2]), "output": row[3]}
        for row in await cursor.fetchall()
    }


async def _rules_baseline(url: str) -> float:
    """Rows/s of PT2's Python rules over the month's raw rows, no database work."""
    async with await connect(url) as conn:
        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute(
            """
            SELECT id, first_name, last_name, address_1, city, state, zip5, cell_phone_number,
                   email_address, purchase_date, home_value, head_household, date_of_birth,
                   dedupe_key
              FROM raw_leads ORDER BY id
            """
        )
        raws = await cursor.fetchall()
    year, month = (int(p) for p in MONTH.split("-"))
    started = time.perf_counter()
    await asyncio.to_thread(clean_rows, raws, year, month)
    return len(raws) / (time.perf_counter() - started)


async def _measure(
    bench: Bench, rows: int, *, messy: bool, steps: tuple[str, ...], baselines: bool
) -> dict[str, Any]:
    inbox = DATA_DIR / f"ingest-{bench.run_id}-{rows}-{int(messy)}"
    shutil.rmtree(inbox, ignore_errors=True)
    try:
        started = time.perf_counter()
        files = await write_exports(
            inbox, client=CLIENT, month=MONTH, rows=rows, seed=11, messy=messy
        )
        progress(
            f"ingest: {rows:,} rows in {len(files)} files (messy={messy}) written in "
            f"{time.perf_counter() - started:.1f} s"
        )
        async with bench.database(f"ingest{rows}{int(messy)}") as url:
            runs = await _run_steps(url, inbox, steps)
            out: dict[str, Any] = {"runs": runs}
            if baselines:
                copy_rows, copy_s = await copy_baseline(url, files)
                out["copy_rate"] = copy_rows / copy_s
                out["rules_rate"] = await _rules_baseline(url)
    finally:
        shutil.rmtree(inbox, ignore_errors=True)
    for step in steps:
        progress(f"ingest: {step} {rows:,} rows in {runs[step]['seconds']:.2f} s")
    return out


def _raw_rows(run: dict[str, Any]) -> int:
    return int(run["output"]["counts"]["raw_rows"])


async def run(bench: Bench) -> list[Result]:
    small, large = bench.scale(100_000, 20_000), bench.scale(1_000_000, 100_000)
    both = ("pt1", "pt2")
    at_small = await _measure(bench, small, messy=False, steps=both, baselines=True)
    at_large = await _measure(bench, large, messy=False, steps=both, baselines=False)
    messy = await _measure(bench, small, messy=True, steps=("pt1",), baselines=False)
    pt1_small = small / at_small["runs"]["pt1"]["seconds"]
    pt1_large = large / at_large["runs"]["pt1"]["seconds"]
    pt1_messy = small / messy["runs"]["pt1"]["seconds"]
    pt2_small_rows = _raw_rows(at_small["runs"]["pt2"])
    pt2_large_rows = _raw_rows(at_large["runs"]["pt2"])
    pt2_small = pt2_small_rows / at_small["runs"]["pt2"]["seconds"]
    pt2_large = pt2_large_rows / at_large["runs"]["pt2"]["seconds"]
    linear = Goal(0.8, at_least=True, on_ratio=True)
    return [
        Result(
            FAMILY,
            f"PT1 Cole pull, {small:,} rows",
            pt1_small,
            "rows/s",
            baseline=at_small["copy_rate"],
            baseline_name="plain COPY of the same CSV files",
            goal=Goal(100_000, at_least=True),
            extra={"seconds": at_small["runs"]["pt1"]["seconds"]},
        ),
        Result(
            FAMILY,
            f"PT1 Cole pull, {large:,} rows",
            pt1_large,
            "rows/s",
            baseline=pt1_small,
            baseline_name=f"PT1 at {small:,} rows (linear: ratio ≈ 1)",
            goal=linear,
            extra={"seconds": at_large["runs"]["pt1"]["seconds"]},
        ),
        Result(
            FAMILY,
            f"PT1 Cole pull, {small:,} rows of messy exports",
            pt1_messy,
            "rows/s",
            baseline=pt1_small,
            baseline_name=f"PT1, {small:,} rows of clean exports",
            extra={"seconds": messy["runs"]["pt1"]["seconds"]},
        ),
        Result(
            FAMILY,
            f"PT2 Clay format, {pt2_small_rows:,} rows",
            pt2_small,
            "rows/s",
            baseline=at_small["rules_rate"],
            baseline_name="PT2 Python rules alone (the spec), no DB",
            goal=Goal(100_000, at_least=True),
            extra={"seconds": at_small["runs"]["pt2"]["seconds"]},
        ),
        Result(
            FAMILY,
            f"PT2 Clay format, {pt2_large_rows:,} rows",
            pt2_large,
            "rows/s",
            baseline=pt2_small,
            baseline_name=f"PT2 at {pt2_small_rows:,} rows (linear: ratio ≈ 1)",
            goal=linear,
            extra={"seconds": at_large["runs"]["pt2"]["seconds"]},
        ),
    ]
