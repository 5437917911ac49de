"""PT5 — Evergreen update: add this week's renewal window to the client's evergreen campaign.

For ``{client, upload_date}`` (a Monday), the window starting 28 days later is found, its
uploaded leads are attached to the client's evergreen campaign (and the Texas HNW twin, with
the HNW leads, when there is one), then the campaign is renamed
``Evergreen, Last Upload: {Month} {Start-End}`` (with an en dash). The name is the record of
the last window added: when it already shows this window there is nothing to do, and when it
shows a *later* window (this PT5 came late) the campaign is left alone and the skip recorded
(``skipped_older``): the name never moves backwards.

The attach and the rename are external calls recorded as intents before they are made. A
retry resolves an earlier attempt's calls in doubt from the campaign as it reads it now: a
name showing the window means both happened; otherwise the rename did not, and the attach is
taken as done when the campaign's lead count grew by the leads it attached (else attached
again, which EmailBison treats as a no-op for leads already there). Every PT1-PT5 job of a
client holds the client's lock, so two PT5 jobs never update the same campaign at once.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator import CheckContext, ExternalCall, PermanentError, Workflow, WorkflowContext
from workflows.clients import Client, get_client
from workflows.emailbison import Campaign, EmailBisonClient, nothing_done
from workflows.emailbison.workspace import emailbison_api, emailbison_key
from workflows.inputs import client_lock
from workflows.limits import emailbison_limit
from workflows.notify import notify
from workflows.preflight import check_upload_week
from workflows.windows import (
    RenewalWindow,
    evergreen_name,
    evergreen_shows_later_window,
    evergreen_shows_window,
    window_for_upload_date,
)

SEGMENT_PREFIX = {"standard": "Evergreen", "texas_hnw": "Evergreen HNW"}
ATTACH_CALL = "emailbison.attach_leads"
RENAME_CALL = "emailbison.rename_campaign"


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
    earlier = [
        c
        for c in await ctx.external_calls()
        if c.run_id != ctx.run_id and c.kind in (ATTACH_CALL, RENAME_CALL)
    ]
    limit = emailbison_limit(ctx, client.emailbison_url)
    async with emailbison_api(client, ctx.settings, ctx.http_hooks, rate_limit=limit) as api:
        campaigns = await _campaigns(client, api)
        for segment, campaign in sorted(campaigns.items()):
            # Without an HNW twin, the HNW leads go to the evergreen campaign with the rest
            # rather than to no campaign at all.
            segments = [segment]
            if segment == "standard" and "texas_hnw" not in campaigns:
                segments.append("texas_hnw")
            new_name = evergreen_name(window, prefix=_prefix_of(campaign.name, segment))
            in_doubt = [
                c for c in earlier if c.is_intent and c.request.get("campaign_id") == campaign.id
            ]
            attached = 0
            if evergreen_shows_window(campaign.name, window):
                status = "already_current"
                await _resolve_all(ctx, in_doubt, campaign, "the campaign shows the window")
            elif evergreen_shows_later_window(campaign.name, window):
                status = "skipped_older"
                new_name = campaign.name
                ctx.logger.warning(
                    "PT5 %s: campaign %s already shows a later window (%r); not renamed back",
                    window.key,
                    campaign.id,
                    campaign.name,
                )
                await _resolve_all(ctx, in_doubt, campaign, "the campaign shows a later window")
            else:
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
                attach = await _settle_earlier_calls(ctx, in_doubt, campaign, len(lead_ids))
                attach = attach and not any(  # an earlier attempt attached them (answered)
                    c.kind == ATTACH_CALL
                    and c.state == "done"
                    and (c.outcome or {}).get("found", "attached") == "attached"
                    and c.request.get("campaign_id") == campaign.id
                    and c.request.get("window") == window.key
                    and c.request.get("lead_ids") == len(lead_ids)
                    for c in earlier
                )
                if attach and lead_ids:
                    async with ctx.external_call(
                        ATTACH_CALL,
                        f"campaign {campaign.id}: {window.key}",
                        {
                            "campaign_id": campaign.id,
                            "window": window.key,
                            "lead_ids": len(lead_ids),
                            "total_leads_before": campaign.total_leads,
                        },
                        refused=nothing_done,
                    ) as call:
                        await api.attach_leads(campaign.id, lead_ids)
                        call.outcome = {"attached": len(lead_ids)}
                async with ctx.external_call(
                    RENAME_CALL,
                    f"campaign {campaign.id}: {new_name}",
                    {"campaign_id": campaign.id, "from": campaign.name, "to": new_name},
                    refused=nothing_done,
                ) as call:
                    await api.rename_campaign(campaign.id, new_name)
                    call.outcome = {"name": new_name}
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
                                  WHEN evergreen_updates.status = 'updated' THEN 'updated'
                                  ELSE EXCLUDED.status END,
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
        + "; ".join(_summary(r) for r in results),
    )
    return {
        "client": client.name,
        "upload_date": data.upload_date.isoformat(),
        "window": window_row["list_name"],
        "campaigns": results,
    }


def _summary(result: dict[str, Any]) -> str:
    if result["status"] == "updated":
        return f"{result['new_name']} ({result['attached']} leads attached)"
    if result["status"] == "skipped_older":
        return f"{result['new_name']} kept (it shows a later window; this one came late)"
    return f"{result['new_name']} already current"


async def _resolve_all(
    ctx: WorkflowContext, calls: list[ExternalCall], campaign: Campaign, found: str
) -> None:
    for call in calls:
        await ctx.resolve(call, {"found": found, "name": campaign.name})


async def _settle_earlier_calls(
    ctx: WorkflowContext, calls: list[ExternalCall], campaign: Campaign, lead_count: int
) -> bool:
    """Resolve earlier attach/rename calls in doubt on a campaign whose name does not show the
    window yet (so no rename happened); returns whether the leads must be attached (again)."""
    attach = True
    for call in calls:
        if call.kind == RENAME_CALL:
            await ctx.resolve(call, {"found": "not renamed", "name": campaign.name})
            continue
        before = call.request.get("total_leads_before")
        count = call.request.get("lead_ids")
        now = campaign.total_leads
        done = (
            isinstance(before, int)
            and isinstance(count, int)
            and now is not None
            and count == lead_count
            and now >= before + count
        )
        if done:
            attach = False
        await ctx.resolve(
            call,
            {"found": "attached" if done else "not (fully) attached", "total_leads": now},
        )
    return attach


WORKFLOW: Workflow[EvergreenInput] = Workflow(
    name="pt5",
    aliases=("pt5_evergreen_update", "pt5_evergreen", "evergreen_update"),
    input_model=EvergreenInput,
    run=run,
    check=check,
    description="Evergreen update: attach the week's window and rename the campaign",
    lock=client_lock,
)
