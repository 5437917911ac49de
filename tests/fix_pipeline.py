"""Fixtures for the PT1-PT5 integration tests: real PostgreSQL, real HTTP on 127.0.0.1.

- ``make_pipeline(**settings)`` / ``pipeline``: an opened :class:`Orchestrator` with the default
  registry (PT1-PT5 from ``workflows.catalog``) on the test's fresh database, Cole inbox in
  ``tmp_path``; no calendar schedules (a test must not depend on the wall clock).
- ``bison``: a :class:`LocalEmailBison` with one workspace whose key is exported (monkeypatch)
  under ``bison.key_env``, the name stored on clients.
- ``make_client(...)``: inserts a client pointing at that workspace.
- ``write_exports(...)``: synthetic Cole exports in the inbox; ``write_rows(...)``: a hand-made
  one, its rows built with ``person(...)``.
- ``run_job`` / ``run_until_idle``: enqueue, then run an in-process worker until done.
- ``seed_leads``: cleaned leads written straight into the tables (fast, exact counts).
- ``StubServer``: a tiny recording HTTP server (Debounce, Clay webhook).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import secrets
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from orchestrator import Orchestrator
from orchestrator._worker import run_worker
from tests.fix_db import settings_for_tests, wait_for
from workflows.clients import Client, ClientSpec, add_client
from workflows.cole import COLE_COLUMNS, export_dir
from workflows.formatting import readable_date
from workflows.standins.emailbison_server import LocalEmailBison
from workflows.standins.synthetic import generate_exports, write_export
from workflows.windows import parse_month

FINISHED = ("succeeded", "failed", "cancelled", "aborted")
KEY_ENV = "EMAILBISON_KEY_PIPELINE_TEST"
DEFAULT_ZIPS = ("75001", "75002", "75006", "73003", "73008")
WINDOW_DAY = {1: 3, 2: 10, 3: 17, 4: 24}
"""A purchase day inside each of a month's four windows."""

PipelineFactory = Callable[..., Awaitable[Orchestrator]]
ClientFactory = Callable[..., Awaitable[Client]]


# -- database helpers --------------------------------------------------------------------


async def fetch(
    orch: Orchestrator, query: str, params: Mapping[str, Any] | Sequence[Any] | None = None
) -> list[dict[str, Any]]:
    async with orch.pool.connection() as conn:
        cursor = await conn.execute(query, params)
        return list(await cursor.fetchall()) if cursor.description else []


async def scalar(
    orch: Orchestrator, query: str, params: Mapping[str, Any] | Sequence[Any] | None = None
) -> Any:
    rows = await fetch(orch, query, params)
    assert len(rows) == 1, rows
    return next(iter(rows[0].values()))


async def execute(
    orch: Orchestrator, query: str, params: Mapping[str, Any] | Sequence[Any] | None = None
) -> None:
    async with orch.pool.connection() as conn:
        await conn.execute(query, params)


# -- Cole rows ---------------------------------------------------------------------------


def person(
    first: str,
    last: str,
    address: str,
    zip_code: str,
    *,
    email: str = "",
    state: str = "TX",
    head: str = "Y",
    value: str = "$450,000",
    purchase: str = "08/03/2015",
) -> list[str]:
    """The 13 cells of one Cole export row (in ``COLE_COLUMNS`` order)."""
    return [
        first,
        last,
        address,
        "Dallas",
        state,
        zip_code,
        "(512) 555-0100",
        email or f"{first.split()[0].lower()}.{last.lower()}@example.com",
        purchase,
        value,
        head,
        "$50,000 - $74,999",
        "01/02/1970",
    ]


# -- running jobs ----------------------------------------------------------------------


@dataclass
class JobResult:
    job_id: int
    status: str
    """procrastinate's status: succeeded, failed, cancelled, ..."""
    runs: list[dict[str, Any]]
    """agent_runs rows of the job, oldest first."""

    @property
    def output(self) -> Any:
        assert self.runs, f"job {self.job_id} has no runs"
        return self.runs[-1]["output"]

    @property
    def error(self) -> dict[str, Any]:
        error = self.runs[-1]["error"]
        assert isinstance(error, dict), self.runs[-1]
        return error

    @property
    def run_statuses(self) -> list[str]:
        return [str(r["status"]) for r in self.runs]


