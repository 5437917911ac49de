"""PT2 — Clay formatting: turn a client-month's raw Cole rows into cleaned, verified leads.

The rules are those of :mod:`workflows.formatting` and :mod:`workflows.cell_safety` (head of
household, home value parsing, the $900k cap with the Texas HNW segment, readable purchase
date, purchase day, renewal date, cells that could run as code). They run set-based: one
``INSERT ... SELECT`` (:data:`RULES_QUERY`, built from :mod:`workflows.sql_rules`) writes the
outcome of every raw row into the temporary table ``pt2_rows``; rows holding non-ASCII text,
for which only the Python functions are exact, are cleaned by them (:func:`python_outcome`)
and copied into the same table. The Python functions stay the specification:
``tests/integration/workflows/test_sql_rules.py`` proves both agree on generated messy rows.
One lead is kept per email (the lowest raw row id). Emails are syntax-checked always and
validated with Debounce when ``ORCHESTRATOR_DEBOUNCE_API_KEY`` is set (answers cached in
``email_checks``). The month's ``cleaned_leads`` and ``monthly_counts`` are recomputed from
scratch on every run, never incremented, so a retry or a re-run after new Cole files gives
the same answer.
Rows can optionally be pushed to a Clay webhook table (``push_to_clay``, off by default).
Clay keeps every row it is sent (no dedupe), so the push goes in batches of
:data:`CLAY_BATCH` rows, each an external call recorded before it is made: a retry never posts
a batch Clay answered 2xx to again (nor the rows it accepted before refusing one), posts a
batch left in doubt (no answer recorded) again at most once, and records what it did.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow

from orchestrator import ExternalCall, PermanentError, Workflow, WorkflowContext
from workflows import sql_rules
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
    renewal_date,
    segment_for,
    split_household_names,
)
from workflows.inputs import ClientMonth, client_lock
from workflows.limits import debounce_limit
from workflows.notify import notify
from workflows.preflight import check_client_month
from workflows.schedules import enqueue_next_step
from workflows.settings import pipeline_settings
from workflows.windows import window_for_day

#: A lead's own fields, as both ``pt2_rows`` and ``cleaned_leads`` hold them.
LEAD_COLUMNS = (
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
)
CLEANED_COLUMNS = (
    "client_id",
    "month",
    "raw_lead_id",
    "dedupe_key",
    *LEAD_COLUMNS,
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


RAW_COLUMNS = (
    "first_name",
    "last_name",
    "address_1",
    "city",
    "state",
    "zip5",
    "cell_phone_number",
    "email_address",
    "purchase_date",
    "home_value",
    "head_household",
    "date_of_birth",
)
"""The raw_leads cells the rules read."""
_ASCII_ROW = sql_rules.is_ascii(f"concat({', '.join(RAW_COLUMNS)})")
OUTCOME_COLUMNS = (
    "raw_lead_id",
    "dedupe_key",
    "outcome",
    "reason",
    "relaxed",
    *LEAD_COLUMNS,
    "renewal_date",
    "segment",
)
"""``pt2_rows``: one row per raw lead, what the rules made of it. ``outcome`` is
``no_head``, ``bad_fields``, ``unsafe`` (bad fields, refused for ``reason``), ``over_cap``
(``relaxed`` when within the relaxed cap), ``email_invalid``, ``email_unsafe`` (refused for
``reason``), ``duplicate`` (a later row with an email already taken) or ``candidate``."""


def _rules_query() -> str:
    """``INSERT INTO pt2_rows`` the outcome of every ASCII raw row of the client-month
    (parameters: client id, month, renewal year, renewal month, the month's last day).

    Three nested layers, each computing columns the next reads several times (a subquery
    with ``OFFSET 0`` is evaluated once per row rather than pasted into every reference).
    """
    r = sql_rules
    head = f"({r.cell('head_household')} IS NOT NULL)"

    def when_head(expr: str) -> str:
        return f"CASE WHEN {head} THEN {expr} END"

    base = f"""
        SELECT id, dedupe_key, zip5, {head} AS head,
               {when_head(r.state("state"))} AS st,
               {when_head(r.purchase_date("purchase_date"))} AS purchase,
               {when_head(r.strip_markup("first_name"))} AS original,
               {when_head(r.strip_markup("last_name"))} AS last,
               {when_head(r.strip_markup("address_1"))} AS address,
               {when_head(r.strip_markup("city"))} AS town,
               {when_head(r.money("home_value"))} AS value,
               {when_head(r.email("email_address"))} AS mail,
               {when_head(r.phone("cell_phone_number"))} AS phone,
               {when_head(r.optional_text("date_of_birth"))} AS birth
          FROM raw_leads
         WHERE client_id = __client__ AND month = __month__ AND {_ASCII_ROW}
        OFFSET 0
    """  # noqa: S608 - expressions of this package
    derived = f"""
        SELECT b.*,
               {r.tidy_case(r.greeting_part("original"))} AS greeting,
               CASE WHEN extract(month FROM purchase) = __renewal_month__
                         AND __renewal_year__ > extract(year FROM purchase)
                    THEN make_date(__renewal_year__, __renewal_month__,
                                   least(extract(day FROM purchase)::integer, __last_day__))
               END AS renewal,
               CASE WHEN value IS NULL OR value <= 0 THEN NULL
                    WHEN value <= {HOME_VALUE_CAP} THEN 'standard'
                    WHEN st = 'TX' THEN 'texas_hnw' END AS segment,
               mail IS NOT NULL AND {r.email_valid("mail")} AS mail_ok
          FROM ({base}) b
        OFFSET 0
    """  # noqa: S608
    unsafe_row = r.unsafe_row_reason("original", "greeting", "last", "address", "town")
    outcome = f"""
        SELECT d.*, {unsafe_row} AS unsafe_row, {r.email_unsafe_reason("mail")} AS unsafe_mail
          FROM ({derived}) d
        OFFSET 0
    """  # noqa: S608
    query = f"""
        INSERT INTO pt2_rows ({", ".join(OUTCOME_COLUMNS)})
        SELECT id, dedupe_key, o.outcome,
               CASE o.outcome WHEN 'unsafe' THEN unsafe_row WHEN 'email_unsafe' THEN unsafe_mail
               END,
               value > {HOME_VALUE_CAP} AND value <= {RELAXED_HOME_VALUE_CAP},
               original, greeting, last, mail, nullif(address, ''), nullif(town, ''), st, zip5,
               phone, birth, value, purchase, renewal, segment
          FROM ({outcome}) x,
               LATERAL (SELECT CASE
                   WHEN NOT head THEN 'no_head'
                   WHEN st IS NULL OR zip5 IS NULL OR zip5 = '' OR renewal IS NULL
                        OR greeting IS NULL OR last IS NULL OR last = '' THEN 'bad_fields'
                   WHEN unsafe_row IS NOT NULL THEN 'unsafe'
                   WHEN segment IS NULL
                   THEN CASE WHEN value > {HOME_VALUE_CAP} THEN 'over_cap' ELSE 'bad_fields' END
                   WHEN NOT mail_ok THEN 'email_invalid'
                   WHEN unsafe_mail IS NOT NULL THEN 'email_unsafe'
                   ELSE 'candidate' END AS outcome) o
    """  # noqa: S608
    query = query.replace("%", "%%")  # the rules' literals hold % signs
    for name in ("client", "month", "renewal_year", "renewal_month", "last_day"):
        query = query.replace(f"__{name}__", f"%({name})s")
    return query


RULES_QUERY = _rules_query()


def python_outcome(raw: dict[str, Any], year: int, month: int) -> tuple[Any, ...]:
    """One ``pt2_rows`` row (:data:`OUTCOME_COLUMNS`) by the Python rules, for a raw row
    holding non-ASCII text (the SQL rules are exact for ASCII only)."""
    counts = Counts()
    rejected: list[RejectedRow] = []
    c = clean_row(raw, year, month, counts, rejected)
    reason = rejected[0].reason if rejected else None
    value = parse_money(raw["home_value"])
    if counts.no_head_household:
        outcome = "no_head"
    elif counts.over_value_cap:
        outcome = "over_cap"
    elif counts.bad_fields:
        outcome = "unsafe" if rejected else "bad_fields"
    elif counts.email_invalid:
        outcome = "email_unsafe" if rejected else "email_invalid"
    else:
        outcome = "candidate"
    relaxed = value is not None and HOME_VALUE_CAP < value <= RELAXED_HOME_VALUE_CAP
    if c is None:
        return (raw["id"], raw["dedupe_key"], outcome, reason, relaxed, *([None] * 14))
    return (
        raw["id"], raw["dedupe_key"], outcome, reason, relaxed, c.first_name, c.greeting,
        c.last_name, c.email, c.address_1, c.city, c.state, c.zip, c.cell_phone,
        c.date_of_birth, c.home_value, c.purchase, c.renewal, c.segment,
    )  # fmt: skip


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
    await ctx.progress(0, 1, note="rows")
    counts, rejected = await _apply_rules(conn, client.id, data.first_day, year, month)
    if counts.raw_rows == 0:
        raise PermanentError(
            f"no raw leads for client {client.name!r} month {data.month}: run PT1 first"
        )
    await ctx.progress(counts.raw_rows, counts.raw_rows, note="rows")
    cursor = await conn.execute(
        "SELECT email FROM pt2_rows WHERE outcome = 'candidate' ORDER BY raw_lead_id"
    )
    emails = [row["email"] for row in await cursor.fetchall()]
    verdicts, check = await _deliverable(ctx, emails)
    refused = [e for e in emails if not verdicts.get(e, False)]
    counts.email_undeliverable = len(refused)

    # The month's window rows go first: they point at these cleaned leads (no foreign key
    # cascades to them since migration 0018).
    await conn.execute(
        """
        DELETE FROM window_leads wl USING renewal_windows w
         WHERE wl.window_id = w.id AND w.client_id = %s AND w.month = %s
        """,
        [client.id, data.first_day],
    )
    await conn.execute(
        "DELETE FROM cleaned_leads WHERE client_id = %s AND month = %s",
        [client.id, data.first_day],
    )
    cursor = await conn.execute(
        f"""
        WITH kept AS (
            INSERT INTO cleaned_leads ({", ".join(CLEANED_COLUMNS)})
            SELECT %(client)s, %(month)s, raw_lead_id, dedupe_key, first_name, greeting_name,
                   last_name, email, address_1, city, state, zip, cell_phone, date_of_birth,
                   home_value, purchase_date, {_READABLE_DATE},
                   extract(day FROM purchase_date), renewal_date,
                   least((extract(day FROM purchase_date)::integer - 1) / 7 + 1, 4),
                   segment, %(check)s
              FROM pt2_rows
             WHERE outcome = 'candidate' AND NOT email = ANY (%(refused)s::text[])
             ORDER BY raw_lead_id
            RETURNING segment
        )
        SELECT count(*) AS cleaned,
               count(*) FILTER (WHERE segment = 'texas_hnw') AS texas_hnw,
               count(*) FILTER (WHERE segment = 'standard') AS standard
          FROM kept
        """,  # noqa: S608 - column names are this module's constants
        {"client": client.id, "month": data.first_day, "check": check, "refused": refused},
    )
    kept = await cursor.fetchone()
    assert kept is not None
    counts.cleaned, counts.texas_hnw = kept["cleaned"], kept["texas_hnw"]
    counts.cleaned_standard = kept["standard"]
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
        webhook = _clay_webhook(ctx, counts.cleaned)
        clay_rows = await _clay_rows(conn, refused)
        await ctx.commit()  # the cleaned leads stand whatever happens to the push
        clay = await _push_to_clay(ctx, webhook, clay_rows)
    await conn.execute("TRUNCATE pt2_rows")
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
        result["next_job"] = await enqueue_next_step(ctx, "pt2", client.name, data.month)
    await notify(
        ctx,
        f"PT2 Clay formatting done for {client.name}, {data.month}: {counts.cleaned} cleaned "
        f"leads ({counts.texas_hnw} Texas HNW) from {counts.raw_rows} raw rows; "
        f"{counts.no_head_household} without head of household, {counts.over_value_cap} over "
        f"the value cap, {counts.email_invalid + counts.email_undeliverable} bad emails"
        + (f", {len(rejected)} refused for cells that could run as code" if rejected else ""),
    )
    return result


_READABLE_DATE = "to_char(purchase_date, 'FMMonth FMDDth')"
""":func:`~workflows.formatting.readable_date` (``to_char`` without ``TM`` is English)."""


async def _apply_rules(
    conn: AsyncConnection[DictRow], client_id: int, first_day: date, year: int, month: int
) -> tuple[Counts, list[RejectedRow]]:
    """Fill ``pt2_rows`` with the outcome of every raw row of the month (set-based in SQL,
    the Python rules for rows holding non-ASCII text), mark later rows of an email already
    taken as duplicates, and count. Returns the counts so far and the rows refused for
    unsafe cells, in raw row order."""
    await conn.execute(
        f"""
        CREATE TEMP TABLE IF NOT EXISTS pt2_rows (
            {", ".join(f"{c} {_OUTCOME_TYPES.get(c, 'text')}" for c in OUTCOME_COLUMNS)}
        )
        """
    )
    await conn.execute("TRUNCATE pt2_rows")
    params = {
        "client": client_id,
        "month": first_day,
        "renewal_year": year,
        "renewal_month": month,
        "last_day": calendar.monthrange(year, month)[1],
    }
    await conn.execute(RULES_QUERY, params)
    cursor = await conn.execute(
        f"""
        SELECT id, {", ".join(RAW_COLUMNS)}, dedupe_key FROM raw_leads
         WHERE client_id = %(client)s AND month = %(month)s AND NOT {_ASCII_ROW}
        """,  # noqa: S608 - a constant
        params,
    )
    others = await cursor.fetchall()
    if others:
        outcomes = [python_outcome(raw, year, month) for raw in others]
        async with conn.cursor().copy(
            f"COPY pt2_rows ({', '.join(OUTCOME_COLUMNS)}) FROM STDIN"
        ) as copy:
            for block in copy_text_blocks(outcomes):
                await copy.write(block)
    await conn.execute(
        """
        UPDATE pt2_rows p SET outcome = 'duplicate'
          FROM (SELECT raw_lead_id, row_number() OVER (PARTITION BY email ORDER BY raw_lead_id)
                  FROM pt2_rows WHERE outcome = 'candidate') d
         WHERE d.row_number > 1 AND p.raw_lead_id = d.raw_lead_id
        """
    )
    cursor = await conn.execute(
        """
        SELECT count(*) AS raw_rows,
               count(*) FILTER (WHERE outcome <> 'no_head') AS head_of_household,
               count(*) FILTER (WHERE outcome = 'no_head') AS no_head_household,
               count(*) FILTER (WHERE outcome IN ('bad_fields', 'unsafe', 'duplicate'))
                   AS bad_fields,
               count(*) FILTER (WHERE outcome = 'over_cap') AS over_value_cap,
               count(*) FILTER (WHERE outcome = 'over_cap' AND relaxed) AS relaxed_band,
               count(*) FILTER (WHERE outcome IN ('email_invalid', 'email_unsafe'))
                   AS email_invalid
          FROM pt2_rows
        """
    )
    totals = await cursor.fetchone()
    assert totals is not None
    cursor = await conn.execute(
        "SELECT raw_lead_id, reason FROM pt2_rows WHERE reason IS NOT NULL ORDER BY raw_lead_id"
    )
    rejected = [RejectedRow(row["raw_lead_id"], row["reason"]) for row in await cursor.fetchall()]
    return Counts(**totals), rejected


_OUTCOME_TYPES = {
    "raw_lead_id": "bigint",
    "relaxed": "boolean",
    "home_value": "numeric",
    "purchase_date": "date",
    "renewal_date": "date",
}


async def _clay_rows(
    conn: AsyncConnection[DictRow], refused: list[str]
) -> dict[str, dict[str, object]]:
    """The kept leads as Clay rows, by dedupe key, in raw row order."""
    cursor = await conn.execute(
        f"""
        SELECT dedupe_key, greeting_name, last_name, email, state, zip, home_value::text,
               {_READABLE_DATE} AS readable, renewal_date, segment
          FROM pt2_rows
         WHERE outcome = 'candidate' AND NOT email = ANY (%s::text[])
         ORDER BY raw_lead_id
        """,  # noqa: S608 - a constant
        [refused],
    )
    return {
        row["dedupe_key"]: {
            "first_name": row["greeting_name"],
            "last_name": row["last_name"],
            "email": row["email"],
            "state": row["state"],
            "zip": row["zip"],
            "home_value": row["home_value"],
            "purchase_date": row["readable"],
            "renewal_date": row["renewal_date"].isoformat(),
            "segment": row["segment"],
        }
        for row in await cursor.fetchall()
    }


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
    ctx: WorkflowContext, webhook: ClayWebhook, rows: dict[str, dict[str, object]]
) -> dict[str, int]:
    """Push the rows (by dedupe key) Clay does not have yet (see the module docstring);
    returns counts."""
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
