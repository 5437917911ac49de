"""The synthetic book of business the pipeline benchmarks share: states, ZIPs, clients, COPY.

Every family that runs PT1-PT4 (pipeline, ingest, limits, fleet) gives its clients the same
licensed states and approved ZIPs (Texas, Oklahoma and New Jersey, 70 ZIPs: the synthetic
exports are generated over these) and measures PT1 against the same plain-COPY baseline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

from psycopg import AsyncConnection
from psycopg.rows import DictRow

from bench.harness import connect
from workflows.clients import Client, ClientSpec, add_client
from workflows.standins.synthetic import generate_exports

STATES = ("TX", "OK", "NJ")
ZIPS = tuple(
    [f"{75001 + i}" for i in range(30)]
    + [f"{73001 + i}" for i in range(20)]
    + [f"0{7001 + i}" for i in range(20)]
)
#: A text staging table as wide as a Cole export (the plain-COPY baseline's target).
STAGE_COLUMNS = ", ".join(f"c{i} text" for i in range(13))


async def write_exports(
    inbox: Path,
    *,
    client: str,
    month: str,
    rows: int,
    seed: int,
    messy: bool = False,
    states: Sequence[str] = STATES,
    zips: Sequence[str] = ZIPS,
) -> list[Path]:
    """A client's synthetic Cole exports for ``month`` in ``inbox`` (over the book's states
    and ZIPs unless told otherwise), written in a thread; returns their paths."""
    return await asyncio.to_thread(
        generate_exports,
        inbox,
        client=client,
        month=month,
        states=states,
        zips=zips,
        rows=rows,
        seed=seed,
        messiness=messy,
    )


async def add_bench_client(
    conn: AsyncConnection[DictRow],
    name: str,
    *,
    tier: int,
    emailbison_url: str,
    key_env: str,
    states: Sequence[str] = STATES,
    zips: Sequence[str] = ZIPS,
) -> Client:
    """Register a benchmark client licensed for ``states`` with ``zips`` approved."""
    return await add_client(
        conn,
        ClientSpec(
            name=name,
            tier=tier,
            licensed_states=list(states),
            approved_zips=list(zips),
            emailbison_url=emailbison_url,
            emailbison_key_env=key_env,
        ),
    )


async def copy_baseline(url: str, files: Sequence[Path]) -> tuple[int, float]:
    """(data rows, seconds) of a plain CSV ``COPY`` of ``files`` into a text staging table,
    streamed in 1 MiB blocks in one transaction; the table is dropped afterwards."""
    async with await connect(url) as conn:
        await conn.execute(f"CREATE TABLE bench_copy_stage ({STAGE_COLUMNS})")
        started = time.perf_counter()
        async with conn.transaction():
            for path in files:
                async with conn.cursor().copy(
                    "COPY bench_copy_stage FROM STDIN (FORMAT csv, HEADER true)"
                ) as copy:
                    with path.open("rb") as handle:
                        while chunk := handle.read(1 << 20):
                            await copy.write(chunk)
        seconds = time.perf_counter() - started
        cursor = await conn.execute("SELECT count(*) FROM bench_copy_stage")
        row = await cursor.fetchone()
        await conn.execute("DROP TABLE bench_copy_stage")
    assert row is not None
    return int(row[0]), seconds