@contextlib.asynccontextmanager
async def running_worker(orch: Orchestrator) -> AsyncIterator[asyncio.Task[None]]:
    """An in-process ``run_worker`` for the duration of the block, cancelled afterwards."""
    task = asyncio.create_task(run_worker(orch, install_signal_handlers=False))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def job_status(orch: Orchestrator, job_id: int) -> str:
    return str(
        await scalar(orch, "SELECT status::text FROM procrastinate_jobs WHERE id = %s", [job_id])
    )


async def job_result(orch: Orchestrator, job_id: int) -> JobResult:
    runs = await fetch(
        orch,
        "SELECT id, attempt, status::text AS status, input, output, error FROM agent_runs"
        " WHERE job_id = %s ORDER BY id",
        [job_id],
    )
    return JobResult(job_id, await job_status(orch, job_id), runs)


async def run_until(
    orch: Orchestrator, predicate: Callable[[], Awaitable[bool]], *, timeout: float = 60.0
) -> None:
    """Run a worker until ``predicate()`` holds (checked every 50 ms)."""
    async with running_worker(orch):
        await wait_for(predicate, timeout=timeout)


async def run_job(
    orch: Orchestrator,
    workflow: str,
    payload: Mapping[str, Any],
    *,
    timeout: float = 60.0,
    **options: Any,
) -> JobResult:
    """Enqueue one job and run a worker until that job is finished (whatever the outcome)."""
    job_id = await orch.enqueue_workflow(workflow, payload, **options)

    async def finished() -> bool:
        return await job_status(orch, job_id) in FINISHED

    await run_until(orch, finished, timeout=timeout)
    return await job_result(orch, job_id)


async def pending_workflow_jobs(orch: Orchestrator) -> int:
    """Workflow jobs not finished yet (waiting, delayed or running); maintenance excluded."""
    return int(
        await scalar(
            orch,
            "SELECT count(*) FROM procrastinate_jobs"
            " WHERE status IN ('todo', 'doing') AND task_name NOT LIKE 'orchestrator.%%'",
        )
    )


async def run_until_idle(orch: Orchestrator, *, timeout: float = 90.0) -> None:
    """Run a worker until no workflow job is left to run (e.g. the end of a chain)."""

    async def idle() -> bool:
        return await pending_workflow_jobs(orch) == 0

    await run_until(orch, idle, timeout=timeout)


async def jobs_by_workflow(orch: Orchestrator) -> dict[str, list[dict[str, Any]]]:
    rows = await fetch(
        orch,
        "SELECT id, task_name, status::text AS status, args, priority FROM procrastinate_jobs"
        " WHERE task_name NOT LIKE 'orchestrator.%%' ORDER BY id",
    )
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(row["task_name"], []).append(row)
    return out


# -- seeding -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedLead:
    """One cleaned lead to write directly (PT1/PT2 skipped)."""

    email: str
    zip: str = "75001"
    window_index: int = 1
    segment: str = "standard"
    state: str = "TX"
    first_name: str = "Pat"
    last_name: str = "Owner"


def make_leads(
    per_window: Sequence[int],
    *,
    prefix: str = "lead",
    zips: Sequence[str] = DEFAULT_ZIPS,
    hnw_every: int = 0,
) -> list[SeedLead]:
    """``per_window[i]`` leads in window ``i + 1``; every ``hnw_every``-th one Texas HNW."""
    leads = []
    n = 0
    for index, count in enumerate(per_window, start=1):
        for _ in range(count):
            n += 1
            leads.append(
                SeedLead(
                    email=f"{prefix}{n:05d}@example.com",
                    zip=zips[n % len(zips)],
                    window_index=index,
                    segment="texas_hnw" if hnw_every and n % hnw_every == 0 else "standard",
                    first_name=f"First{n}",
                    last_name=f"Last{n}",
                )
            )
    return leads


