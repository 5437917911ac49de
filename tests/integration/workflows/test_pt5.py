"""PT5 evergreen update against PostgreSQL and the local EmailBison stand-in (real HTTP)."""

from __future__ import annotations

from datetime import date

import pytest

from orchestrator import Orchestrator
from orchestrator._errors import InvalidPayload
from tests.fix_pipeline import (
    Bison,
    ClientFactory,
    fetch,
    make_leads,
    run_job,
    scalar,
    seed_leads,
)
from workflows.clients import Client
from workflows.windows import upload_date_for_window, windows_for_month

MONTH = "2026-09"
FIRST_WINDOW = windows_for_month(2026, 9)[0]
UPLOAD_DATE = upload_date_for_window(FIRST_WINDOW)  # Monday 2026-08-10: Sep 7 is 28 days on
OLD_NAME = "Evergreen, Last Upload: August 22\u201331"
OLD_HNW_NAME = "Evergreen HNW, Last Upload: August 22\u201331"
NEW_NAME = "Evergreen, Last Upload: September 1\u20137"
NEW_HNW_NAME = "Evergreen HNW, Last Upload: September 1\u20137"
ATTACH = "/leads/attach-leads"


async def uploaded_month(
    pipeline: Orchestrator, make_client: ClientFactory, **client_options: int | None
) -> Client:
    """A client whose September leads are uploaded by PT4 (120 in window 1, 12 of them HNW)."""
    client = await make_client(**client_options)
    await seed_leads(pipeline, client, MONTH, make_leads([120, 30, 30, 30], hnw_every=10))
    result = await run_job(pipeline, "pt4", {"client": client.name, "month": MONTH})
    assert result.status == "succeeded", result.runs
    return client


async def window_lead_ids(orch: Orchestrator, segment: str) -> list[int]:
    rows = await fetch(
        orch,
        "SELECT u.emailbison_lead_id FROM window_leads wl"
        " JOIN renewal_windows w ON w.id = wl.window_id"
        " JOIN uploaded_leads u ON u.email = wl.email"
        " WHERE w.window_index = 1 AND wl.segment = %s ORDER BY 1",
        [segment],
    )
    return [r["emailbison_lead_id"] for r in rows]


async def test_attaches_the_window_and_renames_both_campaigns(
    pipeline: Orchestrator, make_client: ClientFactory, bison: Bison
) -> None:
    assert date(2026, 8, 10) == UPLOAD_DATE
    evergreen = bison.add_campaign(OLD_NAME)
    hnw = bison.add_campaign(OLD_HNW_NAME)
    client = await uploaded_month(pipeline, make_client, campaign_id=evergreen, hnw_campaign_id=hnw)
    bison.server.reset_log()

    result = await run_job(
        pipeline, "pt5", {"client": client.name, "upload_date": UPLOAD_DATE.isoformat()}
    )

    assert result.status == "succeeded", result.runs
    standard_ids = await window_lead_ids(pipeline, "standard")
    hnw_ids = await window_lead_ids(pipeline, "texas_hnw")
    assert (len(standard_ids), len(hnw_ids)) == (108, 12)
    assert sorted(bison.attached(evergreen)) == standard_ids
    assert sorted(bison.attached(hnw)) == hnw_ids
    assert bison.campaign_name(evergreen) == NEW_NAME
    assert bison.campaign_name(hnw) == NEW_HNW_NAME
    assert "\u2013" in NEW_NAME  # an en dash, not a hyphen
    # configured ids: fetched directly, no search
    assert bison.server.request_count(method="GET", path_contains="/api/campaigns/") == 2
    assert bison.server.request_count(method="GET", path_contains="/api/campaigns") == 2
    assert result.output["window"] == "September 1st - 7th renewals"
    assert result.output["upload_date"] == "2026-08-10"
    assert {(c["segment"], c["status"], c["attached"]) for c in result.output["campaigns"]} == {
        ("standard", "updated", 108),
        ("texas_hnw", "updated", 12),
    }
    updates = await fetch(
        pipeline,
        "SELECT campaign_id, segment, attached, old_name, new_name, status, upload_date"
        " FROM evergreen_updates ORDER BY segment",
    )
    assert [(u["campaign_id"], u["attached"], u["old_name"], u["new_name"]) for u in updates] == [
        (evergreen, 108, OLD_NAME, NEW_NAME),
        (hnw, 12, OLD_HNW_NAME, NEW_HNW_NAME),
    ]
    assert {u["status"] for u in updates} == {"updated"}

    # the next run finds the names already showing the window: nothing to do
    attach_calls = bison.server.request_count(path_contains=ATTACH)
    again = await run_job(
        pipeline, "pt5", {"client": client.name, "upload_date": UPLOAD_DATE.isoformat()}
    )
    assert again.status == "succeeded"
    assert {(c["status"], c["attached"]) for c in again.output["campaigns"]} == {
        ("already_current", 0)
    }
    assert bison.server.request_count(path_contains=ATTACH) == attach_calls
    assert bison.server.request_count(method="PATCH") == 2
    assert sorted(bison.attached(evergreen)) == standard_ids
    assert await scalar(pipeline, "SELECT count(*) FROM evergreen_updates") == 2
    assert (
        await scalar(
            pipeline, "SELECT min(attached) FROM evergreen_updates WHERE segment = %s", ["standard"]
        )
        == 108
    )


