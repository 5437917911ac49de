"""Actions: CSRF, the confirmation step, retry, cancel, run-month, read-only."""

from __future__ import annotations

import httpx

from orchestrator import Orchestrator
from tests.fix_console import BASE, console, csrf_of
from tests.fix_worker import job, running_worker, wait_for_status


async def _failed_job(orch: Orchestrator) -> int:
    job_id = await orch.enqueue_workflow("flaky", {"key": "r", "fail_times": 1, "permanent": True})
    async with running_worker(orch):
        await wait_for_status(orch, job_id, "failed")
    return job_id


async def test_retry_needs_csrf_then_confirmation(
    orch: Orchestrator, client: httpx.AsyncClient
) -> None:
    job_id = await _failed_job(orch)
    page = await client.get(f"/jobs/{job_id}")
    token = csrf_of(page.text)

    forged = await client.post("/actions/retry", data={"job_id": str(job_id)})
    assert forged.status_code == 403
    cross_site = await client.post(
        "/actions/retry",
        data={"job_id": str(job_id), "csrf_token": token},
        headers={"Origin": "https://evil.example"},
    )
    assert cross_site.status_code == 403

    confirm = await client.post("/actions/retry", data={"job_id": str(job_id), "csrf_token": token})
    assert confirm.status_code == 200 and "Confirm" in confirm.text
    assert (await job(orch, job_id))["status"] == "failed"  # nothing done yet

    done = await client.post(
        "/actions/retry", data={"job_id": str(job_id), "csrf_token": token, "confirm": "1"}
    )
    assert done.status_code == 200, done.text
    assert "queued again" in done.text
    assert (await job(orch, job_id))["status"] == "todo"

    again = await client.post(
        "/actions/retry", data={"job_id": str(job_id), "csrf_token": token, "confirm": "1"}
    )
    assert again.status_code == 409 and "only failed or cancelled jobs" in again.text


async def test_cancel_a_waiting_job(orch: Orchestrator, client: httpx.AsyncClient) -> None:
    job_id = await orch.enqueue_workflow("write_row", {"key": "w"}, delay=600)
    token = csrf_of((await client.get(f"/jobs/{job_id}")).text)

    done = await client.post(
        "/actions/cancel", data={"job_id": str(job_id), "csrf_token": token, "confirm": "1"}
    )

    assert done.status_code == 200 and "cancelled" in done.text
    assert (await job(orch, job_id))["status"] == "cancelled"


async def test_run_month_uses_the_cli_dedupe_key(orch: Orchestrator) -> None:
    from orchestrator._registry import Registry
    from workflows.catalog import WORKFLOWS

    orch.registry = Registry(WORKFLOWS)  # the pipeline workflows, for pt1's payload
    async with orch.pool.connection() as conn:
        cursor = await conn.execute(
            "INSERT INTO clients (name, tier) VALUES ('Acme', 100) RETURNING id"
        )
        client_row = await cursor.fetchone()
    assert client_row is not None
    app = console(orch)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        token = csrf_of((await http.get(f"/board/clients/{client_row['id']}")).text)
        form = {"client": "Acme", "month": "2027-03", "csrf_token": token, "confirm": "1"}
        first = await http.post("/actions/run-month", data=form)
        second = await http.post("/actions/run-month", data=form)
        bad = await http.post("/actions/run-month", data={**form, "month": "March"})
    assert first.status_code == 200, first.text
    assert "started for Acme 2027-03" in first.text
    async with orch.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT id, queueing_lock, args FROM procrastinate_jobs WHERE task_name = 'pt1'"
        )
        rows = await cursor.fetchall()
    assert len(rows) == 1 and rows[0]["queueing_lock"] == "pt1:Acme:2027-03"
    assert rows[0]["args"]["payload"] == {"client": "Acme", "month": "2027-03", "chain": True}
    assert f"#{rows[0]['id']}" in second.text
    assert bad.status_code == 409 and "month" in bad.text


async def test_read_only_hides_and_refuses_actions(orch: Orchestrator) -> None:
    job_id = await _failed_job(orch)
    app = console(orch, read_only=True)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        page = await http.get(f"/jobs/{job_id}")
        assert "read-only" in page.text and 'data-action="retry"' not in page.text
        assert 'name="job_id"' not in (await http.get("/failures")).text
        refused = await http.post(
            "/actions/retry",
            data={
                "job_id": str(job_id),
                "csrf_token": csrf_of(page.text + _fake()),
                "confirm": "1",
            },
        )
    assert refused.status_code == 403
    assert (await job(orch, job_id))["status"] == "failed"


def _fake() -> str:
    return '<input name="csrf_token" value="00">'
