"""PT5 — Evergreen update: add this week's renewal window to the client's evergreen campaign.

For ``{client, upload_date}`` (a Monday), the window starting 28 days later is found, its
uploaded leads are attached to the client's evergreen campaign (and the Texas HNW twin, with
the HNW leads, when there is one), then the campaign is renamed
``Evergreen, Last Upload: {Month} {Start-End}`` (with an en dash). The name is the record of
the last window added: when it already shows this window there is nothing to do. Attaching is
idempotent, so a retry after a failure between attach and rename simply repeats both.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator import CheckContext, PermanentError, Workflow, WorkflowContext
from workflows.clients import Client, get_client
from workflows.emailbison import Campaign, EmailBisonClient
from workflows.emailbison.workspace import emailbison_api, emailbison_key
from workflows.notify import notify
from workflows.preflight import check_upload_week
from workflows.windows import (
    RenewalWindow,
    evergreen_name,
    evergreen_shows_window,
    window_for_upload_date,
)

SEGMENT_PREFIX = {"standard": "Evergreen", "texas_hnw": "Evergreen HNW"}


class EvergreenInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client: str = Field(min_length=1, max_length=200)
    upload_date: date

    @field_validator("upload_date")
    @classmethod
    def _monday(cls, value: date) -> date:
        if value.weekday() != 0:
            raise ValueError(f"{value.isoformat()} is a {value:%A}; the upload date is a Monday")
        return value


async def check(ctx: CheckContext, data: EvergreenInput) -> list[str]:
    """Enqueue-time check (see :mod:`workflows.preflight`)."""
    return await check_upload_week(ctx, data.client, data.upload_date)


def _prefix_of(name: str, segment: str) -> str:
    head = name.split(",", 1)[0].strip()
    return head if "evergreen" in head.lower() else SEGMENT_PREFIX[segment]


async def _campaigns(client: Client, api: EmailBisonClient) -> dict[str, Campaign]:
    """The evergreen campaign (and HNW twin): by configured id, else by name search."""
    found: dict[str, Campaign] = {}
    if client.evergreen_campaign_id:
        found["standard"] = await api.get_campaign(client.evergreen_campaign_id)
    if client.evergreen_hnw_campaign_id:
        found["texas_hnw"] = await api.get_campaign(client.evergreen_hnw_campaign_id)
    if len(found) < 2:
        for campaign in await api.find_campaigns("Evergreen"):
            lowered = campaign.name.lower()
            if not lowered.startswith("evergreen"):
                continue
            segment = "texas_hnw" if "hnw" in lowered else "standard"
            found.setdefault(segment, campaign)
    if "standard" not in found:
        raise PermanentError(
            f"client {client.name!r} has no evergreen campaign in EmailBison "
            "(name starting 'Evergreen', or set --campaign-id)"
        )
    return found


async def run(ctx: WorkflowContext, data: EvergreenInput) -> dict[str, Any]:
    conn = ctx.connection
    client = await get_client(conn, data.client)
    emailbison_key(client, ctx.settings)  # a missing key fails at once, before any work
    window: RenewalWindow = window_for_upload_date(data.upload_date)
    cursor = await conn.execute(
        """
        SELECT w.id, w.list_name, w.uploaded,
               (SELECT count(*) FROM window_leads wl WHERE wl.window_id = w.id) AS leads
          FROM renewal_windows w
         WHERE w.client_id = %s AND w.month = %s AND w.window_index = %s
        """,
        [client.id, window.first_of_month, window.index],
    )
    window_row = await cursor.fetchone()
    if window_row is None:
        raise PermanentError(
            f"window {window.key} of client {client.name!r} was never prepared: "
            f"run PT4 for {window.year:04d}-{window.month:02d} first"
        )
    if window_row["uploaded"] and not window_row["leads"]:
        # PT2 ran again after PT4 and rebuilt the month's leads: the window must be prepared
        # again, or the campaign would be renamed with none of this window's leads attached.
        raise PermanentError(
            f"window {window.key} of client {client.name!r} lost its leads (PT2 ran again "
            f"after PT4): run PT4 for {window.year:04d}-{window.month:02d} again first"
        )
    results: list[dict[str, Any]] = []
    async with emailbison_api(client, ctx.settings) as api:
        campaigns = await _campaigns(client, api)
        for segment, campaign in sorted(campaigns.items()):
            # Without an HNW twin, the HNW leads go to the evergreen campaign with the rest
            # rather than to no campaign at all.
            segments = [segment]
            if segment == "standard" and "texas_hnw" not in campaigns:
                segments.append("texas_hnw")
            new_name = evergreen_name(window, prefix=_prefix_of(campaign.name, segment))
            attached = 0
            status = "already_current"
            if not evergreen_shows_window(campaign.name, window):
                cursor = await conn.execute(
                    """
                    SELECT u.emailbison_lead_id FROM window_leads wl
                      JOIN uploaded_leads u ON u.email = wl.email AND u.client_id = %(c)s
                                           AND u.workspace = %(ws)s AND u.status = 'uploaded'
                     WHERE wl.window_id = %(w)s AND wl.segment = ANY(%(s)s)
                     ORDER BY u.emailbison_lead_id
                    """,
                    {
                        "c": client.id,
                        "ws": client.emailbison_url,
                        "w": window_row["id"],
                        "s": segments,
                    },
                )
                lead_ids = [row["emailbison_lead_id"] for row in await cursor.fetchall()]
                await api.attach_leads(campaign.id, lead_ids)
                await api.rename_campaign(campaign.id, new_name)
                attached = len(lead_ids)
                status = "updated"
            await conn.execute(
                """
                INSERT INTO evergreen_updates (client_id, upload_date, window_id, campaign_id,
                                               segment, attached, old_name, new_name, status)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (client_id, upload_date, campaign_id) DO UPDATE SET
                    attached = GREATEST(evergreen_updates.attached, EXCLUDED.attached),
                    new_name = EXCLUDED.new_name,
                    status = CASE WHEN EXCLUDED.status = 'updated' THEN 'updated'
                                  ELSE evergreen_updates.status END,
                    updated_at = now()
                """,
                [
                    client.id,
                    data.upload_date,
                    window_row["id"],
                    campaign.id,
                    segment,
                    attached,
                    campaign.name,
                    new_name,
                    status,
                ],
            )
            await ctx.commit()
            await ctx.progress(len(results) + 1, len(campaigns), note="campaigns")
            results.append(
                {
                    "campaign_id": campaign.id,
                    "segment": segment,
                    "old_name": campaign.name,
                    "new_name": new_name,
                    "attached": attached,
                    "status": status,
                }
            )
    await notify(
        ctx,
        f"PT5 evergreen update for {client.name}, upload {data.upload_date}: "
        + "; ".join(
            f"{r['new_name']} ({r['attached']} leads attached)"
            if r["status"] == "updated"
            else f"{r['new_name']} already current"
            for r in results
        ),
    )
    return {
        "client": client.name,
        "upload_date": data.upload_date.isoformat(),
        "window": window_row["list_name"],
        "campaigns": results,
    }


WORKFLOW: Workflow[EvergreenInput] = Workflow(
    name="pt5",
    aliases=("pt5_evergreen_update", "pt5_evergreen", "evergreen_update"),
    input_model=EvergreenInput,
    run=run,
    check=check,
    description="Evergreen update: attach the week's window and rename the campaign",
)
