"""PT3 — Gap analysis: compare a client-month's cleaned leads with the package target.

Target by tier (100 → 15,000, 200 → 30,000), the gap, per-ZIP yield, and the suggestions of
:func:`workflows.gaps.build_gap_report`. Over target, the month is sampled evenly by ZIP (the
leads left out get ``selected = false`` and are not uploaded by PT4) and an upsell is flagged.
The report is stored in ``gap_reports`` (one per client-month, replaced on re-run) and is the
run's output.
"""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from orchestrator import PermanentError, Workflow, WorkflowContext
from workflows.alerts import console_link
from workflows.clients import get_client
from workflows.gaps import build_gap_report, sample_evenly_by_zip
from workflows.inputs import ClientMonth, client_lock
from workflows.notify import notify
from workflows.preflight import check_client_month
from workflows.schedules import enqueue_next_step


async def run(ctx: WorkflowContext, data: ClientMonth) -> dict[str, Any]:
    conn = ctx.connection
    client = await get_client(conn, data.client)
    key = {"c": client.id, "m": data.first_day}
    cursor = await conn.execute(
        "SELECT * FROM monthly_counts WHERE client_id = %(c)s AND month = %(m)s", key
    )
    counts = await cursor.fetchone()
    if counts is None:
        raise PermanentError(
            f"no monthly counts for client {client.name!r} month {data.month}: run PT2 first"
        )
    cursor = await conn.execute(
        "SELECT zip, rows FROM pulled_zips WHERE client_id = %(c)s AND month = %(m)s", key
    )
    pulled = {row["zip"]: row["rows"] for row in await cursor.fetchall()}
    cursor = await conn.execute(
        """
        SELECT id, zip FROM cleaned_leads WHERE client_id = %(c)s AND month = %(m)s
         ORDER BY md5(dedupe_key), id
        """,
        key,
    )
    leads = await cursor.fetchall()
    by_zip: dict[str, list[int]] = {}
    for lead in leads:
        by_zip.setdefault(lead["zip"], []).append(lead["id"])
    cursor = await conn.execute(
        """
        SELECT DISTINCT upper(btrim(state)) AS state FROM raw_leads
         WHERE client_id = %(c)s AND month = %(m)s AND state IS NOT NULL
        """,
        key,
    )
    pulled_states = {row["state"] for row in await cursor.fetchall()}
    has_texas = "TX" in client.licensed_states
    report = build_gap_report(
        tier=client.tier,
        pulled_by_zip=pulled,
        cleaned_by_zip={z: len(ids) for z, ids in by_zip.items()},
        approved_zips=client.approved_zips or None,
        rows_in_relaxed_value_band=None if has_texas else counts["relaxed_band"],
        relaxed_band_pass_rate=_pass_rate(counts),
        secondary_states=sorted(set(client.licensed_states) - pulled_states),
    )
    selected = len(leads)
    if report.upsell:
        sample = sample_evenly_by_zip(by_zip, report.target)
        keep = [lead_id for ids in sample.values() for lead_id in ids]
        selected = len(keep)
        await conn.execute(
            """
            UPDATE cleaned_leads SET selected = (id IN (SELECT unnest(%(keep)s::bigint[])))
             WHERE client_id = %(c)s AND month = %(m)s
            """,
            {**key, "keep": keep},
        )
    else:
        await conn.execute(
            "UPDATE cleaned_leads SET selected = true WHERE client_id = %(c)s AND month = %(m)s",
            key,
        )
    body = {**report.to_json(), "client": client.name, "month": data.month, "selected": selected}
    await conn.execute(
        """
        INSERT INTO gap_reports (client_id, month, target, cleaned_count, gap, status, upsell,
                                 report)
        VALUES (%(c)s, %(m)s, %(target)s, %(cleaned)s, %(gap)s, %(status)s, %(upsell)s,
                %(report)s)
        ON CONFLICT (client_id, month) DO UPDATE SET
            target = EXCLUDED.target, cleaned_count = EXCLUDED.cleaned_count,
            gap = EXCLUDED.gap, status = EXCLUDED.status, upsell = EXCLUDED.upsell,
            report = EXCLUDED.report, created_at = now()
        """,
        {
            **key,
            "target": report.target,
            "cleaned": report.cleaned_count,
            "gap": report.gap,
            "status": report.status,
            "upsell": report.upsell,
            "report": Jsonb(body),
        },
    )
    if data.chain:
        body["next_job"] = await enqueue_next_step(ctx, "pt3", client.name, data.month)
    alert = any(s["kind"] == "alert_head_of_fulfilment" for s in report.suggestions)
    text = (
        ("ALERT head of fulfilment: " if alert else "")
        + f"PT3 gap analysis for {client.name}, {data.month}: {report.cleaned_count} cleaned "
        f"vs target {report.target} ({report.status.replace('_', ' ')}, gap {report.gap})"
        + ("; upsell flagged, month sampled evenly by ZIP" if report.upsell else "")
    )
    if alert:
        # the person alerted opens the run (its report) and the client's history from here
        job = console_link(ctx.settings, f"/jobs/{ctx.job_id}")
        history = console_link(ctx.settings, f"/board/clients/{client.id}")
        if job and history:
            text += f" — {job} (client: {history})"
    await notify(ctx, text)
    return body


def _pass_rate(counts: Any) -> float | None:
    considered = counts["cleaned"] + counts["email_invalid"] + counts["email_undeliverable"]
    if considered == 0:
        return None
    return float(counts["cleaned"]) / float(considered)


WORKFLOW: Workflow[ClientMonth] = Workflow(
    name="pt3",
    aliases=("pt3_gap_analysis", "gap_analysis"),
    input_model=ClientMonth,
    run=run,
    check=check_client_month,
    description="Gap analysis: cleaned leads vs the package target, with suggestions",
    lock=client_lock,
)
