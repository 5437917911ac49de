"""Limits: uploads and email checks at a provider's pace, shared by workers and clients.

Providers here are the local stand-ins answering after :data:`LATENCY` (300 ms, a real
provider's time) and refusing with 429 above their rate; the product runs in real
``orchestrator worker`` processes with the shared limits set to the providers' rates. Every
figure stands beside its bound, measured in the same run:

- PT4 alone, 20 req/s allowed: leads/s beside the allowed 20 x 500 leads/s (goal ≥ 90%),
  beside the same upload sent one chunk at a time (as before chunks went concurrently), and
  the 429s the stand-in sent (bound: 0);
- PT4 of two clients on one instance at once, two worker processes: the combined rate
  beside the allowed one, the most requests the stand-in saw in any one-second window beside
  the limit's burst plus one second's rate, the 429s (bound 0), and each client's share of the
  requests while both were uploading beside an even share;
- PT2's Debounce checks at 10 req/s allowed: checks/s beside the allowed rate (goal ≥ 90%)
  and the 429s (bound 0).

Leads are written straight into ``cleaned_leads`` (as PT1-PT3 would leave them), so the
uploads are all that is measured; PT2 runs on raw rows PT1 loaded from synthetic exports.
"""

from __future__ import annotations

import datetime
import secrets
import shutil
import time
from typing import Any

from bench.book import add_bench_client, write_exports
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
from workflows.pt4_emailbison_upload import CUSTOM_VARIABLES
from workflows.settings import PipelineSettings
from workflows.standins.debounce_server import LocalDebounce
from workflows.standins.emailbison_server import LocalEmailBison, RequestRecord

FAMILY = "limits"
#: PT4's chunks in flight unless configured (ORCHESTRATOR_EMAILBISON_CONCURRENCY).
DEFAULT_CONCURRENCY = PipelineSettings.model_fields["emailbison_concurrency"].default
LATENCY = 0.3
BISON_RATE = 20.0
DEBOUNCE_RATE = 10.0
BURST = 1
MONTH = "2027-03"
UPSERT = "/api/leads/create-or-update/multiple"
STATES = ("TX", "OK")
ZIPS = tuple(f"{75001 + i}" for i in range(20))

_SEED = """
WITH f AS (
    INSERT INTO cole_files (client_id, month, file_name, sha256, encoding, row_count,
                            bad_row_count, new_people)
    VALUES (%(c)s, %(m)s, 'bench.csv', md5(%(c)s::text || 'bench'), 'utf-8', %(n)s, 0, %(n)s)
    RETURNING id
), raw AS (
    INSERT INTO raw_leads (client_id, month, file_id, row_number, first_name, last_name,
                           state, zip, zip5, email_address, head_household, dedupe_key)
    SELECT %(c)s, %(m)s, f.id, g + 1, 'First' || g, 'Last' || g, 'TX', '75001', '75001',
           %(p)s || g || '@example.com', 'Y', 'bench:' || %(p)s || g
      FROM f, generate_series(1, %(n)s) g
    RETURNING id, row_number - 1 AS g
)
INSERT INTO cleaned_leads (client_id, month, raw_lead_id, dedupe_key, first_name,
                           greeting_name, last_name, email, address_1, city, state, zip,
                           cell_phone, date_of_birth, home_value, purchase_date,
                           readable_purchase_date, purchase_day, renewal_date, window_index,
                           segment, email_check)
SELECT %(c)s, %(m)s, raw.id, 'bench:' || %(p)s || raw.g, 'First' || raw.g, 'First' || raw.g,
       'Last' || raw.g, %(p)s || raw.g || '@example.com', '12 Main St', 'Dallas', 'TX',
       '75001', '(512) 555-0100', '01/02/1970', 450000, make_date(2015, 3, d.day),
       'March ' || d.day, d.day, make_date(2027, 3, d.day), d.w, 'standard', 'syntax'
  FROM raw, LATERAL (SELECT (raw.g %% 4) + 1 AS w,
                            ((raw.g %% 4) * 7 + 3) AS day) d
"""


async def _client(orch: Orchestrator, name: str, url: str, key_env: str) -> int:
    async with orch.pool.connection() as conn:
        client = await add_bench_client(
            conn, name, tier=100, emailbison_url=url, key_env=key_env, states=STATES, zips=ZIPS
        )
    return client.id


