"""Shared machinery of the chaos scenarios: workers, bulk enqueue, waiting, invariants, numbers.

A scenario enqueues a few thousand ``write_row`` jobs (each inserts one row with a unique key
into ``test_effects``), runs ``orchestrator worker`` subprocesses while it injects a fault,
waits with a deadline for every job to finish, then checks what must hold after any fault::

    async with ChaosRun(database_url, tmp_path) as run:
        keys, job_ids = await run.enqueue_rows("kill", 2_000, rng)
        run.workers.start()
        ...                                   # inject faults
        await run.wait_until_done(job_ids)
        counts = await run.check_invariants(job_ids, keys)
        record("worker SIGKILL", jobs=len(job_ids), abandoned=counts.abandoned)

Every loop here is bounded in count and in time, every process is started by this module and
stopped by its pid (:meth:`WorkerSet.stop_all`), and measured numbers are collected with
:func:`record` for the end-of-session summary printed by ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psycopg
from psycopg.rows import DictRow, dict_row

from orchestrator import Orchestrator
from orchestrator._enqueue import JobRequest
from orchestrator._registry import Registry
from tests.fix_db import registry_for_tests, settings_for_tests, subprocess_env

#: Jobs per scenario (each one a row in ``test_effects``).
DEFAULT_JOBS = 2_000
#: Jobs inserted per ``enqueue_many`` round trip.
ENQUEUE_BATCH = 500
#: Concurrency of each worker subprocess.
WORKER_CONCURRENCY = 8
#: Seconds a scenario waits for its jobs before it fails.
DONE_TIMEOUT = 75.0

MEASUREMENTS: list[tuple[str, dict[str, Any]]] = []


def record(scenario: str, **numbers: Any) -> None:
    """Keep a scenario's measured numbers for the session summary (and print them)."""
    MEASUREMENTS.append((scenario, numbers))
    print(f"[chaos] {scenario}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in numbers.items()))


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def worker_label_prefix(pid: int) -> str:
    """``agent_runs.worker`` of the attempts run by process ``pid`` starts with this."""
    return f"{socket.gethostname()}:{pid}"


def pipeline_registry() -> Registry:
    """The PT1-PT5 workflows and the test workflows, for enqueueing from the test process."""
    from tests import workflows_for_tests
    from workflows import catalog

    return Registry([*catalog.WORKFLOWS, *workflows_for_tests.WORKFLOWS])


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str


async def run_cli(env: dict[str, str], *args: str, timeout: float = 60.0) -> CliResult:
    """Run ``python -m orchestrator ARGS`` to completion (killed by pid after ``timeout``)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orchestrator",
        *args,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"orchestrator {' '.join(args)[:200]} ran over {timeout} s") from None
    assert process.returncode is not None
    return CliResult(process.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


# -- the test's own database access --------------------------------------------------------


class Db:
    """An autocommit connection for the scenario's own queries.

    It reconnects after a killed backend or a server restart, retrying a failed query for up
    to ``retry_for`` seconds, so observing never becomes the fault under test.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.AsyncConnection[DictRow] | None = None

    async def rows(
        self,
        query: str,
        params: Sequence[Any] | dict[str, Any] | None = None,
        *,
        retry_for: float = 30.0,
    ) -> list[DictRow]:
        deadline = time.monotonic() + retry_for
        for _ in range(10_000):
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = await psycopg.AsyncConnection.connect(
                        self.url, autocommit=True, row_factory=dict_row, connect_timeout=3
                    )
                cursor = await self._conn.execute(query, params)
                return await cursor.fetchall() if cursor.description else []
            except psycopg.OperationalError:
                await self.close()
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        raise AssertionError("unreachable: query retry loop exhausted")

    async def one(
        self,
        query: str,
        params: Sequence[Any] | dict[str, Any] | None = None,
        *,
        retry_for: float = 30.0,
    ) -> DictRow:
        rows = await self.rows(query, params, retry_for=retry_for)
        assert len(rows) == 1, f"expected one row, got {len(rows)}"
        return rows[0]

    async def value(
        self,
        query: str,
        params: Sequence[Any] | dict[str, Any] | None = None,
        *,
        retry_for: float = 30.0,
    ) -> Any:
        row = await self.one(query, params, retry_for=retry_for)
        return next(iter(row.values()))

    async def execute(
        self, query: str, params: Sequence[Any] | dict[str, Any] | None = None
    ) -> None:
        await self.rows(query, params)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            with contextlib.suppress(psycopg.Error):
                await conn.close()


# -- worker subprocesses -------------------------------------------------------------------


@dataclass
class WorkerProcess:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    started_at: float

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = 3_000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


class WorkerSet:
    """``orchestrator worker`` subprocesses of one scenario; stop_all() ends each by its pid."""

    def __init__(
        self, env: dict[str, str], log_dir: Path, *, concurrency: int = WORKER_CONCURRENCY
    ) -> None:
        self.env = env
        self.log_dir = log_dir
        self.concurrency = concurrency
        self.all: list[WorkerProcess] = []
        self.killed: list[WorkerProcess] = []

    def start(self, *extra_args: str) -> WorkerProcess:
        n = len(self.all) + 1
        name = f"chaos-{n}"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"worker-{n}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "orchestrator",
                    "worker",
                    "--concurrency",
                    str(self.concurrency),
                    "--name",
                    name,
                    *extra_args,
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        worker = WorkerProcess(name, process, log_path, time.monotonic())
        self.all.append(worker)
        return worker

    def alive(self) -> list[WorkerProcess]:
        return [w for w in self.all if w.alive()]

    def sigkill(self, worker: WorkerProcess) -> None:
        os.kill(worker.pid, signal.SIGKILL)
        worker.process.wait(timeout=10)
        self.killed.append(worker)

    def assert_survivors_alive(self) -> None:
        """Every worker not killed on purpose must still be running."""
        dead = [w for w in self.all if w not in self.killed and not w.alive()]
        assert not dead, "worker(s) exited unexpectedly:\n" + "\n\n".join(
            f"{w.name} (pid {w.pid}, exit {w.process.returncode}):\n{w.log_tail()}" for w in dead
        )

    def stop_all(self, timeout: float = 25.0) -> None:
        """SIGTERM every live worker, wait, then SIGKILL any that is left; each by its pid."""
        for worker in self.all:
            if worker.alive():
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for worker in self.all:
            try:
                worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(w.log_path.read_text(errors="replace") for w in self.all)


# -- one scenario run ----------------------------------------------------------------------


@dataclass
class RunCounts:
    """What the invariant check found, for the scenario's own assertions and the report."""

    jobs: int
    runs_by_status: dict[str, int] = field(default_factory=dict)

    @property
    def abandoned(self) -> int:
        return self.runs_by_status.get("abandoned", 0)

    @property
    def retrying(self) -> int:
        return self.runs_by_status.get("retrying", 0)


class ChaosRun:
    """The database, an opened Orchestrator (for enqueueing) and the workers of one scenario."""

    def __init__(
        self,
        database_url: str,
        work_dir: Path,
        *,
        worker_env: dict[str, str] | None = None,
        connect_timeout: float = 10.0,
        registry: Registry | None = None,
    ) -> None:
        self.database_url = database_url
        self.db = Db(database_url)
        self.orch = Orchestrator(
            settings_for_tests(connect_timeout=connect_timeout),
            registry=registry or registry_for_tests(),
            schedules=[],
            database_url=database_url,
        )
        self.workers = WorkerSet(worker_env or subprocess_env(database_url), work_dir / "logs")
        self.started = time.monotonic()
        self.last_enqueue_s = 0.0

    async def __aenter__(self) -> Self:
        await self.orch.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.workers.stop_all()
        finally:
            try:
                await self.orch.close()
            finally:
                await self.db.close()

    # -- enqueue ---------------------------------------------------------------------------

    async def enqueue_rows(
        self,
        prefix: str,
        count: int,
        rng: random.Random,
        *,
        sleep: tuple[float, float] = (0.02, 0.05),
        priority: int | None = None,
        batch: int = ENQUEUE_BATCH,
    ) -> tuple[list[str], list[int]]:
        """Enqueue ``count`` write_row jobs in batches; return their keys and job ids."""
        keys = [f"{prefix}-{i:06d}" for i in range(count)]
        requests = [
            JobRequest(
                "write_row",
                {"key": key, "sleep": round(rng.uniform(*sleep), 4)},
                priority=priority,
            )
            for key in keys
        ]
        ids: list[int] = []
        for start in range(0, len(requests), batch):
            ids += await self.orch.enqueue_many(requests[start : start + batch])
        assert len(ids) == count
        return keys, ids

    async def probe_start_latency(self, key: str, *, timeout: float = 15.0) -> float:
        """Enqueue one high-priority job; return seconds from its insert to its start.

        Measured on the server's clock, from the job's ``deferred`` event to its attempt's
        ``agent_runs.started_at``. How long the enqueue call itself took is kept in
        :attr:`last_enqueue_s`. Fails after ``timeout`` seconds.
        """
        began = time.monotonic()
        job_id = await self.orch.enqueue_workflow("write_row", {"key": key}, priority=100)
        self.last_enqueue_s = time.monotonic() - began
        deadline = time.monotonic() + timeout
        for _ in range(100_000):
            rows = await self.db.rows(
                "SELECT (SELECT min(started_at) FROM agent_runs WHERE job_id = %(id)s) AS started,"
                " (SELECT min(at) FROM procrastinate_events"
                "   WHERE job_id = %(id)s AND type = 'deferred') AS deferred",
                {"id": job_id},
            )
            if rows and rows[0]["started"] is not None:
                return float((rows[0]["started"] - rows[0]["deferred"]).total_seconds())
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.01)
        raise AssertionError(f"probe job {job_id} ({key}) did not start within {timeout} s")

    # -- waiting ---------------------------------------------------------------------------

    async def job_states(self, job_ids: Sequence[int]) -> dict[str, int]:
        rows = await self.db.rows(
            "SELECT status::text AS status, count(*) AS n FROM procrastinate_jobs"
            " WHERE id = ANY(%s) GROUP BY status",
            [list(job_ids)],
        )
        return {r["status"]: int(r["n"]) for r in rows}

    async def wait_until_done(
        self, job_ids: Sequence[int], *, timeout: float = DONE_TIMEOUT
    ) -> float:
        """Wait until every job succeeded and no job at all is left in ``doing``.

        Returns the seconds waited. Fails early if a job failed for good.
        """
        started = time.monotonic()
        deadline = started + timeout
        states: dict[str, int] = {}
        for _ in range(100_000):
            states = await self.job_states(job_ids)
            if states.get("failed"):
                runs = await self.db.rows(
                    "SELECT job_id, attempt, status::text AS status, error ->> 'type' AS type,"
                    " left(error ->> 'message', 300) AS message FROM agent_runs"
                    " WHERE job_id = ANY(%s) ORDER BY id DESC LIMIT 8",
                    [list(job_ids)],
                )
                logs = "\n\n".join(f"{w.name}:\n{w.log_tail(1500)}" for w in self.workers.all)
                raise AssertionError(f"jobs failed: {states}; last runs: {runs}\n{logs}")
            if states.get("succeeded", 0) == len(job_ids):
                doing = await self.db.value(
                    "SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing'"
                )
                if doing == 0:
                    return time.monotonic() - started
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        stuck = await self.db.rows(
            "SELECT id, task_name, status::text AS status, worker_id FROM procrastinate_jobs"
            " WHERE status IN ('doing', 'todo') ORDER BY id LIMIT 10"
        )
        stuck_ids = [row["id"] for row in stuck]
        runs = await self.db.rows(
            "SELECT job_id, id, attempt, status::text AS status, worker, worker_id, started_at,"
            " finished_at, error ->> 'type' AS type FROM agent_runs WHERE job_id = ANY(%s)"
            " ORDER BY id",
            [stuck_ids],
        )
        events = await self.db.rows(
            "SELECT job_id, type::text AS type, at FROM procrastinate_events"
            " WHERE job_id = ANY(%s) ORDER BY id",
            [stuck_ids],
        )
        workers = await self.db.rows(
            "SELECT id, now() - last_heartbeat AS silent FROM procrastinate_workers ORDER BY id"
        )
        logs = "\n\n".join(f"{w.name}:\n{w.log_tail(1500)}" for w in self.workers.all)
        raise AssertionError(
            f"jobs not done within {timeout} s: {states}; unfinished: {stuck}\n"
            f"their runs: {runs}\nevents: {events}\nworkers: {workers}\n{logs}"
        )

    # -- invariants ------------------------------------------------------------------------

    async def check_invariants(
        self, job_ids: Sequence[int], keys: Sequence[str], *, exact_effects: bool = True
    ) -> RunCounts:
        """What must hold after any fault, for the jobs ``job_ids`` writing ``keys``.

        Every job succeeded; every key's row exists exactly once (and, with ``exact_effects``,
        no other row exists); each job has exactly one ``succeeded`` agent_runs row, written by
        the same attempt as its effect; no attempt is left ``running``; no job is ``doing``.
        """
        ids = list(job_ids)
        states = await self.job_states(ids)
        assert states == {"succeeded": len(ids)}, f"job states: {states}"
        # The workers' own periodic sweep (orchestrator.recover, every second) may be running
        # at this very instant: 'left in doing' means still doing a few seconds later.
        deadline = time.monotonic() + 5.0
        for _ in range(1_000):
            doing = await self.db.rows(
                "SELECT id, task_name FROM procrastinate_jobs WHERE status = 'doing'"
            )
            if not doing or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert not doing, f"jobs left in 'doing': {doing}"

        effects = await self.db.one(
            "SELECT count(*) AS total, count(DISTINCT key) AS distinct_keys,"
            " count(*) FILTER (WHERE key = ANY(%s)) AS expected FROM test_effects",
            [list(keys)],
        )
        assert effects["expected"] == len(keys), f"effects: {effects}, expected {len(keys)}"
        assert effects["distinct_keys"] == effects["total"], f"duplicate effects: {effects}"
        if exact_effects:
            assert effects["total"] == len(keys), f"unexpected effects: {effects}"

        bad = await self.db.rows(
            "SELECT j.id, count(r.id) FILTER (WHERE r.status = 'succeeded') AS successes"
            "  FROM unnest(%s::bigint[]) AS j(id) LEFT JOIN agent_runs r ON r.job_id = j.id"
            " GROUP BY j.id HAVING count(r.id) FILTER (WHERE r.status = 'succeeded') <> 1"
            " LIMIT 10",
            [ids],
        )
        assert not bad, f"jobs without exactly one succeeded run: {bad}"
        mismatched = await self.db.rows(
            "SELECT e.key, e.job_id, e.attempt, r.attempt AS run_attempt"
            "  FROM test_effects e JOIN agent_runs r"
            "    ON r.job_id = e.job_id AND r.status = 'succeeded'"
            " WHERE e.job_id = ANY(%s) AND r.attempt <> e.attempt LIMIT 10",
            [ids],
        )
        assert not mismatched, f"effects written by another attempt than the success: {mismatched}"
        running = await self.db.value("SELECT count(*) FROM agent_runs WHERE status = 'running'")
        assert running == 0, f"{running} agent_runs rows left 'running'"
        by_status = await self.db.rows(
            "SELECT status::text AS status, count(*) AS n FROM agent_runs"
            " WHERE job_id = ANY(%s) GROUP BY status",
            [ids],
        )
        return RunCounts(
            jobs=len(ids), runs_by_status={r["status"]: int(r["n"]) for r in by_status}
        )
