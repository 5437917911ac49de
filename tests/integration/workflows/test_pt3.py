"""PT3 gap analysis against PostgreSQL: stored reports, suggestions, even samples by ZIP."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator import Orchestrator
from tests.fix_pipeline import (
    ClientFactory,
    PipelineFactory,
    SeedLead,
    fetch,
    make_leads,
    run_job,
    scalar,
    seed_leads,
    stub_server,
)

MONTH = "2026-09"
PULLED = ("75001", "75002", "75006")


async def stored_report(orch: Orchestrator) -> dict[str, Any]:
    rows = await fetch(orch, "SELECT * FROM gap_reports")
    assert len(rows) == 1
    return rows[0]


@pytest.mark.parametrize(("tier", "target"), [(100, 15_000), (200, 30_000)])
async def test_below_target_report_with_suggestions(
    pipeline: Orchestrator, make_client: ClientFactory, tier: int, target: int
) -> None:
    client = await make_client(
        tier=tier, states=("TX", "OK"), zips=(*PULLED, "75010", "75013", "73003")
    )
    await seed_leads(pipeline, client, MONTH, make_leads([300, 300, 300, 300], zips=PULLED))

    result = await run_job(pipeline, "pt3", {"client": client.name, "month": MONTH})

    assert result.status == "succeeded", result.runs
    report = result.output
    gap = target - 1_200
    assert (report["target"], report["cleaned_count"], report["gap"]) == (target, 1_200, gap)
    assert (report["status"], report["upsell"], report["selected"]) == (
        "below_target",
        False,
        1_200,
    )
    assert (report["client"], report["month"], report["tier"]) == (client.name, MONTH, tier)
    assert report["sample_quota_by_zip"] == {}
    assert {z["zip"]: (z["pulled"], z["cleaned"], z["yield"]) for z in report["zip_yields"]} == {
        "75001": (800, 400, 0.5),
        "75002": (800, 400, 0.5),
        "75006": (800, 400, 0.5),
    }
    kinds = [s["kind"] for s in report["suggestions"]]
    assert kinds == ["add_zips", "add_counties", "add_secondary_states"]
    add_zips = report["suggestions"][0]
    assert add_zips["zips_needed"] == -(-gap // 1_000)
    # the approved ZIPs not pulled yet, nearest to the pulled ones first
    assert add_zips["candidate_zips"] == ["75010", "75013", "73003"]
    assert report["suggestions"][2]["states"] == ["OK"]  # licensed, but no OK rows pulled

    row = await stored_report(pipeline)
    assert (row["target"], row["cleaned_count"], row["gap"]) == (target, 1_200, gap)
    assert (row["status"], row["upsell"]) == ("below_target", False)
    assert row["report"] == report  # the stored report is the run's output
    assert await scalar(pipeline, "SELECT bool_and(selected) FROM cleaned_leads")


async def test_no_zip_left_alerts_head_of_fulfilment(
    make_pipeline: PipelineFactory, make_client: ClientFactory
) -> None:
    # Slack answers 500: the alert is still attempted, and the run still succeeds
    with stub_server(lambda request: (500, {"error": "slack is down"})) as slack:
        pipeline = await make_pipeline(
            slack_webhook_url=f"{slack.url}/services/T0/B0/secret",
            dashboard_url="https://ops.example/console/",
        )
        client = await make_client(states=("TX",), zips=PULLED)
        await seed_leads(pipeline, client, MONTH, make_leads([100, 100, 100, 100], zips=PULLED))

        result = await run_job(pipeline, "pt3", {"client": client.name, "month": MONTH})

    assert result.status == "succeeded", result.runs
    kinds = [s["kind"] for s in result.output["suggestions"]]
    assert kinds == ["add_zips", "add_counties", "alert_head_of_fulfilment"]
    assert result.output["suggestions"][0]["candidate_zips"] == []
    stored = await stored_report(pipeline)
    assert [s["kind"] for s in stored["report"]["suggestions"]] == kinds
    [post] = slack.requests
    assert post.path == "/services/T0/B0/secret"
    text = post.body["text"]
    assert text.startswith("ALERT head of fulfilment: PT3 gap analysis for Acme Insurance, 2026-09")
    assert "400 cleaned vs target 15000" in text
    # a link to the run and to the client's history on the console
    assert text.endswith(
        f" — https://ops.example/console/jobs/{result.job_id}"
        f" (client: https://ops.example/console/board/clients/{client.id})"
    )


async def test_no_zip_left_alert_without_a_console_url_has_no_link(
    make_pipeline: PipelineFactory, make_client: ClientFactory
) -> None:
    with stub_server(lambda request: (200, {})) as slack:
        pipeline = await make_pipeline(slack_webhook_url=f"{slack.url}/services/T0/B0/secret")
        client = await make_client(states=("TX",), zips=PULLED)
        await seed_leads(pipeline, client, MONTH, make_leads([100, 100, 100, 100], zips=PULLED))
        result = await run_job(pipeline, "pt3", {"client": client.name, "month": MONTH})

    assert result.status == "succeeded", result.runs
    [post] = slack.requests
    assert post.body["text"].startswith("ALERT head of fulfilment: ")
    assert "http" not in post.body["text"]


async def test_rerun_replaces_the_report(
    pipeline: Orchestrator, make_client: ClientFactory
) -> None:
    client = await make_client()
    await seed_leads(pipeline, client, MONTH, make_leads([10, 10, 10, 10], zips=PULLED))
    first = await run_job(pipeline, "pt3", {"client": client.name, "month": MONTH})
    await pipeline_delete_some(pipeline, 5)

    second = await run_job(pipeline, "pt3", {"client": client.name, "month": MONTH})

    assert first.output["cleaned_count"] == 40
    assert second.output["cleaned_count"] == 35
    row = await stored_report(pipeline)
    assert row["cleaned_count"] == 35 and row["report"] == second.output


async def pipeline_delete_some(orch: Orchestrator, n: int) -> None:
    async with orch.pool.connection() as conn:
        await conn.execute(
            "DELETE FROM cleaned_leads WHERE id IN (SELECT id FROM cleaned_leads ORDER BY id"
            " LIMIT %s)",
            [n],
        )


ABOVE = {"75001": 1_000, "75002": 2_000, "75006": 4_000, "73003": 5_000, "73008": 6_000}


async def test_above_target_samples_evenly_by_zip_and_flags_upsell(
    pipeline: Orchestrator, make_client: ClientFactory
) -> None:
    client = await make_client(tier=100)
    leads = [
        SeedLead(email=f"{zip_code}.{n}@example.com", zip=zip_code, window_index=n % 4 + 1)
        for zip_code, count in ABOVE.items()
        for n in range(count)
    ]
    await seed_leads(pipeline, client, MONTH, leads)

    result = await run_job(pipeline, "pt3", {"client": client.name, "month": MONTH})

    assert result.status == "succeeded", result.runs
    report = result.output
    assert (report["cleaned_count"], report["gap"], report["status"]) == (
        18_000,
        -3_000,
        "above_target",
    )
    assert report["upsell"] is True
    assert report["suggestions"] == []
    expected_quota = {
        "75001": 1_000,
        "75002": 2_000,
        "75006": 4_000,
        "73003": 4_000,
        "73008": 4_000,
    }
    assert report["sample_quota_by_zip"] == expected_quota
    assert report["selected"] == 15_000
    selected = await fetch(
        pipeline,
        "SELECT zip, count(*) FILTER (WHERE selected) AS kept, count(*) AS total"
        " FROM cleaned_leads GROUP BY zip",
    )
    assert {r["zip"]: r["kept"] for r in selected} == expected_quota
    assert sum(r["kept"] for r in selected) == 15_000
    row = await stored_report(pipeline)
    assert (row["upsell"], row["status"], row["gap"]) == (True, "above_target", -3_000)

    # the sample is repeatable: a re-run keeps the same leads
    before = await fetch(pipeline, "SELECT id FROM cleaned_leads WHERE selected ORDER BY id")
    again = await run_job(pipeline, "pt3", {"client": client.name, "month": MONTH})
    assert again.output["selected"] == 15_000
    assert (
        await fetch(pipeline, "SELECT id FROM cleaned_leads WHERE selected ORDER BY id") == before
    )


async def test_without_counts_pt3_fails_permanently(
    pipeline: Orchestrator, make_client: ClientFactory
) -> None:
    client = await make_client()

    result = await run_job(pipeline, "pt3", {"client": client.name, "month": MONTH})

    assert result.status == "failed"
    assert result.run_statuses == ["failed"]
    assert "run PT2 first" in result.error["message"]
