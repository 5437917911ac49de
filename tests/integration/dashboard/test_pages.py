"""The console's pages against real PostgreSQL: what they show, and that they escape it."""

from __future__ import annotations

import httpx
import pytest

from orchestrator import Orchestrator
from tests.fix_console import BASE, console
from tests.fix_worker import execute, running_worker, wait_for_status

HOSTILE = "<script>alert(1)</script>"


async def test_overview_shows_counts_workers_and_next_runs(
    orch: Orchestrator, client: httpx.AsyncClient
) -> None:
    await orch.enqueue_workflow("write_row", {"key": "a"})
    await orch.enqueue_workflow("write_row", {"key": "b"}, delay=600)

    response = await client.get("/")

    assert response.status_code == 200
    html = response.text
    assert "Jobs by workflow" in html and "write_row" in html
    assert 'href="/jobs?workflow=write_row&amp;state=waiting">1</a>' in html
    assert "No worker is registered" in html
    assert response.headers["cache-control"] == "no-store"


async def test_overview_shows_the_shared_rate_limits(
    orch: Orchestrator, client: httpx.AsyncClient
) -> None:
    assert "Shared rate limits" not in (await client.get("/")).text  # none used yet

    limit = orch.rate_limit(f"emailbison:https://{HOSTILE}.example", rate=20, burst=2)
    await limit.acquire()
    await limit.throttled(120)

    html = (await client.get("/")).text
    assert "Shared rate limits" in html
    assert "emailbison:https://&lt;script&gt;" in html and HOSTILE not in html
    row = html[html.index("emailbison:https://") :]
    row = row[: row.index("</tr>")]
    assert "20/s" in row and '<td class="bad">' in row  # blocked by the 429 for two minutes
    assert '<td class="n">1</td>' in row  # one 429 recorded


async def test_jobs_list_filters_paginates_and_escapes(
    orch: Orchestrator, client: httpx.AsyncClient
) -> None:
    ids = [await orch.enqueue_workflow("write_row", {"key": f"k{i}"}) for i in range(7)]
    hostile = await orch.enqueue_workflow("write_row", {"key": HOSTILE})

    page = (await client.get("/jobs", params={"q": "script"})).text
    assert f'href="/jobs/{hostile}"' in page
    assert HOSTILE not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page

    app = console(orch, page_size=5)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as small:
        first = (await small.get("/jobs", params={"workflow": "write_row"})).text
        assert f'href="/jobs/{hostile}"' in first and f'href="/jobs/{ids[0]}"' not in first
        assert 'rel="next"' in first
        second = (
            await small.get("/jobs", params={"workflow": "write_row", "before": str(ids[3])})
        ).text
        assert f'href="/jobs/{ids[0]}"' in second and f'href="/jobs/{ids[3]}"' not in second

    none = (await client.get("/jobs", params={"workflow": "noop"})).text
    assert "No job matches" in none


async def test_job_detail_shows_attempts_error_and_traceback(
    orch: Orchestrator, client: httpx.AsyncClient
) -> None:
    job_id = await orch.enqueue_workflow("flaky", {"key": "f", "fail_times": 5, "permanent": True})
    async with running_worker(orch):
        await wait_for_status(orch, job_id, "failed")

    html = (await client.get(f"/jobs/{job_id}")).text

    assert "attempt 1" in html and "state-failed" in html
    assert "PermanentError" in html and "permanent failure on attempt 1" in html
    assert "Traceback (most recent call last)" in html
    assert 'data-action="retry"' in html
    assert (await client.get("/jobs/999999")).status_code == 404


async def test_progress_is_recorded_and_shown(
    orch: Orchestrator, client: httpx.AsyncClient
) -> None:
    job_id = await orch.enqueue_workflow("steps", {"key": "s", "steps": 4})
    async with running_worker(orch):
        await wait_for_status(orch, job_id, "succeeded")
    [run] = await orch.list_runs(job_id=job_id)
    assert run["progress"]["done"] == 4 and run["progress"]["total"] == 4

    html = (await client.get(f"/jobs/{job_id}")).text
    assert '<progress max="100" value="100">' in html
    assert "4/4 steps (100%)" in html


async def test_failures_inbox_groups_by_error_type(
    orch: Orchestrator, client: httpx.AsyncClient
) -> None:
    failed = [
        await orch.enqueue_workflow("flaky", {"key": f"p{i}", "fail_times": 9, "permanent": True})
        for i in range(2)
    ]
    crashed = await orch.enqueue_workflow("crash", {"key": "c"}, attempts=1)
    async with running_worker(orch):
        for job_id in [*failed, crashed]:
            await wait_for_status(orch, job_id, "failed")

    html = (await client.get("/failures")).text

    assert (
        '<span class="error-type">PermanentError</span> <span class="count">2 jobs</span>' in html
    )
    assert '<span class="error-type">RuntimeError</span> <span class="count">1 job</span>' in html
    for job_id in [*failed, crashed]:
        assert f'name="job_id" value="{job_id}"' in html


async def test_pipeline_board_escapes_a_hostile_client_name(
    orch: Orchestrator, client: httpx.AsyncClient
) -> None:
    await execute(orch, "INSERT INTO clients (name, tier) VALUES (%(n)s, 100)", {"n": HOSTILE})
    await orch.enqueue_workflow("write_row", {"key": "x"})

    board = (await client.get("/board")).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in board and HOSTILE not in board

    rows = await _client_id(orch)
    page = await client.get(f"/board/clients/{rows}")
    assert page.status_code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and HOSTILE not in page.text
    assert 'action="/actions/run-month"' in page.text
    assert (await client.get("/board/clients/424242")).status_code == 404


async def _client_id(orch: Orchestrator) -> int:
    async with orch.pool.connection() as conn:
        cursor = await conn.execute("SELECT id FROM clients ORDER BY id LIMIT 1")
        row = await cursor.fetchone()
    assert row is not None
    return int(row["id"])


async def test_a_slow_query_answers_503_instead_of_hanging(orch: Orchestrator) -> None:
    from orchestrator._dashboard.pages import DashboardPage
    from workflows.board import TEMPLATES

    async def slow(conn: object, params: object) -> dict[str, object]:
        await conn.execute("SELECT pg_sleep(5)")  # type: ignore[attr-defined]
        return {}

    page = DashboardPage("/slow", "Slow", slow, TEMPLATES, template="board.html")
    app = console(orch, pages=[page], statement_timeout=0.2)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        response = await http.get("/slow")
    assert response.status_code == 503
    assert "needed more than 0.2 s" in response.text


@pytest.mark.parametrize("path", ["/", "/jobs", "/failures", "/board"])
async def test_pages_are_read_only_transactions(
    orch: Orchestrator, client: httpx.AsyncClient, path: str
) -> None:
    assert (await client.get(path)).status_code == 200
