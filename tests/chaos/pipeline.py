"""Chaos on the real pipeline: PT4/PT5 against the local EmailBison stand-in, which logs every
request (the attempt that sent it, when, the emails of an upsert, the name of a rename).

A scenario builds a client-month of seeded leads, runs ``orchestrator worker`` subprocesses,
injects its faults and then checks what "nothing done twice at the edge" means::

    async with EdgeRun(database_url, tmp_path) as edge:
        job_id = await edge.enqueue_month()
        edge.run.workers.start()
        ...                                        # faults, each one counted
        await edge.run.wait_until_done([job_id])
        numbers = await edge.check([job_id], interruptions=n)

:meth:`EdgeRun.check` asserts, for the month: every lead stored once in the workspace with
its window; at most one upsert re-sending stored leads per interruption; not one request
from an attempt after it was fenced; one succeeded run per job; nothing left ``doing`` or
``running``. It returns the numbers each scenario records.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.chaos.harness import ChaosRun, WorkerProcess, pipeline_registry
from tests.fix_db import subprocess_env
from tests.fix_pipeline import make_leads, seed_leads
from workflows.clients import Client, ClientSpec, add_client
from workflows.standins.emailbison_server import LocalEmailBison, RequestRecord

MONTH = "2026-09"
UPSERT = "/api/leads/create-or-update/multiple"
KEY_ENV = "EMAILBISON_KEY_CHAOS"
#: Leads per renewal window: 2 chunks each, 8 chunks for the month.
PER_WINDOW = (750, 750, 750, 750)


@dataclass
class Interruption:
    """One fault: what, when (``time.time()``), and the job it hit."""

    kind: str
    at: float
    job_id: int | None = None


@dataclass
class EdgeNumbers:
    requests: int
    upserts: int
    resent_chunks: int
    fenced_requests: int
    cut_requests: int
    runs: dict[str, int] = field(default_factory=dict)
    error_types: dict[str, int] = field(default_factory=dict)


#: PT4's chunks in flight in these scenarios (ORCHESTRATOR_EMAILBISON_CONCURRENCY).
CHUNKS_IN_FLIGHT = 2


class EdgeRun:
    """The stand-in, the client, the database and the workers of one pipeline scenario."""

    def __init__(
        self,
        database_url: str,
        work_dir: Path,
        *,
        connect_timeout: float = 10.0,
        hnw_twin: bool = False,
        **worker_env: str,
    ) -> None:
        self.bison = LocalEmailBison()
        self.bison.start()
        self.key = f"eb-{secrets.token_hex(8)}"
        self.bison.add_workspace(self.key)
        self.campaign_id = self.bison.add_campaign(
            self.key, "Evergreen, Last Upload: August 22\u201331"
        )
        self.hnw_id = (
            self.bison.add_campaign(self.key, "Evergreen HNW, Last Upload: August 22\u201331")
            if hnw_twin
            else None
        )
        # PT4 chunks in flight at once: an interruption may leave each of them in doubt.
        worker_env.setdefault("ORCHESTRATOR_EMAILBISON_CONCURRENCY", str(CHUNKS_IN_FLIGHT))
        self.chunks_in_flight = int(worker_env["ORCHESTRATOR_EMAILBISON_CONCURRENCY"])
        env = subprocess_env(
            database_url,
            # the stand-in is plain http on 127.0.0.1
            ORCHESTRATOR_EMAILBISON_ALLOW_HTTP_LOOPBACK="1",
            **{KEY_ENV: self.key, **worker_env},
        )
        self.run = ChaosRun(
            database_url,
            work_dir,
            worker_env=env,
            connect_timeout=connect_timeout,
            registry=pipeline_registry(),
        )
        self.env = env
        self.client: Client | None = None
        self.interruptions: list[Interruption] = []

    async def __aenter__(self) -> Self:
        try:
            await self.run.__aenter__()
        except BaseException:
            self.bison.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.run.__aexit__(exc_type, exc, tb)
        finally:
            self.bison.stop()

    # -- set-up ------------------------------------------------------------------------------

    async def make_client(self, per_window: Sequence[int] = PER_WINDOW) -> Client:
        spec = ClientSpec(
            name="Chaos Insurance",
            tier=100,
            licensed_states=["TX"],
            approved_zips=["75001", "75002"],
            emailbison_url=self.bison.base_url,
            emailbison_key_env=KEY_ENV,
            evergreen_campaign_id=self.campaign_id,
            evergreen_hnw_campaign_id=self.hnw_id,
        )
        async with self.run.orch.transaction() as conn:
            self.client = await add_client(conn, spec)
        await seed_leads(
            self.run.orch, self.client, MONTH, make_leads(list(per_window), hnw_every=10)
        )
        return self.client

    async def enqueue_month(self) -> int:
        assert self.client is not None
        return await self.run.orch.enqueue_workflow(
            "pt4", {"client": self.client.name, "month": MONTH}
        )

    # -- observing ---------------------------------------------------------------------------

    async def running_pid(self, job_id: int, *, timeout: float = 30.0) -> int:
        """The pid of the worker process running ``job_id``'s current attempt."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = await self.run.db.rows(
                "SELECT split_part(split_part(worker, '#', 1), ':', 2)::int AS pid"
                " FROM agent_runs WHERE job_id = %s AND status = 'running'",
                [job_id],
            )
            pids = {w.pid for w in self.run.workers.alive()}
            for row in rows:
                if row["pid"] in pids:
                    return int(row["pid"])
            await asyncio.sleep(0.05)
        raise AssertionError(f"job {job_id} not running on a live worker within {timeout} s")

    def worker(self, pid: int) -> WorkerProcess:
        return next(w for w in self.run.workers.all if w.pid == pid)

    async def until(self, condition: Any, what: str, *, timeout: float = 30.0) -> None:
        """Wait (polling every 10 ms) until ``await condition()`` is true."""
        deadline = time.monotonic() + timeout
        for _ in range(1_000_000):
            if await condition():
                return
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.01)
        raise AssertionError(f"{what}: not within {timeout} s")

    def upserts_seen(self) -> int:
        """Upsert requests that reached the stand-in, answered or not yet."""
        return sum(1 for r in self.bison.requests if r.path == UPSERT)

    async def upserts_done(self) -> int:
        return sum(1 for r in self.bison.requests if r.path == UPSERT and r.status == 200)

    async def wait_for_upserts(self, count: int, *, timeout: float = 60.0) -> None:
        async def enough() -> bool:
            return await self.upserts_done() >= count

        await self.until(enough, f"{count} upserts", timeout=timeout)

    async def wait_running(self, job_id: int, *, timeout: float = 30.0) -> None:
        async def running() -> bool:
            return bool(
                await self.run.db.value(
                    "SELECT count(*) FROM agent_runs WHERE job_id = %s AND status = 'running'",
                    [job_id],
                )
            )

        await self.until(running, f"job {job_id} running", timeout=timeout)

    # -- faults ------------------------------------------------------------------------------

    def interrupt(self, kind: str, pid: int, job_id: int | None, sig: int) -> None:
        self.interruptions.append(Interruption(kind, time.time(), job_id))
        os.kill(pid, sig)
        if sig == signal.SIGKILL:
            worker = self.worker(pid)
            worker.process.wait(timeout=10)
            self.run.workers.killed.append(worker)

    async def back_running_after(self) -> list[float | None]:
        """For each interruption of a job: seconds until an attempt of it started again."""
        delays: list[float | None] = []
        for event in self.interruptions:
            if event.job_id is None:
                continue
            started = await self.run.db.value(
                "SELECT min(EXTRACT(EPOCH FROM started_at)) FROM agent_runs"
                " WHERE job_id = %s AND EXTRACT(EPOCH FROM started_at) > %s",
                [event.job_id, event.at],
            )
            delays.append(None if started is None else round(float(started) - event.at, 2))
        return delays

    # -- what must hold ----------------------------------------------------------------------

    async def check(self, job_ids: Sequence[int], *, interruptions: int) -> EdgeNumbers:
        ids = list(job_ids)
        states = await self.run.job_states(ids)
        assert states == {"succeeded": len(ids)}, f"job states: {states}"

        async def nothing_doing() -> bool:  # a periodic sweep may be running right now
            return not await self.run.db.value(
                "SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing'"
            )

        await self.until(nothing_doing, "no job left doing", timeout=5.0)
        running = await self.run.db.value(
            "SELECT count(*) FROM agent_runs WHERE status = 'running'"
        )
        assert running == 0, f"{running} attempts left running"
        bad = await self.run.db.rows(
            "SELECT j.id, count(r.id) FILTER (WHERE r.status = 'succeeded') AS successes"
            "  FROM unnest(%s::bigint[]) AS j(id) LEFT JOIN agent_runs r ON r.job_id = j.id"
            " GROUP BY j.id HAVING count(r.id) FILTER (WHERE r.status = 'succeeded') <> 1",
            [ids],
        )
        assert not bad, f"jobs without exactly one succeeded run: {bad}"

        await self._check_store()
        requests = self.bison.requests
        resent = _resent_chunks(requests)
        fenced = await self._fenced_requests(requests)
        # At most the chunks in flight are sent twice per interruption.
        assert resent <= interruptions * self.chunks_in_flight, (
            f"{resent} chunks re-sent for {interruptions} faults"
        )
        assert fenced == [], f"requests from fenced attempts: {fenced}"
        runs = await self.run.db.rows(
            "SELECT status::text AS status, COALESCE(error ->> 'type', '-') AS type, count(*) AS n"
            " FROM agent_runs GROUP BY 1, 2"
        )
        by_status: dict[str, int] = {}
        by_type: dict[str, int] = {}
        for row in runs:
            by_status[row["status"]] = by_status.get(row["status"], 0) + int(row["n"])
            if row["type"] != "-":
                by_type[row["type"]] = by_type.get(row["type"], 0) + int(row["n"])
        return EdgeNumbers(
            requests=len(requests),
            upserts=sum(1 for r in requests if r.path == UPSERT),
            resent_chunks=resent,
            fenced_requests=len(fenced),
            cut_requests=len(self.bison.cut_requests),
            runs=by_status,
            error_types=by_type,
        )

    async def _check_store(self) -> None:
        """Every lead of the month in the workspace once (EmailBison keys leads by email),
        carrying the window it was uploaded for."""
        rows = await self.run.db.rows(
            "SELECT wl.email, w.list_name FROM window_leads wl"
            " JOIN renewal_windows w ON w.id = wl.window_id"
        )
        expected = {r["email"].lower(): r["list_name"] for r in rows}
        stored = self.bison.leads(self.key)
        emails = [lead["email"].lower() for lead in stored]
        assert len(emails) == len(set(emails)), "an email stored twice"
        assert set(emails) == set(expected), (
            f"{len(set(expected) - set(emails))} leads missing, "
            f"{len(set(emails) - set(expected))} unexpected"
        )
        windows = {
            lead["email"].lower(): {v["name"]: v["value"] for v in lead["custom_variables"]}.get(
                "renewal_window"
            )
            for lead in stored
        }
        wrong = [e for e, window in windows.items() if window != expected[e]]
        assert not wrong, f"{len(wrong)} leads stored with another window, e.g. {wrong[:3]}"

    async def _fenced_requests(self, requests: list[RequestRecord]) -> list[dict[str, Any]]:
        """Requests that reached the server after the attempt sending them was fenced."""
        fenced = await self.run.db.rows(
            "SELECT id, EXTRACT(EPOCH FROM finished_at)::float8 AS at FROM agent_runs"
            " WHERE status = 'abandoned'"
        )
        fenced_at = {int(r["id"]): float(r["at"]) for r in fenced}
        return [
            {
                "run": r.run_id,
                "path": r.path,
                "late_s": round(r.received_at - fenced_at[r.run_id], 3),
            }
            for r in requests
            if r.run_id in fenced_at and r.received_at > fenced_at[r.run_id]
        ]

    def renames(self) -> list[str]:
        return [
            r.name
            for r in self.bison.requests
            if r.method == "PATCH" and r.status == 200 and r.name is not None
        ]


def _resent_chunks(requests: list[RequestRecord]) -> int:
    """Successful upserts that carried at least one lead an earlier one had already stored."""
    stored: set[str] = set()
    resent = 0
    for record in requests:
        if record.path != UPSERT or record.status != 200:
            continue
        if stored.intersection(record.emails):
            resent += 1
        stored.update(record.emails)
    return resent
