"""PT2 — Clay formatting: turn a client-month's raw Cole rows into cleaned, verified leads.

The rules are the pure functions of :mod:`workflows.formatting` (head of household, home
value parsing, the $900k cap with the Texas HNW segment, readable purchase date, purchase day,
renewal date, dedupe key). Emails are syntax-checked always and validated with Debounce when
``ORCHESTRATOR_DEBOUNCE_API_KEY`` is set (answers cached in ``email_checks``). The month's
``cleaned_leads`` and ``monthly_counts`` are recomputed from scratch on every run, never
incremented, so a retry or a re-run after new Cole files gives the same answer.
Rows can optionally be pushed to a Clay webhook table (``push_to_clay``, off by default).
Clay keeps every row it is sent (no dedupe), so the push goes in batches of
:data:`CLAY_BATCH` rows, each an external call recorded before it is made: a retry never posts
a batch Clay answered 2xx to again (nor the rows it accepted before refusing one), posts a
batch left in doubt (no answer recorded) again at most once, and records what it did.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from psycopg.rows import DictRow

from orchestrator import ExternalCall, PermanentError, Workflow, WorkflowContext
from workflows.cell_safety import (
    MAX_REJECTED_LISTED,
    RejectedRow,
    rejection_report,
    safe_optional_text,
    strip_markup,
    unsafe_email_reason,
    unsafe_row_reason,
)
from workflows.clay import ClayError, ClayWebhook
from workflows.clients import get_client
from workflows.copy_format import copy_text_blocks
from workflows.debounce import DebounceClient
from workflows.formatting import (
    CLAY_TABLE_MAX_ROWS,
    HOME_VALUE_CAP,
    RELAXED_HOME_VALUE_CAP,
    is_head_of_household,
    is_valid_email_syntax,
    normalize_email,
    normalize_phone,
    normalize_state,
    parse_money,
    parse_purchase_date,
    readable_date,
    renewal_date,
    segment_for,
    split_household_names,
)
from workflows.inputs import ClientMonth, client_lock
from workflows.limits import debounce_limit
from workflows.notify import notify
from workflows.preflight import check_client_month
from workflows.schedules import month_dedupe_key
from workflows.settings import pipeline_settings
from workflows.windows import window_for_day

CLEANED_COLUMNS = (
    "client_id",
    "month",
    "raw_lead_id",
    "dedupe_key",
    "first_name",
    "greeting_name",
    "last_name",
    "email",
    "address_1",
    "city",
    "state",
    "zip",
    "cell_phone",
    "date_of_birth",
    "home_value",
    "purchase_date",
    "readable_purchase_date",
    "purchase_day",
    "renewal_date",
    "window_index",
    "segment",
    "email_check",
)
DEBOUNCE_BATCH = 500
"""Emails validated (and their verdicts committed to ``email_checks``) per batch."""
CLAY_BATCH = 25
"""Rows per recorded Clay push (at most this many rows posted twice after a crash)."""
CLAY_CALL = "clay.push_rows"


class ClayFormatInput(ClientMonth):
    push_to_clay: bool = False


@dataclass
class Counts:
    raw_rows: int = 0
    head_of_household: int = 0
    no_head_household: int = 0
    bad_fields: int = 0
    over_value_cap: int = 0
    relaxed_band: int = 0
    texas_hnw: int = 0
    email_invalid: int = 0
    email_undeliverable: int = 0
    cleaned: int = 0
    cleaned_standard: int = 0


@dataclass
class Candidate:
    raw: dict[str, Any]
    first_name: str
    greeting: str
    last_name: str
    email: str
    state: str
    zip: str
    home_value: Decimal
    purchase: date
    renewal: date
    window_index: int
    segment: str
    address_1: str | None
    city: str | None
    cell_phone: str | None
    date_of_birth: str | None


def clean_row(
    raw: dict[str, Any],
    year: int,
    month: int,
    counts: Counts,
    rejected: list[RejectedRow] | None = None,
) -> Candidate | None:
    """Apply the PT2 rules to one raw row; count why a dropped row was dropped.

    Rows refused for unsafe cells count as ``bad_fields`` (names, address) or
    ``email_invalid`` (email) and are appended to ``rejected`` with the reason.
    """
    if not is_head_of_household(raw["head_household"]):
        counts.no_head_household += 1
        return None
    counts.head_of_household += 1
    state = normalize_state(raw["state"])
    zip_code = raw["zip5"]
    purchase = parse_purchase_date(raw["purchase_date"])
    renewal = renewal_date(purchase, year, month) if purchase else None
    names = split_household_names(strip_markup(raw["first_name"]))
    last_name = strip_markup(raw["last_name"]) or ""
    if not (state and zip_code and purchase and renewal and names and last_name):
        counts.bad_fields += 1
        return None
    address, city = strip_markup(raw["address_1"]), strip_markup(raw["city"])
    unsafe = unsafe_row_reason(names, last_name, address, city)
    if unsafe is not None:
        counts.bad_fields += 1
        if rejected is not None:
            rejected.append(RejectedRow(raw["id"], unsafe))
        return None
    value = parse_money(raw["home_value"])
    segment = segment_for(state, value)
    if segment is None:
        if value is not None and value > HOME_VALUE_CAP:
            counts.over_value_cap += 1
            if value <= RELAXED_HOME_VALUE_CAP:
                counts.relaxed_band += 1
        else:
            counts.bad_fields += 1
        return None
    assert value is not None
    email = normalize_email(raw["email_address"])
    if email is None or not is_valid_email_syntax(email):
        counts.email_invalid += 1
        return None
    unsafe = unsafe_email_reason(email)
    if unsafe is not None:
        counts.email_invalid += 1
        if rejected is not None:
            rejected.append(RejectedRow(raw["id"], unsafe))
        return None
    return Candidate(
        raw=raw,
        first_name=names.original,
        greeting=names.greeting,
        last_name=last_name,
        email=email,
        state=state,
        zip=zip_code,
        home_value=value,
        purchase=purchase,
        renewal=renewal,
        window_index=window_for_day(year, month, purchase.day).index,
        segment=segment,
        address_1=address or None,
        city=city or None,
        cell_phone=normalize_phone(raw["cell_phone_number"]),
        date_of_birth=safe_optional_text(raw["date_of_birth"]),
    )


def clean_rows(
    raws: list[DictRow], year: int, month: int, rejected: list[RejectedRow] | None = None
) -> tuple[Counts, list[Candidate]]:
    """Apply the rules to every raw row; one lead per email (EmailBison's unique key).
    Rows refused for unsafe cells are appended to ``rejected``."""
    counts = Counts(raw_rows=len(raws))
    candidates: list[Candidate] = []
    seen_emails: set[str] = set()
    for raw in raws:
        candidate = clean_row(raw, year, month, counts, rejected)
        if candidate is None:
            continue
        if candidate.email in seen_emails:
            counts.bad_fields += 1
            continue
        seen_emails.add(candidate.email)
        candidates.append(candidate)
    return counts, candidates


def _cleaned_text(kept: list[Candidate], client_id: int, month: date, check: str) -> list[str]:
    """The cleaned leads as COPY text, in :data:`CLEANED_COLUMNS` order."""
    return copy_text_blocks(
        [
            (
                client_id,
                month,
                c.raw["id"],
                c.raw["dedupe_key"],
                c.first_name,
                c.greeting,
                c.last_name,
                c.email,
                c.address_1,
                c.city,
                c.state,
                c.zip,
                c.cell_phone,
                c.date_of_birth,
                c.home_value,
                c.purchase,
                readable_date(c.purchase),
                c.purchase.day,
                c.renewal,
                c.window_index,
                c.segment,
                check,
            )
            for c in kept
        ]
    )


async def _deliverable(ctx: WorkflowContext, emails: list[str]) -> tuple[dict[str, bool], str]:
    """Debounce verdicts for ``emails`` (cached in email_checks), or all-True without a key."""
    settings = pipeline_settings(ctx.settings)
    key = settings.debounce_api_key
    if key is None:
        return dict.fromkeys(emails, True), "syntax"
    conn = ctx.connection
    cursor = await conn.execute(
        "SELECT email, safe FROM email_checks WHERE email = ANY(%s)", [emails]
    )
    verdicts = {row["email"]: row["safe"] for row in await cursor.fetchall()}
    missing = [e for e in emails if e not in verdicts]
    if missing:
        async with DebounceClient(
            key.get_secret_value(),
            base_url=settings.debounce_url,
            event_hooks=ctx.http_hooks,
            rate_limit=debounce_limit(ctx),  # the account's, shared by every worker
        ) as debounce:
            # Committed batch by batch: a failure part way (no credits, an outage) costs at
            # most one batch of checks on the next attempt, not all of them again.
            for start in range(0, len(missing), DEBOUNCE_BATCH):
                fresh = await debounce.validate_many(
                    missing[start : start + DEBOUNCE_BATCH],
                    concurrency=settings.debounce_concurrency,
                )
                async with conn.cursor() as cursor:
                    # ON CONFLICT: another client's PT2 may have checked the same address.
                    await cursor.executemany(
                        "INSERT INTO email_checks (email, safe) VALUES (%s, %s)"
                        " ON CONFLICT (email) DO UPDATE SET safe = EXCLUDED.safe,"
                        " checked_at = now()",
                        list(fresh.items()),
                    )
                await ctx.commit()  # the cache survives a failure later in this attempt
                verdicts.update(fresh)
                await ctx.progress(len(verdicts), len(emails), note="emails validated")
    return verdicts, "debounce"


async def run(ctx: WorkflowContext, data: ClayFormatInput) -> dict[str, Any]:
    conn = ctx.connection
    client = await get_client(conn, data.client)
    year, month = data.year_month
    cursor = await conn.execute(
        """
        SELECT id, first_name, last_name, address_1, city, state, zip5, cell_phone_number,
               email_address, purchase_date, home_value, head_household, date_of_birth,
               dedupe_key
          FROM raw_leads WHERE client_id = %s AND month = %s ORDER BY id
        """,
        [client.id, data.first_day],
    )
    raws = await cursor.fetchall()
    if not raws:
        raise PermanentError(
            f"no raw leads for client {client.name!r} month {data.month}: run PT1 first"
        )
    # The rules are CPU work: off the event loop, so heartbeats and other jobs keep going.
    rejected: list[RejectedRow] = []
    await ctx.progress(0, len(raws), note="rows")
    counts, candidates = await asyncio.to_thread(clean_rows, raws, year, month, rejected)
    await ctx.progress(len(raws), len(raws), note="rows")
    verdicts, check = await _deliverable(ctx, [c.email for c in candidates])
    kept = [c for c in candidates if verdicts.get(c.email, False)]
    counts.email_undeliverable = len(candidates) - len(kept)
    segments = Counter(c.segment for c in kept)
    counts.texas_hnw = segments["texas_hnw"]
    counts.cleaned = len(kept)
    counts.cleaned_standard = segments["standard"]

    await conn.execute(
        "DELETE FROM cleaned_leads WHERE client_id = %s AND month = %s",
        [client.id, data.first_day],
    )
    blocks = await asyncio.to_thread(_cleaned_text, kept, client.id, data.first_day, check)
    async with conn.cursor().copy(
        f"COPY cleaned_leads ({', '.join(CLEANED_COLUMNS)}) FROM STDIN"
    ) as copy:
        for block in blocks:
            await copy.write(block)
    fields = list(vars(counts))
    await conn.execute(
        f"""
        INSERT INTO monthly_counts (client_id, month, {", ".join(fields)})
        VALUES (%(client_id)s, %(month)s, {", ".join(f"%({f})s" for f in fields)})
        ON CONFLICT (client_id, month) DO UPDATE SET
            {", ".join(f"{f} = EXCLUDED.{f}" for f in fields)}, computed_at = now()
        """,  # noqa: S608 - field names are this module's dataclass fields
        {"client_id": client.id, "month": data.first_day, **vars(counts)},
    )
    clay: dict[str, int] = {}
    if data.push_to_clay:
        webhook = _clay_webhook(ctx, len(kept))
        await ctx.commit()  # the cleaned leads stand whatever happens to the push
        clay = await _push_to_clay(ctx, webhook, kept)
    result: dict[str, Any] = {
        "client": client.name,
        "month": data.month,
        "counts": vars(counts),
        "email_check": check,
        "pushed_to_clay": clay.get("pushed", 0) + clay.get("reposted_in_doubt", 0),
        "unsafe_cells": await _unsafe_cells_report(ctx, rejected),
    }
    if clay:
        result["clay_push"] = clay
    if data.chain:
        result["next_job"] = await ctx.enqueue(
            "pt3",
            {"client": client.name, "month": data.month, "chain": True},
            # the month's chain keeps one key: a second run-month finds it running
            dedupe_key=month_dedupe_key(client.name, data.month),
        )
    await notify(
        ctx,
        f"PT2 Clay formatting done for {client.name}, {data.month}: {counts.cleaned} cleaned "
        f"leads ({counts.texas_hnw} Texas HNW) from {counts.raw_rows} raw rows; "
        f"{counts.no_head_household} without head of household, {counts.over_value_cap} over "
        f"the value cap, {counts.email_invalid + counts.email_undeliverable} bad emails"
        + (f", {len(rejected)} refused for cells that could run as code" if rejected else ""),
    )
    return result


async def _unsafe_cells_report(ctx: WorkflowContext, rejected: list[RejectedRow]) -> dict[str, Any]:
    """The rows refused for unsafe cells, for the run's record (see :func:`rejection_report`),
    with the file and line of each row listed."""
    if not rejected:
        return rejection_report(rejected, {})
    ctx.logger.warning(
        "PT2 refused %s row(s) with cells that could run as code in a spreadsheet or email",
        len(rejected),
        extra={"event": "pt2.unsafe_cells", "rows": len(rejected)},
    )
    cursor = await ctx.connection.execute(
        "SELECT r.id, f.file_name, r.row_number FROM raw_leads r"
        " JOIN cole_files f ON f.id = r.file_id WHERE r.id = ANY(%s)",
        [[row.raw_lead_id for row in rejected[:MAX_REJECTED_LISTED]]],
    )
    where = {row["id"]: (row["file_name"], row["row_number"]) for row in await cursor.fetchall()}
    return rejection_report(rejected, where)


def _clay_webhook(ctx: WorkflowContext, rows: int) -> ClayWebhook:
    """The configured Clay webhook, or a permanent error before anything is committed."""
    settings = pipeline_settings(ctx.settings)
    url = settings.clay_webhook_url
    if url is None:
        raise PermanentError("push_to_clay needs ORCHESTRATOR_CLAY_WEBHOOK_URL")
    if rows > CLAY_TABLE_MAX_ROWS:
        raise PermanentError(f"{rows} rows exceed a Clay table's {CLAY_TABLE_MAX_ROWS} row limit")
    auth = settings.clay_webhook_auth
    return ClayWebhook(
        url.get_secret_value(),
        auth.get_secret_value() if auth else None,
        event_hooks=ctx.http_hooks,
    )


async def _push_to_clay(
    ctx: WorkflowContext, webhook: ClayWebhook, kept: list[Candidate]
) -> dict[str, int]:
    """Push the rows Clay does not have yet (see the module docstring); returns counts."""
    rows: dict[str, dict[str, object]] = {
        c.raw["dedupe_key"]: {
            "first_name": c.greeting,
            "last_name": c.last_name,
            "email": c.email,
            "state": c.state,
            "zip": c.zip,
            "home_value": str(c.home_value),
            "purchase_date": readable_date(c.purchase),
            "renewal_date": c.renewal.isoformat(),
            "segment": c.segment,
        }
        for c in kept
    }
    numbers = {"pushed": 0, "already_pushed": 0, "reposted_in_doubt": 0, "given_up_in_doubt": 0}
    settled: set[str] = set()
    for call in await ctx.external_calls(CLAY_CALL):
        keys = [str(k) for k in call.request.get("rows", [])]
        if call.state == "done":
            settled.update(keys)
        elif call.state == "failed":
            settled.update(keys[: int((call.outcome or {}).get("rows_sent", 0))])
    for call in await ctx.calls_in_doubt(CLAY_CALL):
        keys = [str(k) for k in call.request.get("rows", []) if k not in settled]
        if call.request.get("resolves") is not None:
            # Already the one re-post of a batch in doubt: never a third time.
            await ctx.resolve(call, {"given_up": True, "rows": len(keys)}, failed=True)
            settled.update(keys)
            numbers["given_up_in_doubt"] += len(keys)
            continue
        await ctx.resolve(call, {"reposted": len(keys)})
        sent = await _post_batch(ctx, webhook, rows, [k for k in keys if k in rows], call)
        settled.update(keys)
        numbers["reposted_in_doubt"] += sent
    todo = [key for key in rows if key not in settled]
    numbers["already_pushed"] = len(rows) - len(todo)
    for start in range(0, len(todo), CLAY_BATCH):
        numbers["pushed"] += await _post_batch(
            ctx, webhook, rows, todo[start : start + CLAY_BATCH], None
        )
    return numbers


async def _post_batch(
    ctx: WorkflowContext,
    webhook: ClayWebhook,
    rows: dict[str, dict[str, object]],
    keys: list[str],
    resolves: ExternalCall | None,
) -> int:
    """Post one batch of rows as a recorded external call; returns the rows Clay accepted."""
    if not keys:
        return 0
    await ctx.check()  # a stopping worker ends the push between two batches
    request: dict[str, Any] = {"rows": keys}
    if resolves is not None:
        request["resolves"] = resolves.id
    async with ctx.external_call(CLAY_CALL, f"{keys[0]} +{len(keys) - 1}", request) as call:
        try:
            sent = await webhook.push_rows([rows[key] for key in keys])
        except ClayError as exc:
            if exc.status_code is not None:  # answered: the rows before it were accepted
                call.failed({"rows_sent": exc.rows_sent, "status": exc.status_code})
            raise
        call.outcome = {"rows_sent": sent}
    return sent


WORKFLOW: Workflow[ClayFormatInput] = Workflow(
    name="pt2",
    aliases=("pt2_clay_format", "pt2_clay_formatting", "clay_format"),
    input_model=ClayFormatInput,
    run=run,
    check=check_client_month,
    description="Clay formatting: clean, segment and verify a client-month's leads",
    lock=client_lock,
)
