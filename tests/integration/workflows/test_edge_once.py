"""Nothing done twice at the edge: calls in doubt settled by the next attempt, PT5 never
renames backwards, one step per client at a time, a second run-week finds the first."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from orchestrator import Orchestrator
from tests.fix_db import wait_for
from tests.fix_pipeline import (
    Bison,
    ClientFactory,
    PipelineFactory,
    fetch,
    make_leads,
    run_job,
    running_worker,
    scalar,
    seed_leads,
    stub_server,
)
from workflows import pt4_emailbison_upload as pt4
from workflows.notify import notify
from workflows.windows import upload_date_for_window, windows_for_month

MONTH = "2026-09"
UPSERT = "/api/leads/create-or-update/multiple"
WEEK1 = upload_date_for_window(windows_for_month(2026, 9)[0])  # 2026-08-10
WEEK2 = upload_date_for_window(windows_for_month(2026, 9)[1])  # 2026-08-17
WEEK1_NAME = "Evergreen, Last Upload: September 1\u20137"
WEEK2_NAME = "Evergreen, Last Upload: September 8\u201314"


def upserted(bison: Bison) -> Counter[str]:
    """How many successful upserts carried each email."""
    return Counter(
        email
        for r in bison.server.requests
        if r.path == UPSERT and r.status == 200
        for email in r.emails
    )


async def test_a_chunk_stored_after_the_client_timed_out_is_sent_again_once(
    make_pipeline: PipelineFactory, make_client: ClientFactory, bison: Bison
) -> None:
    # One chunk at a time: the 2nd is sent once the 1st was answered (the scenario below);
    # chunks in flight together are covered by test_shared_limits.
    orch = await make_pipeline(emailbison_timeout=0.5, emailbison_concurrency=1)
    client = await make_client()
    leads = make_leads([700, 10, 10, 10])
    await seed_leads(orch, client, MONTH, leads)
    # the 2nd chunk is stored by the server, whose answer comes after the client gave up
    first = True

    def after(record: Any) -> None:
        nonlocal first
        if record.path == UPSERT and first:
            first = False
            bison.server.slow_answer_next(1.5, path_contains=UPSERT)

    bison.server.on_answered = after

    result = await run_job(orch, "pt4", {"client": client.name, "month": MONTH})

    assert result.status == "succeeded", result.runs
    assert result.run_statuses == ["retrying", "succeeded"]
    counts = upserted(bison)
    assert set(counts) == {lead.email for lead in leads}
    twice = [email for email, n in counts.items() if n == 2]
    assert len(twice) == 200  # the timed-out chunk, re-sent once as an upsert
    assert max(counts.values()) == 2
    calls = await orch.external_calls(result.job_id)
    assert not [c for c in calls if c["in_doubt"]]
    resolved = await fetch(
        orch,
        "SELECT outcome FROM external_calls WHERE job_id = %s AND outcome ? 'resolved_by_run'",
        [result.job_id],
    )
    assert [r["outcome"]["resent_as_upsert"] for r in resolved] == [200]
    assert len(bison.leads()) == len(leads)


async def test_an_answer_recorded_but_not_committed_is_not_sent_again(
    pipeline: Orchestrator,
    make_client: ClientFactory,
    bison: Bison,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = await make_client()
    leads = make_leads([1200, 10, 10, 10])
    await seed_leads(pipeline, client, MONTH, leads)
    real_record = pt4._record
    calls = 0

    async def crash_once(*args: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:  # chunk 2 answered and its answer recorded; the attempt dies here
            raise RuntimeError("the worker died before committing chunk 2")
        await real_record(*args)

    monkeypatch.setattr(pt4, "_record", crash_once)

    result = await run_job(pipeline, "pt4", {"client": client.name, "month": MONTH})

    assert result.status == "succeeded", result.runs
    assert result.run_statuses == ["retrying", "succeeded"]
    counts = upserted(bison)
    assert set(counts) == {lead.email for lead in leads}
    assert set(counts.values()) == {1}  # chunk 2 recorded from its answer, not re-sent
    window = result.output["windows"][0]
    # The crashed chunk's answer, and those of the chunks in flight with it (let finish).
    assert window["recorded_from_answers"] in (500, 700, 1000)
    assert await scalar(pipeline, "SELECT count(*) FROM uploaded_leads") == len(leads)


async def test_pt5_never_renames_a_campaign_backwards(
    pipeline: Orchestrator, make_client: ClientFactory, bison: Bison
) -> None:
    evergreen = bison.add_campaign("Evergreen, Last Upload: August 22\u201331")
    client = await make_client(campaign_id=evergreen)
    await seed_leads(pipeline, client, MONTH, make_leads([40, 30, 30, 30]))
    assert (await run_job(pipeline, "pt4", {"client": client.name, "month": MONTH})).status == (
        "succeeded"
    )
    week2 = await run_job(pipeline, "pt5", {"client": client.name, "upload_date": str(WEEK2)})
    assert week2.status == "succeeded", week2.runs
    assert bison.campaign_name(evergreen) == WEEK2_NAME
    bison.server.reset_log()

    late = await run_job(pipeline, "pt5", {"client": client.name, "upload_date": str(WEEK1)})

    assert late.status == "succeeded", late.runs
    assert bison.campaign_name(evergreen) == WEEK2_NAME
    assert bison.server.request_count(method="PATCH") == 0
    assert bison.server.request_count(path_contains="attach") == 0
    [campaign] = late.output["campaigns"]
    assert campaign["status"] == "skipped_older"
    rows = await fetch(
        pipeline,
        "SELECT upload_date, status, new_name FROM evergreen_updates ORDER BY upload_date",
    )
    assert [(r["upload_date"], r["status"]) for r in rows] == [
        (WEEK1, "skipped_older"),
        (WEEK2, "updated"),
    ]


async def test_pt5_resolves_a_rename_in_doubt_from_the_campaign_name(
    make_pipeline: PipelineFactory, make_client: ClientFactory, bison: Bison
) -> None:
    pipeline = await make_pipeline(emailbison_timeout=0.5)
    evergreen = bison.add_campaign("Evergreen, Last Upload: August 22\u201331")
    client = await make_client(campaign_id=evergreen)
    await seed_leads(pipeline, client, MONTH, make_leads([40, 30, 30, 30]))
    assert (await run_job(pipeline, "pt4", {"client": client.name, "month": MONTH})).status == (
        "succeeded"
    )
    # the rename is carried out but its answer never arrives: the attempt ends in doubt
    bison.server.slow_answer_next(2.0, path_contains="/update")
    orch = pipeline
    result = await run_job(orch, "pt5", {"client": client.name, "upload_date": str(WEEK1)})
    assert result.status == "succeeded", result.runs
    assert result.run_statuses == ["retrying", "succeeded"]
    assert result.output["campaigns"][0]["status"] == "already_current"
    assert bison.campaign_name(evergreen) == WEEK1_NAME
    renames = [r for r in bison.server.requests if r.method == "PATCH"]
    assert len(renames) == 1  # never renamed twice
    calls = await orch.external_calls(result.job_id)
    assert not [c for c in calls if c["in_doubt"]]


async def test_run_week_twice_finds_the_first_job(
    pipeline: Orchestrator, make_client: ClientFactory, bison: Bison
) -> None:
    client = await make_client()
    payload = {"client": client.name, "upload_date": str(WEEK1)}
    key = f"pt5:{client.name}:{WEEK1}"
    first = await pipeline.enqueue_unique("pt5", payload, dedupe_key=key)
    again = await pipeline.enqueue_unique("pt5", payload, dedupe_key=key)
    assert first.created and not again.created
    assert again.job_id == first.job_id
    assert again.describe() == f"already queued as job {first.job_id} (pt5)"
    await pipeline_execute(
        pipeline, "UPDATE procrastinate_jobs SET status = 'doing' WHERE id = %s", [first.job_id]
    )
    running = await pipeline.enqueue_unique("pt5", payload, dedupe_key=key)
    assert running.describe() == f"already running as job {first.job_id} (pt5)"
    both = await asyncio.gather(
        *(pipeline.enqueue_unique("pt5", payload, dedupe_key=key + "-x") for _ in range(5))
    )
    assert sum(1 for r in both if r.created) == 1
    assert len({r.job_id for r in both}) == 1


async def test_jobs_of_one_client_never_run_at_once(
    pipeline: Orchestrator, make_client: ClientFactory, bison: Bison
) -> None:
    evergreen = bison.add_campaign("Evergreen, Last Upload: August 22\u201331")
    client = await make_client(campaign_id=evergreen)
    await seed_leads(pipeline, client, MONTH, make_leads([300, 300, 300, 300]))
    bison.server.slow_seconds = 0.05
    pt4_job = await pipeline.enqueue_workflow("pt4", {"client": client.name, "month": MONTH})
    pt5_job = await pipeline.enqueue_workflow(
        "pt5", {"client": client.name, "upload_date": str(WEEK1)}
    )
    [lock] = await fetch(
        pipeline,
        "SELECT DISTINCT lock FROM procrastinate_jobs WHERE id = ANY(%s)",
        [[pt4_job, pt5_job]],
    )
    assert lock["lock"] == f"client:{client.name}"
    async with running_worker(pipeline):

        async def done() -> bool:
            rows = await fetch(
                pipeline,
                "SELECT count(*) AS n FROM procrastinate_jobs WHERE id = ANY(%s)"
                " AND status = 'succeeded'",
                [[pt4_job, pt5_job]],
            )
            return bool(rows[0]["n"] == 2)

        await wait_for(done, timeout=60)
    spans = await fetch(
        pipeline,
        "SELECT job_id, started_at, finished_at FROM agent_runs WHERE job_id = ANY(%s)"
        " ORDER BY started_at",
        [[pt4_job, pt5_job]],
    )
    assert [r["job_id"] for r in spans] == [pt4_job, pt5_job]
    assert spans[0]["finished_at"] <= spans[1]["started_at"]  # one after the other
    # PT5 found every lead of window 1 uploaded (PT4 had finished)
    assert len(bison.attached(evergreen)) == 300


async def test_clay_never_gets_an_answered_batch_again_and_a_batch_in_doubt_once(
    make_pipeline: PipelineFactory,
    make_client: ClientFactory,
    write_rows: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.integration.workflows import test_pt2
    from workflows import pt2_clay_format as pt2

    posts = 0

    def respond(request: Any) -> tuple[int, Any]:
        nonlocal posts
        posts += 1
        if posts == 3:  # the row was received; the answer never leaves (connection dropped)
            raise ConnectionResetError("dropped")
        return 200, {"ok": True}

    failures = iter([RuntimeError("the attempt dies after its push")])
    real_notify = notify

    async def notify_once_failing(*args: Any) -> bool:
        if posts > 3:
            error = next(failures, None)
            if error is not None:
                raise error
        return await real_notify(*args)

    monkeypatch.setattr(pt2, "notify", notify_once_failing)
    with stub_server(respond) as clay:
        orch = await make_pipeline(clay_webhook_url=f"{clay.url}/hooks/t")
        client = await make_client()
        write_rows(client.name, test_pt2.MONTH, "tx.csv", test_pt2.ROWS)
        await test_pt2.load(orch, client.name)
        result = await run_job(
            orch, "pt2", {"client": client.name, "month": test_pt2.MONTH, "push_to_clay": True}
        )
        sent = [r.body["email"] for r in clay.requests]

    assert result.status == "succeeded", result.runs
    assert result.run_statuses == ["retrying", "retrying", "succeeded"]
    # attempt 1: rows 1-2 taken, row 3 in doubt; attempt 2: the batch posted again, once;
    # attempt 3 (after a failure past the push): nothing posted again
    assert len(sent) == 3 + 4
    assert sorted(sent[3:]) == sorted(set(sent))  # the re-post: the whole batch, once
    assert result.output["pushed_to_clay"] == 0
    assert result.output["clay_push"]["already_pushed"] == 4
    calls = await fetch(
        orch,
        "SELECT state, outcome FROM external_calls WHERE job_id = %s ORDER BY id",
        [result.job_id],
    )
    assert [c["state"] for c in calls] == ["done", "done"]
    assert calls[0]["outcome"]["reposted"] == 4


async def pipeline_execute(orch: Orchestrator, query: str, params: Any = None) -> None:
    async with orch.pool.connection() as conn:
        await conn.execute(query, params)
