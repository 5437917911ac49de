"""Nothing done twice at the edge: PT4/PT5 under worker kills, stops, pauses, duplicate and
late starts, a database restart and a client timeout, against the local EmailBison stand-in.

Every scenario ends with :meth:`tests.chaos.pipeline.EdgeRun.check`: each lead stored once
with its window, at most one re-sent chunk per interruption, no request from a fenced
attempt, one succeeded run per job, nothing left doing — and the month finished without a
manual retry. Loops are bounded in count and time; the numbers go to "chaos measurements".
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from orchestrator._database import with_database
from orchestrator._migrate import upgrade
from tests.chaos.harness import record, run_cli
from tests.chaos.own_server import OwnPostgres
from tests.chaos.pipeline import UPSERT, EdgeRun, Interruption
from workflows.windows import upload_date_for_window, windows_for_month

pytestmark = pytest.mark.chaos

#: Seconds each stand-in request takes: a chunk is in flight most of the time.
SLOW = 0.2
DONE_TIMEOUT = 90.0


async def test_random_sigkills_during_pt4(database_url: str, tmp_path: Path) -> None:
    rng = random.Random(8181)
    async with EdgeRun(database_url, tmp_path) as edge:
        await edge.make_client()
        edge.bison.slow_seconds = SLOW
        job_id = await edge.enqueue_month()
        started = time.monotonic()
        edge.run.workers.start()
        edge.run.workers.start()
        kills = 0
        for _ in range(5):
            pid = await edge.running_pid(job_id)
            await asyncio.sleep(rng.uniform(0.7, 2.0))
            state = await edge.run.job_states([job_id])
            if state.get("succeeded"):
                break
            if pid not in {w.pid for w in edge.run.workers.alive()}:
                continue
            edge.interrupt("sigkill", pid, job_id, signal.SIGKILL)
            kills += 1
            edge.run.workers.start()
        await edge.run.wait_until_done([job_id], timeout=DONE_TIMEOUT)
        numbers = await edge.check([job_id], interruptions=kills)
        back = await edge.back_running_after()
        record(
            "pipeline: random SIGKILL during PT4",
            kills=kills,
            resent_chunks=numbers.resent_chunks,
            fenced_requests=numbers.fenced_requests,
            kill_to_running_again_s=back,
            runs=numbers.runs,
            wall_s=time.monotonic() - started,
        )
        assert kills >= 3
        assert all(delay is not None for delay in back)


async def test_sigkill_right_after_an_answer(database_url: str, tmp_path: Path) -> None:
    rng = random.Random(4040)
    async with EdgeRun(database_url, tmp_path) as edge:
        await edge.make_client()
        edge.bison.slow_seconds = SLOW / 2
        job_id = await edge.enqueue_month()
        worker = edge.run.workers.start()
        answered = 0
        targets = {2, 5}  # kill after the 2nd and 5th stored chunk
        kill_events: list[threading.Event] = []
        victim = {"pid": worker.pid}

        def after_answer(record: object) -> None:
            nonlocal answered
            if getattr(record, "path", "") != UPSERT or getattr(record, "status", 0) != 200:
                return
            answered += 1
            if answered in targets:
                done = threading.Event()
                kill_events.append(done)
                delay = rng.uniform(0.0, 0.040)

                def kill() -> None:
                    edge.interrupt("sigkill after answer", victim["pid"], job_id, signal.SIGKILL)
                    done.set()

                threading.Timer(delay, kill).start()

        edge.bison.on_answered = after_answer
        started = time.monotonic()
        for expected in (1, 2):
            while len(kill_events) < expected or not kill_events[expected - 1].is_set():
                if time.monotonic() - started > DONE_TIMEOUT:
                    raise AssertionError("the kills never happened")
                await asyncio.sleep(0.02)
            victim["pid"] = edge.run.workers.start().pid
        await edge.run.wait_until_done([job_id], timeout=DONE_TIMEOUT)
        numbers = await edge.check([job_id], interruptions=len(kill_events))
        record(
            "pipeline: SIGKILL 0-40 ms after a 200",
            kills=len(kill_events),
            resent_chunks=numbers.resent_chunks,
            fenced_requests=numbers.fenced_requests,
            kill_to_running_again_s=await edge.back_running_after(),
            runs=numbers.runs,
            wall_s=time.monotonic() - started,
        )


async def test_sigterm_mid_upload_drains_longer_than_stalled_after(
    database_url: str, tmp_path: Path
) -> None:
    # Each stopped chunk's answer takes 2.5 s, longer than STALLED_AFTER (2 s): the stopping
    # worker must keep its heartbeat so the other worker's recovery leaves the job alone.
    async with EdgeRun(database_url, tmp_path, ORCHESTRATOR_SHUTDOWN_TIMEOUT="5") as edge:
        await edge.make_client()
        edge.bison.slow_seconds = SLOW / 2
        job_id = await edge.enqueue_month()
        edge.run.workers.start()
        edge.run.workers.start()
        started = time.monotonic()
        drains: list[float] = []
        for _ in range(4):
            pid = await edge.running_pid(job_id)
            before = await edge.upserts_done()
            count = edge.upserts_seen()
            edge.bison.slow_answer_next(2.5, path_contains=UPSERT)

            async def arrived(count: int = count) -> bool:
                return edge.upserts_seen() > count

            await edge.until(arrived, "the slow chunk")  # in flight now: SIGTERM mid-request
            worker = edge.worker(pid)
            edge.interrupt("sigterm", pid, job_id, signal.SIGTERM)
            began = time.monotonic()
            code = await asyncio.to_thread(worker.process.wait, 20)
            drains.append(round(time.monotonic() - began, 2))
            assert code == 0, worker.log_tail()
            # the chunks in flight finished (the slow one among them)
            assert before + 1 <= await edge.upserts_done() <= before + edge.chunks_in_flight
            edge.run.workers.start()
        await edge.run.wait_until_done([job_id], timeout=DONE_TIMEOUT)
        numbers = await edge.check([job_id], interruptions=len(drains))
        record(
            "pipeline: SIGTERM mid-upload (2 s grace in use)",
            sigterms=len(drains),
            drain_s=drains,
            cut_requests=numbers.cut_requests,
            resent_chunks=numbers.resent_chunks,
            fenced_requests=numbers.fenced_requests,
            stop_to_running_again_s=await edge.back_running_after(),
            runs=numbers.runs,
            wall_s=time.monotonic() - started,
        )
        assert numbers.cut_requests == 0
        assert numbers.resent_chunks == 0
        assert numbers.runs.get("abandoned", 0) == 0  # no attempt taken from a draining worker
        assert numbers.error_types.get("WorkerStopping", 0) == len(drains)


async def test_sigstop_past_stalled_after_then_sigcont(database_url: str, tmp_path: Path) -> None:
    async with EdgeRun(database_url, tmp_path) as edge:
        await edge.make_client()
        edge.bison.slow_seconds = SLOW
        job_id = await edge.enqueue_month()
        edge.run.workers.start()
        edge.run.workers.start()
        started = time.monotonic()
        await edge.wait_for_upserts(2)
        pid = await edge.running_pid(job_id)
        edge.interrupt("sigstop", pid, job_id, signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            # STALLED_AFTER (2 s) + a sweep (1 s): the other worker takes the job over
            async def taken_over() -> bool:
                return bool(
                    await edge.run.db.value(
                        "SELECT count(*) FROM agent_runs WHERE job_id = %s AND status = 'running'"
                        " AND split_part(split_part(worker, '#', 1), ':', 2)::int <> %s",
                        [job_id, pid],
                    )
                )

            await edge.until(taken_over, "the paused worker's job taken over", timeout=20)
            taken_over_s = time.monotonic() - stopped
            await asyncio.sleep(1.0)  # the new attempt is uploading
        finally:
            os.kill(pid, signal.SIGCONT)
        await edge.run.wait_until_done([job_id], timeout=DONE_TIMEOUT)
        numbers = await edge.check([job_id], interruptions=1)
        fenced_runs = await edge.run.db.rows(
            "SELECT error ->> 'type' AS type FROM agent_runs WHERE job_id = %s"
            " AND status = 'abandoned'",
            [job_id],
        )
        record(
            "pipeline: SIGSTOP past STALLED_AFTER, then SIGCONT",
            pauses=1,
            taken_over_after_s=round(taken_over_s, 2),
            paused_attempt=[r["type"] for r in fenced_runs],
            resent_chunks=numbers.resent_chunks,
            fenced_requests=numbers.fenced_requests,
            runs=numbers.runs,
            wall_s=time.monotonic() - started,
        )
        assert [r["type"] for r in fenced_runs] in (["Fenced"], ["WorkerLost"])


async def test_concurrent_and_late_run_week(database_url: str, tmp_path: Path) -> None:
    week1 = upload_date_for_window(windows_for_month(2026, 9)[0])
    week2 = upload_date_for_window(windows_for_month(2026, 9)[1])
    async with EdgeRun(database_url, tmp_path, hnw_twin=True) as edge:
        client = await edge.make_client((300, 300, 100, 100))
        month = await edge.enqueue_month()
        edge.run.workers.start()
        await edge.run.wait_until_done([month], timeout=DONE_TIMEOUT)
        started = time.monotonic()

        # twice at once; the first attach is held back a few seconds, so a third run-week
        # comes while the job runs
        edge.bison.slow_answer_next(6.0, path_contains="attach")
        first, second = await asyncio.gather(
            run_cli(edge.env, "run-week", client.name, str(week2)),
            run_cli(edge.env, "run-week", client.name, str(week2)),
        )
        assert first.code == second.code == 0, first.stderr + second.stderr
        ids = {int(first.stdout.split()[-1]), int(second.stdout.split()[-1])}
        assert len(ids) == 1, (first.stdout, second.stdout)
        [job_id] = ids
        said = first.stdout + second.stdout
        assert f"upload date {week2} started" in said
        assert f"already queued as job {job_id}" in said or f"already running as job {job_id}" in (
            said
        )
        await edge.wait_running(job_id)
        third = await run_cli(edge.env, "run-week", client.name, str(week2))
        assert f"already running as job {job_id}" in third.stdout, third.stdout + third.stderr
        await edge.run.wait_until_done([job_id], timeout=DONE_TIMEOUT)

        # a late PT5 for the week before
        late = await run_cli(edge.env, "run-week", client.name, str(week1))
        late_id = int(late.stdout.split()[-1])
        await edge.run.wait_until_done([late_id], timeout=DONE_TIMEOUT)

        numbers = await edge.check([month, job_id, late_id], interruptions=0)
        attaches = [r for r in edge.bison.requests if "attach" in r.path and r.status == 200]
        renames = edge.renames()
        names = {
            cid: edge.bison.campaign(edge.key, cid)["name"]
            for cid in (edge.campaign_id, edge.hnw_id)
            if cid is not None
        }
        record(
            "pipeline: concurrent and late run-week",
            run_week_calls=4,
            pt5_jobs=len({job_id, late_id}),
            attach_calls=len(attaches),
            renames=renames,
            fenced_requests=numbers.fenced_requests,
            wall_s=time.monotonic() - started,
        )
        assert len(attaches) == 2  # one per campaign, for week 2 only
        assert sorted(renames) == sorted(
            [
                "Evergreen, Last Upload: September 8\u201314",
                "Evergreen HNW, Last Upload: September 8\u201314",
            ]
        )
        assert all("September 8" in name for name in names.values())
        statuses = await edge.run.db.rows(
            "SELECT upload_date, status, count(*) AS n FROM evergreen_updates GROUP BY 1, 2"
            " ORDER BY 1"
        )
        assert [(r["upload_date"], r["status"], r["n"]) for r in statuses] == [
            (week1, "skipped_older", 2),
            (week2, "updated", 2),
        ]


async def test_client_timeout_on_a_stored_chunk(database_url: str, tmp_path: Path) -> None:
    async with EdgeRun(database_url, tmp_path, ORCHESTRATOR_EMAILBISON_TIMEOUT="1") as edge:
        await edge.make_client()
        job_id = await edge.enqueue_month()
        armed = False

        def after_answer(record: object) -> None:
            nonlocal armed
            if getattr(record, "path", "") == UPSERT and not armed:
                armed = True  # the next chunk is stored, its answer comes after 2 s
                edge.bison.slow_answer_next(2.0, path_contains=UPSERT)

        edge.bison.on_answered = after_answer
        started = time.monotonic()
        edge.run.workers.start()
        await edge.run.wait_until_done([job_id], timeout=DONE_TIMEOUT)
        numbers = await edge.check([job_id], interruptions=1)
        record(
            "pipeline: client timeout on a stored chunk",
            timeouts=1,
            resent_chunks=numbers.resent_chunks,
            cut_requests=numbers.cut_requests,
            fenced_requests=numbers.fenced_requests,
            runs=numbers.runs,
            wall_s=time.monotonic() - started,
        )
        assert numbers.resent_chunks == 1  # the in-doubt chunk, once
        assert numbers.runs == {"retrying": 1, "succeeded": 1}


async def test_postgres_restart_mid_month(tmp_path: Path) -> None:
    with OwnPostgres() as pg:
        with psycopg.connect(pg.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier("edge")))
        url = with_database(pg.url(), "edge")
        await asyncio.to_thread(upgrade, url)
        async with EdgeRun(
            url, tmp_path, connect_timeout=2, ORCHESTRATOR_CONNECT_TIMEOUT="2"
        ) as edge:
            await edge.make_client()
            edge.bison.slow_seconds = SLOW
            job_id = await edge.enqueue_month()
            edge.run.workers.start()
            edge.run.workers.start()
            started = time.monotonic()
            restarts = 0
            for upserts in (2, 5):
                await edge.wait_for_upserts(upserts)
                edge.interruptions.append(Interruption("restart", time.time(), job_id))
                await asyncio.to_thread(pg.stop, "fast")
                await asyncio.sleep(2.0)
                await asyncio.to_thread(pg.start)
                restarts += 1
            await edge.run.wait_until_done([job_id], timeout=DONE_TIMEOUT)
            edge.run.workers.assert_survivors_alive()
            numbers = await edge.check([job_id], interruptions=restarts)
            record(
                "pipeline: PostgreSQL restart mid-month",
                restarts=restarts,
                resent_chunks=numbers.resent_chunks,
                fenced_requests=numbers.fenced_requests,
                restart_to_running_again_s=await edge.back_running_after(),
                runs=numbers.runs,
                error_types=numbers.error_types,
                wall_s=time.monotonic() - started,
            )
            assert "WorkerLost" not in numbers.error_types  # outages are not dead workers
            assert "AbandonLimit" not in numbers.error_types