async def _seed(url: str, client_id: int, prefix: str, leads: int) -> None:
    async with await connect(url) as conn:
        await conn.execute(
            _SEED, {"c": client_id, "m": datetime.date(2027, 3, 1), "p": prefix, "n": leads}
        )
        await conn.commit()


async def _pt4_runs(url: str) -> dict[str, dict[str, Any]]:
    conn = await polling_connection(url)
    cursor = await conn.execute(
        """
        SELECT input ->> 'client', status::text,
               extract(epoch FROM finished_at - started_at), output, error ->> 'message'
          FROM agent_runs WHERE workflow = 'pt4' AND status <> 'running' ORDER BY id
        """
    )
    return {
        row[0]: {"status": row[1], "seconds": float(row[2]), "output": row[3], "error": row[4]}
        for row in await cursor.fetchall()
    }


async def _upload(
    bench: Bench, url: str, clients: int, leads: int, processes: int, concurrency: int | None = None
) -> tuple[LocalEmailBison, dict[str, dict[str, Any]], dict[str, float]]:
    """``clients`` clients with ``leads`` each, one workspace each on one stand-in; their
    PT4s enqueued together and run by ``processes`` worker processes."""
    bison = LocalEmailBison(latency=LATENCY, rate_limit_per_second=BISON_RATE)
    base_url = start_standin(bison)
    keys: dict[str, str] = {}
    names: dict[str, str] = {}  # key -> client name
    try:
        orch = Orchestrator(load_settings(), database_url=url)
        await orch.open()
        try:
            for i in range(clients):
                key, env_name, name = secrets.token_hex(16), f"EMAILBISON_KEY_BENCH{i}", f"C{i}"
                bison.add_workspace(key)
                for variable in CUSTOM_VARIABLES:
                    bison.add_custom_variable(key, variable)
                client_id = await _client(orch, name, base_url, env_name)
                await _seed(url, client_id, f"c{i}lead", leads)
                keys[env_name] = key
                names[key] = name
            env = worker_env(
                url,
                ORCHESTRATOR_EMAILBISON_RATE_LIMIT=str(BISON_RATE),
                ORCHESTRATOR_EMAILBISON_RATE_BURST=str(BURST),
                ORCHESTRATOR_EMAILBISON_ALLOW_HTTP_LOOPBACK="1",
                **keys,
                # the product's default unless a figure asks for another
                **(
                    {}
                    if concurrency is None
                    else {"ORCHESTRATOR_EMAILBISON_CONCURRENCY": str(concurrency)}
                ),
            )
            async with Processes() as procs:
                for p in range(processes):
                    procs.start(orchestrator_worker(), env, f"limits-{clients}x{p}")
                for name in names.values():
                    await orch.enqueue_workflow("pt4", {"client": name, "month": MONTH})
                runs: dict[str, dict[str, Any]] = {}

                async def finished() -> bool:
                    procs.check_alive()
                    runs.update(await _pt4_runs(url))
                    failed = [r for r in runs.values() if r["status"] != "succeeded"]
                    if failed:
                        raise RuntimeError(f"bench: PT4 failed: {failed[0]}")
                    return len(runs) == clients

                cpu_before = time.process_time()
                await wait_until(finished, timeout=600, interval=0.2, what="the uploads")
                requests = max(1, bison.request_count(path_contains=UPSERT))
                cpu = {
                    "worker_ms_per_request": procs.cpu_seconds() / requests * 1000,
                    "standin_ms_per_request": (time.process_time() - cpu_before) / requests * 1000,
                }
                progress(
                    f"limits: CPU per upsert (worker start-up included): workers "
                    f"{cpu['worker_ms_per_request']:.0f} ms, the stand-in "
                    f"{cpu['standin_ms_per_request']:.0f} ms"
                )
        finally:
            await orch.close()
    finally:
        bison.stop()
    return bison, runs, cpu


def _most_in_window(times: list[float], width: float) -> int:
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while t - ordered[start] > width:
            start += 1
        best = max(best, end - start + 1)
    return best