async def seed_leads(
    orch: Orchestrator, client: Client, month: str, leads: Sequence[SeedLead]
) -> None:
    """Write ``leads`` as raw + cleaned leads of the client-month, with monthly counts and
    pulled ZIPs (twice the cleaned rows), as if PT1 and PT2 had run."""
    year, mon = parse_month(month)
    first = date(year, mon, 1)
    async with orch.pool.connection() as conn:
        cursor = await conn.execute(
            "INSERT INTO cole_files (client_id, month, file_name, sha256, encoding, row_count,"
            " bad_row_count, new_people) VALUES (%s, %s, 'seeded.csv', %s, 'utf-8', %s, 0, %s)"
            " RETURNING id",
            [client.id, first, secrets.token_hex(32), len(leads), len(leads)],
        )
        file_row = await cursor.fetchone()
        assert file_row is not None
        async with conn.cursor().copy(
            "COPY raw_leads (client_id, month, file_id, row_number, first_name, last_name,"
            " state, zip, zip5, email_address, head_household, dedupe_key) FROM STDIN"
        ) as copy:
            for n, lead in enumerate(leads, start=2):
                await copy.write_row(
                    (
                        client.id,
                        first,
                        file_row["id"],
                        n,
                        lead.first_name,
                        lead.last_name,
                        lead.state,
                        lead.zip,
                        lead.zip,
                        lead.email,
                        "Y",
                        f"seed:{lead.email}",
                    )
                )
        cursor = await conn.execute(
            "SELECT id, email_address FROM raw_leads WHERE file_id = %s", [file_row["id"]]
        )
        raw_ids = {row["email_address"]: row["id"] for row in await cursor.fetchall()}
        async with conn.cursor().copy(
            "COPY cleaned_leads (client_id, month, raw_lead_id, dedupe_key, first_name,"
            " greeting_name, last_name, email, address_1, city, state, zip, cell_phone,"
            " date_of_birth, home_value, purchase_date, readable_purchase_date, purchase_day,"
            " renewal_date, window_index, segment, email_check) FROM STDIN"
        ) as copy:
            for lead in leads:
                day = WINDOW_DAY[lead.window_index]
                purchase = date(2015, mon, day)
                value = Decimal("1250000") if lead.segment == "texas_hnw" else Decimal("450000")
                await copy.write_row(
                    (
                        client.id,
                        first,
                        raw_ids[lead.email],
                        f"seed:{lead.email}",
                        lead.first_name,
                        lead.first_name,
                        lead.last_name,
                        lead.email,
                        "12 Main St",
                        "Dallas",
                        lead.state,
                        lead.zip,
                        "(512) 555-0100",
                        "01/02/1970",
                        value,
                        purchase,
                        readable_date(purchase),
                        day,
                        date(year, mon, day),
                        lead.window_index,
                        lead.segment,
                        "syntax",
                    )
                )
        by_zip: dict[str, int] = {}
        for lead in leads:
            by_zip[lead.zip] = by_zip.get(lead.zip, 0) + 1
        await conn.cursor().executemany(
            "INSERT INTO pulled_zips (client_id, month, zip, rows) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (client_id, month, zip) DO UPDATE SET rows = EXCLUDED.rows",
            [(client.id, first, z, 2 * n) for z, n in by_zip.items()],
        )
        hnw = sum(1 for lead in leads if lead.segment == "texas_hnw")
        await conn.execute(
            "INSERT INTO monthly_counts (client_id, month, raw_rows, head_of_household,"
            " no_head_household, bad_fields, over_value_cap, relaxed_band, texas_hnw,"
            " email_invalid, email_undeliverable, cleaned, cleaned_standard)"
            " VALUES (%(c)s, %(m)s, %(raw)s, %(n)s, %(n)s, 0, 0, 0, %(hnw)s, 0, 0, %(n)s,"
            " %(std)s)",
            {
                "c": client.id,
                "m": first,
                "raw": 2 * len(leads),
                "n": len(leads),
                "hnw": hnw,
                "std": len(leads) - hnw,
            },
        )


# -- a recording HTTP stub ---------------------------------------------------------------


@dataclass(frozen=True)
class StubRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


Responder = Callable[[StubRequest], tuple[int, Any]]


