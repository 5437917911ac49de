"""The console's pages stay bounded at any history size: what they show when the rows they
would need are too many to read (failures by group and page, filters over a window of the
newest jobs, indexes for the dedupe key and unfinished jobs) and the run counters behind
``/metrics`` (compared with a direct count over agent_runs)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from orchestrator import Orchestrator
from orchestrator._dashboard import data
from orchestrator._dashboard.metrics import DURATION_BUCKETS
from tests.fix_console import BASE, console
from tests.fix_worker import execute, fetch, running_worker, wait_for_status

#: Finished jobs with one run each: ``kind`` decides the status and the error type.
INSERT_FINISHED = """
WITH jobs AS (
    INSERT INTO procrastinate_jobs (queue_name, task_name, args, status, attempts,
                                    queueing_lock)
    SELECT 'default', %(workflow)s,
           jsonb_build_object('payload', jsonb_build_object('key', %(prefix)s || i)),
           %(job_status)s::procrastinate_job_status, 1,
           CASE WHEN %(dedupe)s::text IS NOT NULL THEN %(dedupe)s || i END
      FROM generate_series(1, %(n)s) AS i
    RETURNING id, task_name, args
)
INSERT INTO agent_runs (job_id, workflow, attempt, status, input, error, started_at,
                        finished_at)
SELECT id, task_name, 1, %(run_status)s::agent_run_status, args -> 'payload',
       CASE WHEN %(error)s::text IS NOT NULL
            THEN jsonb_build_object('type', %(error)s::text, 'message', 'boom') END,
       now() - interval '1 minute', now() - interval '1 minute' + %(took)s * interval '1 s'
  FROM jobs