async def test_campaign_found_by_search_across_pages(
    pipeline: Orchestrator, make_client: ClientFactory, bison: Bison
) -> None:
    for n in range(16):  # they match the search but are not evergreen campaigns
        bison.add_campaign(f"Q3 Evergreen promo {n + 1}", status="paused")
    evergreen = bison.add_campaign(OLD_NAME)
    bison.add_campaign("Spring renewals")
    client = await uploaded_month(pipeline, make_client)
    bison.server.reset_log()

    result = await run_job(
        pipeline, "pt5", {"client": client.name, "upload_date": UPLOAD_DATE.isoformat()}
    )

    assert result.status == "succeeded", result.runs
    assert bison.campaign_name(evergreen) == NEW_NAME
    assert len(bison.attached(evergreen)) == 120  # no HNW twin: the standard campaign only
    searches = [r for r in bison.server.requests if r.path == "/api/campaigns"]
    assert [("page=2" in r.query, "search=Evergreen" in r.query) for r in searches] == [
        (False, True),
        (True, True),
    ]
    assert [c["campaign_id"] for c in result.output["campaigns"]] == [evergreen]


async def test_no_evergreen_campaign_is_a_permanent_failure(
    pipeline: Orchestrator, make_client: ClientFactory, bison: Bison
) -> None:
    bison.add_campaign("Spring renewals")
    client = await uploaded_month(pipeline, make_client)

    result = await run_job(
        pipeline, "pt5", {"client": client.name, "upload_date": UPLOAD_DATE.isoformat()}
    )

    assert result.status == "failed"
    assert result.run_statuses == ["failed"]
    assert "no evergreen campaign" in result.error["message"]


@pytest.mark.parametrize("day", ["2026-08-11", "2026-08-16"])
async def test_non_monday_is_refused_at_enqueue(
    pipeline: Orchestrator, make_client: ClientFactory, day: str
) -> None:
    client = await make_client()

    with pytest.raises(InvalidPayload) as refused:
        await pipeline.enqueue_workflow("pt5", {"client": client.name, "upload_date": day})

    assert "upload_date" in str(refused.value)
    assert "Monday" in str(refused.value)
    assert await scalar(pipeline, "SELECT count(*) FROM procrastinate_jobs") == 0


async def test_missing_window_is_a_permanent_failure(
    pipeline: Orchestrator, make_client: ClientFactory, bison: Bison
) -> None:
    evergreen = bison.add_campaign(OLD_NAME)
    client = await make_client(campaign_id=evergreen)

    result = await run_job(
        pipeline, "pt5", {"client": client.name, "upload_date": UPLOAD_DATE.isoformat()}
    )

    assert result.status == "failed"
    assert result.run_statuses == ["failed"]
    assert result.error["type"] == "PermanentError"
    assert "2026-09-w1" in result.error["message"]
    assert "run PT4 for 2026-09 first" in result.error["message"]
    assert bison.campaign_name(evergreen) == OLD_NAME
    assert bison.server.requests == []