async def _pt4_one_at_a_time(bench: Bench, url: str) -> float:
    """leads/s of PT4 sending one chunk at a time (concurrency 1), the same-run reference."""
    _, runs, _ = await _upload(
        bench, url, clients=1, leads=bench.scale(20_000, 8_000), processes=1, concurrency=1
    )
    [run] = runs.values()
    sent = sum(int(w["sent_this_run"]) for w in run["output"]["windows"])
    return sent / float(run["seconds"])


async def _pt4_alone(bench: Bench, url: str, one_at_a_time: float) -> list[Result]:
    leads = bench.scale(100_000, 30_000)
    bison, runs, cpu = await _upload(bench, url, clients=1, leads=leads, processes=1)
    [run] = runs.values()
    sent = sum(int(w["sent_this_run"]) for w in run["output"]["windows"])
    allowed = BISON_RATE * MAX_LEADS_PER_REQUEST
    progress(f"limits: PT4 alone, {sent:,} leads in {run['seconds']:.1f} s")
    return [
        Result(
            FAMILY,
            f"PT4 alone, {sent:,} leads, provider at {LATENCY * 1000:.0f} ms",
            sent / run["seconds"],
            "leads/s",
            baseline=allowed,
            baseline_name=f"allowed: {BISON_RATE:g} req/s x {MAX_LEADS_PER_REQUEST}",
            goal=Goal(0.9, at_least=True, on_ratio=True),
            extra={
                "seconds": run["seconds"],
                "requests": bison.request_count(path_contains=UPSERT),
                **cpu,
            },
        ),
        Result(
            FAMILY,
            f"PT4 alone, {DEFAULT_CONCURRENCY} chunks in flight (default) vs one at a time",
            sent / run["seconds"],
            "leads/s",
            baseline=one_at_a_time,
            baseline_name="same upload, one chunk at a time",
        ),
        _throttled_result("PT4 alone: 429s from EmailBison", bison.throttled),
    ]


async def _pt4_shared(bench: Bench, url: str) -> list[Result]:
    leads = bench.scale(50_000, 15_000)
    bison, runs, cpu = await _upload(bench, url, clients=2, leads=leads, processes=2)
    upserts = [r for r in bison.requests if r.path == UPSERT and r.status == 200]
    by_client: dict[str, list[RequestRecord]] = {}
    for record in upserts:
        owner = "C0" if record.emails and record.emails[0].startswith("c0") else "C1"
        by_client.setdefault(owner, []).append(record)
    both_from = max(min(r.received_at for r in rs) for rs in by_client.values())
    both_to = min(max(r.received_at for r in rs) for rs in by_client.values())
    overlap = {
        name: sum(1 for r in rs if both_from <= r.received_at <= both_to)
        for name, rs in by_client.items()
    }
    times = [r.received_at for r in bison.requests if r.path == UPSERT]
    span = max(times) - min(times)
    sent = sum(int(w["sent_this_run"]) for run in runs.values() for w in run["output"]["windows"])
    allowed = BISON_RATE * MAX_LEADS_PER_REQUEST
    share = overlap["C0"] / max(1, sum(overlap.values()))
    progress(
        f"limits: two clients, {sent:,} leads in {span:.1f} s, overlap {both_to - both_from:.1f}"
        f" s, requests in it {overlap}"
    )
    return [
        Result(
            FAMILY,
            f"PT4 two clients x {leads:,} leads, 2 workers, combined",
            # n requests at a limit of rate r and burst b take (n - b) / r seconds from the
            # first to the last: the requests after the burst, over the span
            (len(times) - BURST) / span,
            "req/s",
            baseline=BISON_RATE,
            baseline_name=f"allowed: {BISON_RATE:g} req/s (after a burst of {BURST})",
            goal=Goal(1.0, at_least=False, on_ratio=True),
            extra={
                "leads_per_s": sent / span,
                "allowed_leads_per_s": allowed,
                "seconds": span,
                "per_client_s": {n: r["seconds"] for n, r in runs.items()},
                **cpu,
            },
        ),
        Result(
            FAMILY,
            "PT4 two clients: most requests in any 1 s",
            float(_most_in_window(times, 1.0)),
            "req",
            baseline=BURST + BISON_RATE,
            baseline_name="limit: burst + 1 s x rate",
            goal=Goal(1.0, at_least=False, on_ratio=True),
        ),
        _throttled_result("PT4 two clients: 429s from EmailBison", bison.throttled),
        Result(
            FAMILY,
            "PT4 two clients: first client's share while both upload",
            share,
            "share",
            baseline=0.5,
            baseline_name="an even share",
            goal=Goal(0.8, at_least=True, on_ratio=True),
            extra={"requests_in_overlap": overlap, "overlap_s": both_to - both_from},
        ),
    ]