"""


async def insert_finished(
    orch: Orchestrator,
    n: int,
    *,
    workflow: str = "write_row",
    prefix: str = "k",
    status: str = "succeeded",
    error: str | None = None,
    took: float = 0.2,
    dedupe: str | None = None,
    job_status: str | None = None,
) -> None:
    await execute(
        orch,
        INSERT_FINISHED,
        {
            "workflow": workflow,
            "prefix": prefix,
            "n": n,
            "job_status": job_status or status,
            "run_status": status,
            "error": error,
            "took": took,
            "dedupe": dedupe,
        },
    )


def job_links(html: str) -> list[int]:
    return [int(m) for m in re.findall(r'name="job_id" value="(\d+)"', html)]


async def test_failures_show_each_group_size_and_a_page_of_its_newest_jobs(
    orch: Orchestrator, client: httpx.AsyncClient
) -> None:
    await insert_finished(orch, 25, status="failed", error="QuotaExceeded", prefix="q")
    await insert_finished(orch, 3, status="failed", error="BadInput", prefix="b")
    quota = [
        int(r["job_id"])
        for r in await fetch(
            orch,
            "SELECT job_id FROM agent_runs WHERE error ->> 'type' = 'QuotaExceeded' "
            "ORDER BY id DESC",
        )
    ]

    html = (await client.get("/failures")).text

    assert (
        '<span class="error-type">QuotaExceeded</span> <span class="count">25 jobs</span>' in html
    )
    assert '<span class="error-type">BadInput</span> <span class="count">3 jobs</span>' in html
    assert html.index("QuotaExceeded") < html.index("BadInput")  # biggest group first
    shown = job_links(html)
    assert len(shown) == data.FAILURES_PER_GROUP + 3
    assert shown[: data.FAILURES_PER_GROUP] == quota[: data.FAILURES_PER_GROUP]  # newest first
    assert 'href="/failures?error_type=QuotaExceeded">all 25 →</a>' in html
    assert "error_type=BadInput" not in html  # nothing more to see there

    # one group, page by page (5 a page), through the "older" links
    app = console(orch, page_size=5)
    seen: list[int] = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        path: str | None = "/failures?error_type=QuotaExceeded"
        while path is not None:
            page = (await http.get(path)).text
            assert "BadInput" not in page
            assert '<span class="count">25 jobs</span>' in page  # the group's size on every page
            seen += job_links(page)
            found = re.search(r'href="(/failures\?[^"]+)">older →', page)
            path = found.group(1).replace("&amp;", "&") if found else None
    assert seen == quota


async def test_failures_say_when_their_window_is_full(
    orch: Orchestrator, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await insert_finished(orch, 3, status="failed", error="QuotaExceeded")
    html = (await client.get("/failures")).text
    assert '<span class="count">3 jobs</span>' in html and "older ones exist" not in html

    monkeypatch.setattr(data, "FAILURE_SCAN", 2)
    html = (await client.get("/failures")).text
    assert '<span class="count">2+ jobs</span>' in html and "older ones exist" in html


async def test_failures_of_one_type_that_has_none(client: httpx.AsyncClient) -> None:
    html = (await client.get("/failures", params={"error_type": "Nothing"})).text
    assert "No failed or retrying job with Nothing." in html


async def test_filters_without_an_index_read_a_window_of_the_newest_jobs(
    orch: Orchestrator, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "SEARCH_WINDOW", 20)
    await insert_finished(orch, 1, prefix="needle-")
    await insert_finished(orch, 45, prefix="hay-")
    [needle] = await fetch(
        orch, "SELECT id FROM procrastinate_jobs WHERE args::text LIKE '%%needle-%%'"
    )

    first = (await client.get("/jobs", params={"q": "needle"})).text
    assert "No job matches among these 20." in first
    pages = 1
    page = first
    while f'href="/jobs/{needle["id"]}"' not in page:
        found = re.search(r'href="(/jobs\?[^"]+)" rel="next">search older jobs', page)
        assert found, page
        page = (await client.get(found.group(1).replace("&amp;", "&"))).text
        pages += 1
    assert pages == 3  # 46 jobs, 20 at a time: the needle is in the third window

    # a window with more matches than a page pages on as usual, inside the window
    app = console(orch, page_size=5)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        full = (await http.get("/jobs", params={"q": "hay-"})).text
    assert "search older jobs" not in full and "look at" not in full
    assert 'rel="next">older →' in full
    # the window's matches, fewer than a page: the page says how far it looked
    part = (await client.get("/jobs", params={"q": "hay-"})).text
    assert "These filters look at 20 jobs at a time" in part and "20 matches" in part


async def test_dedupe_key_and_unfinished_states_need_no_window(
    orch: Orchestrator, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "SEARCH_WINDOW", 10)
    await insert_finished(orch, 1, dedupe="month:old:")
    delayed = await orch.enqueue_workflow("write_row", {"key": "later"}, delay=3600)
    await insert_finished(orch, 30)
    [old] = await fetch(
        orch, "SELECT id FROM procrastinate_jobs WHERE queueing_lock = 'month:old:1'"
    )

    by_key = (await client.get("/jobs", params={"dedupe_key": "month:old:1"})).text
    assert f'href="/jobs/{old["id"]}"' in by_key and "look at" not in by_key
    waiting = (await client.get("/jobs", params={"state": "delayed"})).text
    assert f'href="/jobs/{delayed}"' in waiting and "look at" not in waiting


def metric(text: str, name: str, **labels: str) -> float:
    """One sample of the Prometheus text (labels in any order); 0 when absent."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if found == labels:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def direct_counts(orch: Orchestrator) -> list[dict[str, Any]]:
    return await fetch(
        orch,
        "SELECT workflow, status::text AS status, count(*) AS n, "
        "count(*) FILTER (WHERE attempt = 1) AS first, "
        "COALESCE(sum(EXTRACT(EPOCH FROM finished_at - started_at)), 0)::float8 AS seconds "
        "FROM agent_runs GROUP BY 1, 2 ORDER BY 1, 2",
    )


