"""PT4 EmailBison upload against PostgreSQL and the local EmailBison stand-in (real HTTP)."""

from __future__ import annotations

import datetime
import json
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrator import Orchestrator
from tests.fix_pipeline import (
    KEY_ENV,
    Bison,
    ClientFactory,
    SeedLead,
    fetch,
    job_result,
    jobs_by_workflow,
    make_leads,
    run_job,
    run_until,
    run_until_idle,
    scalar,
    seed_leads,
)
from workflows.clients import Client
from workflows.pt4_emailbison_upload import CUSTOM_VARIABLES
from workflows.standins.emailbison_server import RequestRecord

MONTH = "2026-09"
UPSERT = "/api/leads/create-or-update/multiple"
PER_WINDOW = (600, 400, 300, 700)


@dataclass
class Upsert:
    """One upsert request that reached the stand-in's API (injected faults do not)."""

    emails: list[str]
    status: int


class UpsertRecorder:
    """Wraps the stand-in's dispatcher to see each upsert's leads and answer."""

    def __init__(self, bison: Bison, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[Upsert] = []
        self._lock = threading.Lock()
        self._original = bison.server.api.dispatch
        self.after_successes: dict[int, Any] = {}
        monkeypatch.setattr(bison.server.api, "dispatch", self._dispatch)

    def _dispatch(self, request: Any) -> tuple[int, dict[str, Any]]:
        status, payload = self._original(request)
        if request.path == UPSERT:
            with self._lock:
                self.calls.append(Upsert([lead["email"] for lead in request.body["leads"]], status))
                ok = sum(1 for c in self.calls if c.status == 200)
                hook = self.after_successes.pop(ok, None) if status == 200 else None
            if hook is not None:
                hook()  # runs before this answer is sent: deterministic timing
        return status, payload

    def successful_emails(self) -> list[str]:
        return [e for c in self.calls if c.status == 200 for e in c.emails]


async def setup_month(
    pipeline: Orchestrator,
    make_client: ClientFactory,
    per_window: tuple[int, ...] = PER_WINDOW,
    extra: list[SeedLead] | None = None,
) -> tuple[Client, list[SeedLead]]:
    client = await make_client()
    leads = [*(extra or []), *make_leads(per_window, hnw_every=10)]
    await seed_leads(pipeline, client, MONTH, leads)
    return client, leads


async def test_uploads_every_window_in_chunks_and_records_lead_ids(
    pipeline: Orchestrator,
    make_client: ClientFactory,
    bison: Bison,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = UpsertRecorder(bison, monkeypatch)
    client, leads = await setup_month(pipeline, make_client)
    # PT3 left 20 leads of window 3 out of the sample: they are not uploaded
    await pipeline_execute(
        pipeline,
        "UPDATE cleaned_leads SET selected = false WHERE id IN (SELECT id FROM cleaned_leads"
        " WHERE window_index = 3 ORDER BY id LIMIT 20)",
    )

    result = await run_job(pipeline, "pt4", {"client": client.name, "month": MONTH})

    assert result.status == "succeeded", result.runs
    assert result.run_statuses == ["succeeded"]
    sizes = [len(c.emails) for c in recorder.calls]
    # The windows' six chunks are in flight together (any order at the stand-in).
    assert sorted(sizes) == [100, 200, 280, 400, 500, 500]
    assert all(c.status == 200 for c in recorder.calls)
    log = bison.server.requests
    assert [(r.method, r.path) for r in log[:1]] == [("GET", "/api/custom-variables")]
    assert [(r.method, r.path) for r in log[1:12]] == [("POST", "/api/custom-variables")] * 11
    assert all(r.path == UPSERT for r in log[12:]) and len(log) == 18
    assert bison.server.request_count(path_contains="leads", method="POST") == 6

    uploaded = len(leads) - 20
    stored = {lead["email"]: lead for lead in bison.leads()}
    assert len(stored) == uploaded
    assert Counter(recorder.successful_emails()).most_common(1)[0][1] == 1
    rows = await fetch(
        pipeline, "SELECT email, emailbison_lead_id, status, window_id FROM uploaded_leads"
    )
    assert len(rows) == uploaded
    assert all(r["status"] == "uploaded" for r in rows)
    assert {r["email"]: r["emailbison_lead_id"] for r in rows} == {
        email: lead["id"] for email, lead in stored.items()
    }

    sample = stored["lead00001@example.com"]
    variables = {v["name"]: v["value"] for v in sample["custom_variables"]}
    assert set(variables) <= set(CUSTOM_VARIABLES)
    assert variables["renewal_date"] == "2026-09-03"
    assert variables["renewal_window"] == "September 1st - 7th renewals"
    assert variables["purchase_date"] == "September 3rd"
    assert variables["home_value"] == "450000"
    assert (sample["first_name"], sample["last_name"]) == ("First1", "Last1")

    windows = await fetch(
        pipeline,
        "SELECT window_index, start_date, end_date, upload_date, list_name, lead_count,"
        " uploaded, rejected, completed_at FROM renewal_windows ORDER BY window_index",
    )
    assert [(w["list_name"], w["lead_count"], w["uploaded"], w["rejected"]) for w in windows] == [
        ("September 1st - 7th renewals", 600, 600, 0),
        ("September 8th - 14th renewals", 400, 400, 0),
        ("September 15th - 21st renewals", 280, 280, 0),
        ("September 22nd - 30th renewals", 700, 700, 0),
    ]
    assert windows[3]["end_date"] == datetime.date(2026, 9, 30)
    assert all(w["upload_date"].weekday() == 0 for w in windows)
    assert all(w["completed_at"] is not None for w in windows)
    assert [w["uploaded"] for w in result.output["windows"]] == [600, 400, 280, 700]
    assert [w["sent_this_run"] for w in result.output["windows"]] == [600, 400, 280, 700]

    # a second run finds everything uploaded and sends nothing
    again = await run_job(pipeline, "pt4", {"client": client.name, "month": MONTH})
    assert again.status == "succeeded"
    assert [w["sent_this_run"] for w in again.output["windows"]] == [0, 0, 0, 0]
    assert len(recorder.calls) == 6
    assert len(bison.leads()) == uploaded


async def pipeline_execute(orch: Orchestrator, query: str) -> None:
    async with orch.pool.connection() as conn:
        await conn.execute(query)


async def test_leads_emailbison_refuses_are_isolated_and_recorded(
    pipeline: Orchestrator,
    make_client: ClientFactory,
    bison: Bison,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = UpsertRecorder(bison, monkeypatch)
    invalid = ["bad one@example.com", "bad@@example.com", "badexample.com"]
    client, leads = await setup_month(
        pipeline,
        make_client,
        per_window=(600, 10, 10, 10),
        extra=[SeedLead(email=e, window_index=1) for e in invalid],
    )

    result = await run_job(pipeline, "pt4", {"client": client.name, "month": MONTH})

    assert result.status == "succeeded", result.runs
    # window 1: the first chunk is refused (422) naming the three, then sent without them
    # (the second chunk, and window 2's, are in flight meanwhile: any order)
    window_one = {lead.email for lead in leads if lead.window_index == 1}
    first_three = [
        (len(c.emails), c.status) for c in recorder.calls if set(c.emails) <= window_one
    ][:3]
    assert sorted(first_three) == [(103, 200), (497, 200), (500, 422)]
    assert first_three.index((500, 422)) < first_three.index((497, 200))
    rejected = await fetch(
        pipeline,
        "SELECT email, status, reason, emailbison_lead_id FROM uploaded_leads"
        " WHERE status = 'rejected' ORDER BY email",
    )
    assert [r["email"] for r in rejected] == sorted(invalid)
    assert all(r["emailbison_lead_id"] is None for r in rejected)
    assert all("must be a valid email address" in r["reason"] for r in rejected)
    assert all(r["reason"].startswith("email: ") for r in rejected)
    assert len(bison.leads()) == len(leads) - 3
    assert (
        await scalar(pipeline, "SELECT count(*) FROM uploaded_leads WHERE status = 'uploaded'")
        == len(leads) - 3
    )
    first = await fetch(pipeline, "SELECT uploaded, rejected FROM renewal_windows ORDER BY id")
    assert (first[0]["uploaded"], first[0]["rejected"]) == (600, 3)
    assert result.output["windows"][0]["rejected_this_run"] == 3

    # a re-run does not send the rejected leads again
    again = await run_job(pipeline, "pt4", {"client": client.name, "month": MONTH})
    assert again.status == "succeeded"
    assert len(recorder.calls) == 6


async def test_422_naming_indices_rejects_exactly_those_leads(
    pipeline: Orchestrator, make_client: ClientFactory, bison: Bison
) -> None:
    client, _ = await setup_month(pipeline, make_client, per_window=(20, 0, 0, 0))
    body = {
        "message": "The leads.0.email has already been taken. (and 1 more error)",
        "errors": {
            "leads.0.email": ["The leads.0.email has already been taken."],
            "leads.7.last_name": ["The leads.7.last_name may not be greater than 255 characters."],
        },
    }
    bison.server.fail_next(422, body=json.dumps(body), path_contains="create-or-update")

    result = await run_job(pipeline, "pt4", {"client": client.name, "month": MONTH})

    assert result.status == "succeeded", result.runs
    rejected = await fetch(
        pipeline, "SELECT email, reason FROM uploaded_leads WHERE status = 'rejected'"
    )
    assert {r["email"]: r["reason"] for r in rejected} == {
        "lead00001@example.com": "email: The leads.0.email has already been taken.",
        "lead00008@example.com": (
            "last_name: The leads.7.last_name may not be greater than 255 characters."
        ),
    }
    assert len(bison.leads()) == 18
    assert bison.server.request_count(path_contains="create-or-update") == 2


@pytest.mark.parametrize(
    "errors",
    [
        {"leads": ["The leads field must not have more than 500 items."]},
        {"leads.999.email": ["The leads.999.email field must be a valid email address."]},
    ],
    ids=["no-lead-named", "index-out-of-range"],
)
async def test_422_that_names_no_lead_of_the_chunk_fails_permanently(
    pipeline: Orchestrator, make_client: ClientFactory, bison: Bison, errors: dict[str, Any]
) -> None:
    client, _ = await setup_month(pipeline, make_client, per_window=(20, 0, 0, 0))
    body = json.dumps({"message": "The given data was invalid.", "errors": errors})
    bison.server.fail_next(422, count=5, body=body, path_contains="create-or-update")

    result = await run_job(pipeline, "pt4", {"client": client.name, "month": MONTH})

    assert result.status == "failed"
    assert result.run_statuses == ["failed"]
    assert result.error["type"] == "LeadValidationError"
    assert bison.server.request_count(path_contains="create-or-update") == 1
    assert bison.leads() == []


async def test_429_retry_after_is_honoured(
    pipeline: Orchestrator, make_client: ClientFactory, bison: Bison
) -> None:
    client, leads = await setup_month(pipeline, make_client, per_window=(20, 0, 0, 0))
    bison.server.fail_next(429, retry_after=1.0, path_contains="create-or-update")

    result = await run_job(pipeline, "pt4", {"client": client.name, "month": MONTH})

    assert result.status == "succeeded", result.runs
    assert result.run_statuses == ["succeeded"]  # waited inside the attempt
    statuses = [r.status for r in bison.server.requests if r.path == UPSERT]
    assert statuses == [429, 200]
    duration = await scalar(
        pipeline,
        "SELECT extract(epoch FROM finished_at - started_at) FROM agent_runs WHERE job_id = %s",
        [result.job_id],
    )
    assert float(duration) >= 1.0
    assert len(bison.leads()) == len(leads)


async def test_429_with_a_long_retry_after_delays_the_job_retry(
    pipeline: Orchestrator, make_client: ClientFactory, bison: Bison
) -> None:
    client, _ = await setup_month(pipeline, make_client, per_window=(20, 0, 0, 0))
    bison.server.fail_next(429, retry_after=45, path_contains="create-or-update")
    job_id = await pipeline.enqueue_workflow("pt4", {"client": client.name, "month": MONTH})

    async def first_attempt_recorded() -> bool:
        result = await job_result(pipeline, job_id)
        return result.run_statuses == ["retrying"] and result.status == "todo"

    await run_until(pipeline, first_attempt_recorded)

    result = await job_result(pipeline, job_id)
    assert result.run_statuses == ["retrying"]
    assert result.error["type"] == "EmailBisonRetryableError"
    assert result.error["retry_in_s"] >= 45
    job = await fetch(
        pipeline,
        "SELECT status::text AS status, scheduled_at > now() + interval '40 seconds' AS later"
        " FROM procrastinate_jobs WHERE id = %s",
        [job_id],
    )
    assert job == [{"status": "todo", "later": True}]
    assert [r.status for r in bison.server.requests if r.path == UPSERT] == [429]


async def test_bad_key_is_a_permanent_failure_that_never_shows_the_key(
    pipeline: Orchestrator,
    make_client: ClientFactory,
    bison: Bison,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, _ = await setup_month(pipeline, make_client, per_window=(20, 0, 0, 0))
    wrong_key = "eb-wrong-key-0123456789abcdef"
    monkeypatch.setenv(KEY_ENV, wrong_key)

    result = await run_job(pipeline, "pt4", {"client": client.name, "month": MONTH})

    assert result.status == "failed"
    assert result.run_statuses == ["failed"]
    assert result.error["type"] == "EmailBisonAuthError"
    assert "401" in result.error["message"]
    assert [r.status for r in bison.server.requests] == [401]
    assert wrong_key not in json.dumps(result.runs, default=str)
    assert bison.key not in json.dumps(result.runs, default=str)
    assert await scalar(pipeline, "SELECT count(*) FROM uploaded_leads") == 0


async def test_missing_key_variable_is_named(
    pipeline: Orchestrator,
    make_client: ClientFactory,
    bison: Bison,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, _ = await setup_month(pipeline, make_client, per_window=(5, 0, 0, 0))
    monkeypatch.delenv(KEY_ENV)

    result = await run_job(pipeline, "pt4", {"client": client.name, "month": MONTH})

    assert result.status == "failed"
    assert result.error["type"] == "ClientConfigError"
    assert KEY_ENV in result.error["message"]
    assert bison.server.requests == []


async def test_retry_resumes_mid_month_without_duplicate_uploads(
    pipeline: Orchestrator,
    make_client: ClientFactory,
    bison: Bison,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = UpsertRecorder(bison, monkeypatch)
    client, leads = await setup_month(pipeline, make_client)
    # after the 2nd successful chunk, the next upsert fails with a 500 (the server's switch)
    recorder.after_successes[2] = lambda: bison.server.fail_next(500, path_contains=UPSERT)

    result = await run_job(pipeline, "pt4", {"client": client.name, "month": MONTH})

    assert result.status == "succeeded", result.runs
    assert result.run_statuses == ["retrying", "succeeded"]
    assert result.runs[0]["error"]["type"] == "EmailBisonRetryableError"
    first_run, second_run = (run["id"] for run in result.runs)
    log = bison.server.requests
    attempt1 = [r for r in log if r.run_id == first_run]
    attempt2 = [r for r in log if r.run_id == second_run]
    assert len(attempt1) + len(attempt2) == len(log)

    def upserts(records: list[RequestRecord]) -> list[int]:
        return sorted(r.status for r in records if r.path == UPSERT)

    # attempt 1: chunks of the windows (600, 400, 300, 700 leads: six chunks) go out together;
    # the one after the second answer gets the 500, and no chunk starts after it
    statuses = upserts(attempt1)
    assert statuses.count(500) == 1 and statuses.count(200) >= 2, statuses
    [failed] = [r for r in attempt1 if r.path == UPSERT and r.status == 500]
    stored_first = {e for r in attempt1 if r.path == UPSERT and r.status == 200 for e in r.emails}
    # attempt 2: variables listed (all exist), then exactly the leads attempt 1 did not store,
    # the failed chunk's among them, each once
    assert [(r.method, r.path) for r in attempt2[:1]] == [("GET", "/api/custom-variables")]
    resent = [e for r in attempt2 if r.path == UPSERT for e in r.emails]
    assert set(upserts(attempt2)) == {200}
    assert set(failed.emails) <= set(resent)
    assert sorted(resent) == sorted({lead.email for lead in leads} - stored_first)
    assert sum(len(c.emails) for c in recorder.calls if c.status == 200) == 2_000

    sent = Counter(recorder.successful_emails())
    assert set(sent) == {lead.email for lead in leads}
    assert set(sent.values()) == {1}  # every email sent exactly once across attempts
    uploaded = await scalar(
        pipeline, "SELECT count(*) FROM uploaded_leads WHERE status = 'uploaded'"
    )
    assert len(bison.leads()) == uploaded == len(leads) == 2_000
    second = result.runs[1]["output"]["windows"]
    assert sum(w["sent_this_run"] for w in second) == len(resent)
    assert [w["uploaded"] for w in second] == list(PER_WINDOW)


async def test_month_chain_runs_pt1_to_pt4(
    pipeline: Orchestrator,
    make_client: ClientFactory,
    bison: Bison,
    write_exports: Callable[..., list[Path]],
) -> None:
    client = await make_client(states=("TX", "OK"))
    write_exports(client.name, MONTH, rows=2_000)

    first = await pipeline.enqueue_workflow(
        "pt1", {"client": client.name, "month": MONTH, "chain": True}
    )
    await run_until_idle(pipeline)

    found = await jobs_by_workflow(pipeline)
    assert {name: [j["status"] for j in js] for name, js in found.items()} == {
        "pt1": ["succeeded"],
        "pt2": ["succeeded"],
        "pt3": ["succeeded"],
        "pt4": ["succeeded"],
    }
    assert found["pt1"][0]["id"] == first
    assert all(
        js[0]["args"]["payload"] == {"client": client.name, "month": MONTH, "chain": True}
        for js in found.values()
    )
    # ingest in order of arrival, then straight to the upload (see schedules.STEP_PRIORITY)
    assert [found[name][0]["priority"] for name in ("pt1", "pt2", "pt3", "pt4")] == [0, 0, 1, 2]
    pt4 = await job_result(pipeline, found["pt4"][0]["id"])
    assert "next_job" not in pt4.output  # PT4 ends the chain
    cleaned = await scalar(pipeline, "SELECT count(*) FROM cleaned_leads WHERE selected")
    assert cleaned > 0
    assert len(bison.leads()) == cleaned == sum(w["uploaded"] for w in pt4.output["windows"])


async def test_a_lost_answer_is_repaired_by_the_upsert_on_retry(
    pipeline: Orchestrator,
    make_client: ClientFactory,
    bison: Bison,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """EmailBison stored the 2nd chunk but its answer was lost (502): the retry sends that
    chunk again, and the upsert keyed by email leaves one lead per email, ids unchanged."""
    client, leads = await setup_month(pipeline, make_client, per_window=(1_200, 0, 0, 0))
    original = bison.server.api.dispatch
    processed: list[list[str]] = []

    def dispatch(request: Any) -> tuple[int, dict[str, Any]]:
        status, payload = original(request)
        if request.path == UPSERT and status == 200:
            processed.append([lead["email"] for lead in request.body["leads"]])
            if len(processed) == 2:
                return 502, {"message": "Bad Gateway"}  # stored, but the client never knows
        return status, payload

    monkeypatch.setattr(bison.server.api, "dispatch", dispatch)

    result = await run_job(pipeline, "pt4", {"client": client.name, "month": MONTH})

    assert result.status == "succeeded", result.runs
    assert result.run_statuses == ["retrying", "succeeded"]
    # three chunks in flight together; the unanswered one sent again on the retry
    assert sorted(len(emails) for emails in processed[:3]) == [200, 500, 500]
    assert len(processed) == 4 and processed.count(processed[1]) == 2
    stored = {lead["email"]: lead["id"] for lead in bison.leads()}
    assert len(stored) == len(leads) == 1_200
    rows = await fetch(pipeline, "SELECT email, emailbison_lead_id FROM uploaded_leads")
    assert {r["email"]: r["emailbison_lead_id"] for r in rows} == stored