async def _debounce(bench: Bench, url: str) -> list[Result]:
    rows = bench.scale(1_200, 400)
    inbox = DATA_DIR / f"limits-inbox-{bench.run_id}"
    shutil.rmtree(inbox, ignore_errors=True)
    key = secrets.token_hex(12)
    debounce = LocalDebounce(key, latency=LATENCY, rate_limit_per_second=DEBOUNCE_RATE)
    start_standin(debounce)
    try:
        await write_exports(
            inbox, client="D0", month=MONTH, rows=rows, seed=7, states=STATES, zips=ZIPS
        )
        orch = Orchestrator(load_settings(), database_url=url)
        await orch.open()
        try:
            await _client(orch, "D0", "https://bison.invalid", "EMAILBISON_KEY_UNUSED")
            env = worker_env(
                url,
                ORCHESTRATOR_COLE_INBOX=str(inbox),
                ORCHESTRATOR_DEBOUNCE_API_KEY=key,
                ORCHESTRATOR_DEBOUNCE_URL=debounce.url,
                ORCHESTRATOR_DEBOUNCE_RATE_LIMIT=str(DEBOUNCE_RATE),
                ORCHESTRATOR_DEBOUNCE_RATE_BURST=str(BURST),
            )
            async with Processes() as procs:
                procs.start(orchestrator_worker(), env, "limits-debounce")
                for workflow in ("pt1", "pt2"):
                    job = await orch.enqueue_workflow(workflow, {"client": "D0", "month": MONTH})

                    async def done(job: int = job, workflow: str = workflow) -> bool:
                        procs.check_alive()
                        conn = await polling_connection(url)
                        cursor = await conn.execute(
                            "SELECT status::text FROM procrastinate_jobs WHERE id = %s", [job]
                        )
                        row = await cursor.fetchone()
                        if row and row[0] in ("failed", "cancelled", "aborted"):
                            raise RuntimeError(f"bench: {workflow} job {job} {row[0]}")
                        return bool(row and row[0] == "succeeded")

                    started = time.monotonic()
                    await wait_until(done, timeout=600, interval=0.1, what=workflow)
                    seconds = time.monotonic() - started
        finally:
            await orch.close()
    finally:
        debounce.stop()
        shutil.rmtree(inbox, ignore_errors=True)
    checked = len(debounce.checked)
    window = debounce.last_answer_at - debounce.first_request_at
    progress(f"limits: {checked} Debounce checks in {window:.1f} s (PT2 {seconds:.1f} s)")
    return [
        Result(
            FAMILY,
            f"PT2 Debounce checks, {checked:,} emails, provider at {LATENCY * 1000:.0f} ms",
            checked / window,
            "checks/s",
            baseline=DEBOUNCE_RATE,
            baseline_name=f"allowed: {DEBOUNCE_RATE:g} req/s",
            goal=Goal(0.9, at_least=True, on_ratio=True),
            extra={"seconds": window, "pt2_s": seconds},
        ),
        _throttled_result("PT2: 429s from Debounce", debounce.throttled),
    ]


def _throttled_result(name: str, count: int) -> Result:
    return Result(
        FAMILY,
        name,
        float(count),
        "429s",
        baseline=None,
        baseline_name="bound: 0",
        goal=Goal(0, at_least=False),
    )


async def run(bench: Bench) -> list[Result]:
    results: list[Result] = []
    async with bench.database("limits_pt4_1") as url:
        one_at_a_time = await _pt4_one_at_a_time(bench, url)
    async with bench.database("limits_pt4") as url:
        results += await _pt4_alone(bench, url, one_at_a_time)
    async with bench.database("limits_shared") as url:
        results += await _pt4_shared(bench, url)
    async with bench.database("limits_debounce") as url:
        results += await _debounce(bench, url)
    return results