async def test_metrics_counters_equal_a_direct_count_over_agent_runs(
    orch: Orchestrator, client: httpx.AsyncClient
) -> None:
    # real attempts through a worker: successes, retries, a failure for good
    ok = await orch.enqueue_workflow("write_row", {"key": "m"})
    flaky = await orch.enqueue_workflow("flaky", {"key": "f", "fail_times": 1})
    bad = await orch.enqueue_workflow("crash", {"key": "c"}, attempts=1)
    async with running_worker(orch):
        for job_id, status in ((ok, "succeeded"), (flaky, "succeeded"), (bad, "failed")):
            await wait_for_status(orch, job_id, status)
    # bulk rows (one statement), of several durations
    await insert_finished(orch, 40, took=0.05)
    await insert_finished(orch, 7, took=20.0, status="failed", error="Slow")
    # a finished row that changes later: abandoned, then failed by the abandon limit
    await insert_finished(
        orch, 1, prefix="lost", status="abandoned", error="WorkerLost", job_status="failed"
    )
    await execute(
        orch,
        "UPDATE agent_runs SET status = 'failed' WHERE input ->> 'key' = 'lost1'",
    )
    # and one attempt still running
    await execute(
        orch,
        "INSERT INTO agent_runs (job_id, workflow, attempt) "
        "SELECT id, task_name, 2 FROM procrastinate_jobs WHERE id = %(id)s",
        {"id": bad},
    )

    text = (await client.get("/metrics")).text

    expected = await direct_counts(orch)
    assert {(r["workflow"], r["status"]) for r in expected} >= {
        ("write_row", "succeeded"),
        ("flaky", "retrying"),
        ("flaky", "succeeded"),
        ("crash", "failed"),
        ("crash", "running"),
        ("write_row", "failed"),
    }
    for row in expected:
        assert (
            metric(
                text, "orchestrator_attempts_total", outcome=row["status"], workflow=row["workflow"]
            )
            == row["n"]
        ), row
    for workflow in {r["workflow"] for r in expected}:
        finished = [r for r in expected if r["workflow"] == workflow and r["status"] != "running"]
        count = sum(r["n"] for r in finished)
        seconds = sum(r["seconds"] for r in finished)
        assert (
            metric(text, "orchestrator_attempt_duration_seconds_count", workflow=workflow) == count
        )
        assert metric(
            text, "orchestrator_attempt_duration_seconds_sum", workflow=workflow
        ) == pytest.approx(seconds, rel=1e-6)
        by_bound = await fetch(
            orch,
            "SELECT count(*) FILTER (WHERE EXTRACT(EPOCH FROM finished_at - started_at) "
            "< %(bound)s) AS n FROM agent_runs WHERE workflow = %(w)s AND status <> 'running'",
            {"bound": DURATION_BUCKETS[2], "w": workflow},
        )
        assert (
            metric(
                text, "orchestrator_attempt_duration_seconds_bucket", le="1.0", workflow=workflow
            )
            == by_bound[0]["n"]
        )
    first_attempts = {r["workflow"]: 0 for r in expected}
    for row in expected:
        first_attempts[row["workflow"]] += row["first"]
    assert (
        metric(text, "orchestrator_jobs_enqueued_total", workflow="write_row")
        == (first_attempts["write_row"])
    )

    # the counters table itself, key by key, against the same count
    mismatches = await fetch(
        orch,
        """
        WITH kept AS (
            SELECT workflow, status, bucket, sum(n) AS n, sum(first_attempts) AS first
              FROM orchestrator_run_counts GROUP BY 1, 2, 3 HAVING sum(n) <> 0
        ), counted AS (
            SELECT workflow, status, orchestrator_run_duration_bucket(started_at, finished_at)
                       AS bucket,
                   count(*) AS n, count(*) FILTER (WHERE attempt = 1) AS first
              FROM agent_runs WHERE status <> 'running' GROUP BY 1, 2, 3
        )
        SELECT * FROM kept FULL JOIN counted USING (workflow, status, bucket)
         WHERE kept.n IS DISTINCT FROM counted.n OR kept.first IS DISTINCT FROM counted.first
        """,
    )
    assert mismatches == []


async def test_counters_follow_deletes_and_truncate(orch: Orchestrator) -> None:
    await insert_finished(orch, 5)
    await execute(orch, "DELETE FROM agent_runs WHERE id IN (SELECT id FROM agent_runs LIMIT 2)")
    [kept] = await fetch(orch, "SELECT sum(n) AS n FROM orchestrator_run_counts")
    assert kept["n"] == 3
    await execute(orch, "TRUNCATE agent_runs")
    assert await fetch(orch, "SELECT * FROM orchestrator_run_counts") == []


async def test_the_histogram_bounds_are_the_databases(orch: Orchestrator) -> None:
    """The database's bucket rule (migration 0011) uses the bounds /metrics reports."""
    for index, bound in enumerate(DURATION_BUCKETS):
        [row] = await fetch(
            orch,
            "SELECT orchestrator_run_duration_bucket(t, t + make_interval(secs => %(below)s))"
            " AS below, orchestrator_run_duration_bucket(t, t + make_interval(secs => %(at)s))"
            " AS at FROM now() AS t",
            {"below": bound - 0.001, "at": bound},
        )
        assert (row["below"], row["at"]) == (index, index + 1), bound