@dataclass
class StubServer:
    """A tiny HTTP server on 127.0.0.1: ``respond`` builds each (status, JSON) answer;
    every request is recorded."""

    respond: Responder
    requests: list[StubRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def start(self) -> str:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            # keep-alive, and headers + body in one segment: thousands of calls stay fast
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True
            wbufsize = 64 * 1024

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                split = urlsplit(self.path)
                request = StubRequest(
                    self.command,
                    split.path,
                    dict(parse_qsl(split.query)),
                    {k.lower(): v for k, v in self.headers.items()},
                    json.loads(raw) if raw else None,
                )
                with owner._lock:
                    owner.requests.append(request)
                status, payload = owner.respond(request)
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None

    def count(self) -> int:
        with self._lock:
            return len(self.requests)


@contextlib.contextmanager
def stub_server(respond: Responder) -> Iterator[StubServer]:
    server = StubServer(respond)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    path = tmp_path / "cole_inbox"
    path.mkdir()
    return path


@pytest.fixture
async def make_pipeline(database_url: str, inbox: Path) -> AsyncIterator[PipelineFactory]:
    """Open pipeline orchestrators (default registry) with extra settings; closed at the end."""
    opened: list[Orchestrator] = []

    async def make(**overrides: Any) -> Orchestrator:
        values: dict[str, Any] = {
            "cole_inbox": inbox,
            "default_retry_delay": 0.2,
            "emailbison_allow_http_loopback": True,  # the stand-in is http on 127.0.0.1
        }
        values.update(overrides)
        orch = Orchestrator(settings_for_tests(**values), schedules=[], database_url=database_url)
        await orch.open()
        opened.append(orch)
        return orch

    try:
        yield make
    finally:
        for orch in reversed(opened):
            await orch.close()


@pytest.fixture
async def pipeline(make_pipeline: PipelineFactory) -> Orchestrator:
    return await make_pipeline()


@dataclass
class Bison:
    """The local EmailBison stand-in and the workspace the tests' clients use."""

    server: LocalEmailBison
    key: str
    key_env: str

    @property
    def url(self) -> str:
        return self.server.base_url

    def leads(self) -> list[dict[str, Any]]:
        return self.server.leads(self.key)

    def add_campaign(self, name: str, status: str = "active") -> int:
        return self.server.add_campaign(self.key, name, status)

    def campaign_name(self, campaign_id: int) -> str:
        return str(self.server.campaign(self.key, campaign_id)["name"])

    def attached(self, campaign_id: int) -> list[int]:
        return self.server.attached_lead_ids(self.key, campaign_id)


@pytest.fixture
def bison(monkeypatch: pytest.MonkeyPatch) -> Iterator[Bison]:
    server = LocalEmailBison()
    server.start()
    key = f"eb-{secrets.token_hex(12)}"
    server.add_workspace(key)
    monkeypatch.setenv(KEY_ENV, key)
    try:
        yield Bison(server, key, KEY_ENV)
    finally:
        server.stop()


@pytest.fixture
def make_client(pipeline: Orchestrator, bison: Bison) -> ClientFactory:
    async def make(
        name: str = "Acme Insurance",
        *,
        tier: int = 100,
        states: Sequence[str] = ("TX", "OK"),
        zips: Sequence[str] = DEFAULT_ZIPS,
        campaign_id: int | None = None,
        hnw_campaign_id: int | None = None,
        active: bool = True,
        emailbison: bool = True,
    ) -> Client:
        spec = ClientSpec(
            name=name,
            tier=tier,
            licensed_states=list(states),
            approved_zips=list(zips),
            emailbison_url=bison.url if emailbison else None,
            emailbison_key_env=bison.key_env if emailbison else None,
            evergreen_campaign_id=campaign_id,
            evergreen_hnw_campaign_id=hnw_campaign_id,
            active=active,
        )
        async with pipeline.pool.connection() as conn:
            return await add_client(conn, spec)

    return make


@pytest.fixture
def write_exports(inbox: Path) -> Callable[..., list[Path]]:
    """Synthetic Cole exports for a client-month in the inbox (see ``generate_exports``)."""

    def write(
        client: str,
        month: str,
        *,
        rows: int = 1_000,
        states: Sequence[str] = ("TX", "OK"),
        zips: Sequence[str] = DEFAULT_ZIPS,
        seed: int = 1,
        messiness: bool = True,
    ) -> list[Path]:
        return generate_exports(
            inbox,
            client=client,
            month=month,
            states=states,
            zips=zips,
            rows=rows,
            seed=seed,
            messiness=messiness,
        )

    return write


@pytest.fixture
def write_rows(inbox: Path) -> Callable[..., Path]:
    """A hand-made export ``name`` for a client-month: the Cole header then ``rows``."""

    def write(
        client: str,
        month: str,
        name: str,
        rows: Sequence[Sequence[str]],
        *,
        header: Sequence[str] = COLE_COLUMNS,
    ) -> Path:
        target = export_dir(inbox, client, month)
        target.mkdir(parents=True, exist_ok=True)
        path = target / name
        if tuple(header) == COLE_COLUMNS:
            write_export(path, rows)
        else:
            with path.open("w", encoding="utf-8", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(header)
                writer.writerows(rows)
        return path

    return write
