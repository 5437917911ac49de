"""PT4 — EmailBison upload: the month's four renewal windows, uploaded in chunks of 500.

For ``{client, month}``: the windows (purchase days 1-7, 8-14, 15-21, 22-end) are stored with
their leads (PT3's selection), the custom variables are created in the workspace first, then
each window's leads not yet uploaded for that window are sent with
``create-or-update/multiple`` at most 500 at a time. Every chunk's lead ids are recorded in
``uploaded_leads`` and committed before the next chunk, so a retry resumes where it stopped.
A 422 on a chunk isolates the offending leads (recorded as ``rejected`` with EmailBison's
reason) and sends the rest again. 429 honours Retry-After (in the client, then as a job
retry); 401/403/404 are permanent.

Concurrency. Against a provider answering in 300 ms, one request at a time caps a PT4 near
three requests a second whatever the allowed rate, so up to ``ORCHESTRATOR_EMAILBISON_
CONCURRENCY`` chunks (default 16) are in flight at once, the four windows' chunks one stream
(a chunk starts when another ends, whatever the main task is doing; a window is filled while
the previous one's chunks flow and read when the last of them are starting), each an asyncio
task that builds its leads, records its intent and sends, paced by the instance's shared
rate limit (see :mod:`workflows.limits`: every client and worker on the instance draws from
it, oldest waiter first, so concurrent clients progress side by side). The workflow's own
transaction is touched by the main task only: it records each chunk's answer in
``uploaded_leads`` and commits as the chunks complete, in whatever order they complete
(resuming reads what was recorded, not a position).

Each chunk is an external call (``emailbison.upsert_leads``): its intent (window, emails) is
committed before the request (on a pool connection, not the workflow's transaction) and its
outcome (the stored lead ids) right after the answer. When a chunk fails, no new chunk is
started and the others in flight are let finish, so their answers are in the ledger. A retry
first settles the calls of earlier attempts: a chunk whose answer was recorded but whose
``uploaded_leads`` rows were not committed is recorded from that answer, without a request; a
chunk in doubt (no answer recorded: a crash, a timeout) is sent again once, as the upsert it
is, and the old call resolved. So an interruption leaves at most the chunks in flight in
doubt: at most N chunks sent twice, N being the concurrency.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from psycopg.rows import tuple_row

from orchestrator import ExternalCall, PermanentError, Workflow, WorkflowContext
from workflows import sql_rules
from workflows.clients import Client, get_client
from workflows.emailbison import (
    MAX_LEADS_PER_REQUEST,
    EmailBisonClient,
    LeadOut,
    LeadValidationError,
    nothing_done,
)
from workflows.emailbison.workspace import emailbison_api, emailbison_key
from workflows.inputs import ClientMonth, client_lock
from workflows.limits import emailbison_limit
from workflows.notify import notify
from workflows.preflight import check_client_month
from workflows.settings import pipeline_settings
from workflows.windows import upload_date_for_window, window_list_name, windows_for_month

#: The external-call kind of one chunk upload.
UPSERT_CALL = "emailbison.upsert_leads"

CUSTOM_VARIABLES = (
    "date_of_birth",
    "street_address",
    "city",
    "state",
    "zip",
    "renewal_date",
    "cell_phone",
    "home_value",
    "purchase_date",
    "renewal_window",
    "segment",
)


#: The columns of a pending lead (:func:`_pending`), in this order: the lead's names and
#: email, then the values of :data:`CUSTOM_VARIABLES` as the text EmailBison is sent, but for
#: ``renewal_window`` (the window's list name, the same for every lead of a window).
PENDING_COLUMNS = (
    "c.greeting_name",
    "c.last_name",
    "c.email",
    "c.date_of_birth",
    "c.address_1",
    "c.city",
    "c.state",
    "c.zip",
    sql_rules.iso_date("c.renewal_date"),
    "c.cell_phone",
    sql_rules.whole_dollars("c.home_value"),
    "c.readable_purchase_date",
    "c.segment",
)
PendingLead = tuple[str | None, ...]
_EMAIL = 2
"""Where a pending lead's email is (its rows are tuples: they are read 10,000 a second)."""
_READ_BATCH = 1_000
"""Pending leads converted between two turns of the event loop."""


def lead_for(row: PendingLead, list_name: str) -> dict[str, Any]:
    """The lead's JSON object for ``create-or-update/multiple``, from a pending lead's row
    (:data:`PENDING_COLUMNS`): what ``LeadIn(...).to_payload()`` gives for it (the model is
    the specification; a test holds them equal), built as a plain dict from text the query
    already rendered because PT4 builds 10,000 of them a second. Blank values are left out."""
    values = (*row[3:12], list_name, row[12])
    lead: dict[str, Any] = {"first_name": row[0], "last_name": row[1], "email": row[2]}
    pairs = zip(CUSTOM_VARIABLES, values, strict=True)
    variables = [{"name": n, "value": v} for n, v in pairs if v]
    if variables:
        lead["custom_variables"] = variables
    return lead


def pending_email(row: PendingLead) -> str:
    """A pending lead's email, lower-cased (how answers and records key it)."""
    return str(row[_EMAIL]).lower()


async def prepare_windows(ctx: WorkflowContext, client: Client, data: ClientMonth) -> list[Any]:
    """Upsert the month's four windows; return their rows, each with ``expected``: the leads
    it will hold once filled (:func:`fill_window`), for the progress total.

    The windows are filled one at a time as the upload reaches them, so that the first
    chunks leave while the later windows are being filled.
    """
    conn = ctx.connection
    year, month = data.year_month
    for window in windows_for_month(year, month):
        await conn.execute(
            """
            INSERT INTO renewal_windows (client_id, month, window_index, start_date, end_date,
                                         upload_date, list_name)
            VALUES (%s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (client_id, month, window_index) DO UPDATE SET list_name =
                EXCLUDED.list_name
            """,
            [
                client.id,
                data.first_day,
                window.index,
                window.start,
                window.end,
                upload_date_for_window(window),
                window_list_name(window),
            ],
        )
    await ctx.commit()
    cursor = await conn.execute(
        """
        SELECT w.id, w.window_index, w.list_name,
               GREATEST((SELECT count(*) FROM cleaned_leads c
                          WHERE c.client_id = w.client_id AND c.month = w.month
                            AND c.window_index = w.window_index AND c.selected),
                        (SELECT count(*) FROM window_leads wl WHERE wl.window_id = w.id))
                   AS expected
          FROM renewal_windows w
         WHERE w.client_id = %s AND w.month = %s ORDER BY w.window_index
        """,
        [client.id, data.first_day],
    )
    return list(await cursor.fetchall())


async def fill_window(ctx: WorkflowContext, client: Client, window: Any) -> int:
    """Store the window's leads (PT3's selection) and commit; return how many it holds."""
    conn = ctx.connection
    await conn.execute(
        """
        INSERT INTO window_leads (window_id, cleaned_lead_id, email, segment)
        SELECT w.id, c.id, c.email, c.segment
          FROM renewal_windows w
          JOIN cleaned_leads c ON c.client_id = w.client_id AND c.month = w.month
                              AND c.window_index = w.window_index AND c.selected
         WHERE w.id = %(w)s
        ON CONFLICT (window_id, email) DO UPDATE SET cleaned_lead_id =
            EXCLUDED.cleaned_lead_id, segment = EXCLUDED.segment
        """,
        {"w": window["id"]},
    )
    cursor = await conn.execute(
        """
        UPDATE renewal_windows
           SET lead_count = (SELECT count(*) FROM window_leads WHERE window_id = %(w)s)
         WHERE id = %(w)s
        RETURNING lead_count
        """,
        {"w": window["id"]},
    )
    row = await cursor.fetchone()
    assert row is not None
    await ctx.commit()
    return int(row["lead_count"])


async def _pending(ctx: WorkflowContext, client: Client, window_id: int) -> list[PendingLead]:
    """The window's leads not yet recorded as uploaded or refused, by email, as tuples of
    :data:`PENDING_COLUMNS`."""
    async with ctx.connection.cursor(row_factory=tuple_row) as cursor:
        await cursor.execute(
            f"""
            SELECT {", ".join(PENDING_COLUMNS)}
              FROM window_leads wl
              JOIN cleaned_leads c ON c.id = wl.cleaned_lead_id
             WHERE wl.window_id = %(w)s
               AND NOT EXISTS (SELECT 1 FROM uploaded_leads u
                                WHERE u.client_id = %(c)s AND u.workspace = %(ws)s
                                  AND u.email = wl.email AND u.window_id = %(w)s)
             ORDER BY wl.email
            """,  # noqa: S608 - the columns are constants of this module
            {"w": window_id, "c": client.id, "ws": client.emailbison_url},
        )
        # Rows are converted as they are fetched: a window's 25,000 at once held the event
        # loop (and the chunks waiting on it to send) for a tenth of a second.
        rows: list[PendingLead] = []
        while batch := await cursor.fetchmany(_READ_BATCH):
            rows.extend(batch)
            await asyncio.sleep(0)
    return rows


async def _record(
    ctx: WorkflowContext,
    client: Client,
    window_id: int,
    uploaded: dict[str, int],
    rejected: dict[str, str],
) -> None:
    """Record a chunk's answer: lead ids by (lower-cased) email, and the refused leads.

    One statement for the whole chunk (its rows one JSON document), not one per lead: at a
    provider's full rate this runs twenty times a second.
    """
    rows = [{"email": e, "lead_id": i, "status": "uploaded"} for e, i in uploaded.items()]
    rows += [{"email": e, "status": "rejected", "reason": r} for e, r in rejected.items()]
    if not rows:
        return
    await ctx.connection.execute(
        """
        INSERT INTO uploaded_leads (client_id, workspace, email, window_id,
                                    emailbison_lead_id, status, reason)
        SELECT %(client)s, %(workspace)s, r.email, %(window)s, r.lead_id, r.status, r.reason
          FROM json_to_recordset(%(rows)s::json)
               AS r (email text, lead_id bigint, status text, reason text)
        ON CONFLICT (client_id, workspace, email) DO UPDATE SET
            window_id = EXCLUDED.window_id,
            emailbison_lead_id = COALESCE(EXCLUDED.emailbison_lead_id,
                                          uploaded_leads.emailbison_lead_id),
            status = EXCLUDED.status, reason = EXCLUDED.reason, uploaded_at = now()
        """,
        {
            "client": client.id,
            "workspace": client.emailbison_url,
            "window": window_id,
            # one JSON text, not four arrays: psycopg adapts lists element by element
            "rows": orjson.dumps(rows).decode(),
        },
    )


async def upload_chunk(
    api: EmailBisonClient, leads: list[dict[str, Any]]
) -> tuple[list[LeadOut], dict[str, str]]:
    """Upload one chunk; leads EmailBison refuses (422) are set aside with the reason."""
    rejected: dict[str, str] = {}
    remaining = list(leads)
    while remaining:
        try:
            return await api.upsert_leads(remaining), rejected
        except LeadValidationError as exc:
            # Only indices of this request count: a 422 naming no lead of it cannot be
            # isolated, and sending the same leads again would loop forever.
            bad = {i for i in exc.invalid_indices if 0 <= i < len(remaining)}
            if not bad:
                raise
            for index, fields in exc.errors_by_index.items():
                if 0 <= index < len(remaining):
                    reason = "; ".join(f"{f or 'lead'}: {' '.join(m)}" for f, m in fields.items())
                    rejected[str(remaining[index]["email"]).lower()] = reason[:500]
            remaining = [lead for i, lead in enumerate(remaining) if i not in bad]
    return [], rejected


async def _send_chunk(
    ctx: WorkflowContext,
    api: EmailBisonClient,
    window: Any,
    rows: Sequence[PendingLead],
    resolves: ExternalCall | None = None,
) -> tuple[dict[str, int], dict[str, str]]:
    """One chunk as a recorded external call: intent, request, outcome (the lead ids)."""
    emails = [pending_email(row) for row in rows]
    request: dict[str, Any] = {"window_id": window["id"], "emails": emails}
    if resolves is not None:
        request["resolves"] = resolves.id
    key = f"window {window['id']}: {emails[0]} +{len(emails) - 1}"
    async with ctx.external_call(UPSERT_CALL, key, request, refused=nothing_done) as call:
        stored, rejected = await upload_chunk(
            api, [lead_for(row, window["list_name"]) for row in rows]
        )
        uploaded = {lead.email.lower(): lead.id for lead in stored}
        call.outcome = {"uploaded": uploaded, "rejected": rejected}
    return uploaded, rejected


ChunkTask = asyncio.Task[tuple[dict[str, int], dict[str, str]]]


@dataclass
class WindowUpload:
    """One window's part of the upload: what is left to send, and what came of it."""

    window: Any
    lead_count: int
    pending: list[PendingLead]
    settled: dict[str, int]
    sent: int = 0
    rejected: int = 0
    chunks_left: int = 0


async def _upload_windows(
    ctx: WorkflowContext,
    client: Client,
    api: EmailBisonClient,
    windows: list[Any],
    *,
    load: Callable[[Any], Awaitable[WindowUpload]],
    prefill: Callable[[Any], Awaitable[None]],
    concurrency: int,
    chunk_done: Callable[[int], Awaitable[None]],
    window_done: Callable[[WindowUpload], Awaitable[None]],
) -> list[WindowUpload]:
    """Send every window's pending leads in chunks, at most ``concurrency`` in flight.

    The chunks of all windows form one stream, windows in order. A chunk starts as soon as
    another ends (from that chunk's completion, not from this task), so the database work of
    this task — recording answers, storing a window's leads (``prefill``, once per window),
    reading them (``load``: its pending leads, earlier attempts' calls settled) — never holds
    the stream up: when it did, a window's start took longer than the sixteen chunks in
    flight last at the provider's rate, and the rate went unused for up to half a second each
    time. The next
    window is stored once the current one's chunks are flowing and read when fewer than
    ``concurrency`` chunks are left to start. Each chunk's answer is recorded and committed by
    this (the main) task as it arrives, then ``chunk_done(leads)`` reports progress, and
    ``window_done`` runs once a window's last chunk is recorded. On an error (or once the
    attempt is fenced or the worker stopping) no chunk is started any more and the chunks in
    flight are let finish (their answers reach the ledger, for the next attempt to record
    without a request); on cancellation they are cancelled. Returns the windows' uploads, in
    order.
    """
    uploads: list[WindowUpload] = []
    queued: deque[tuple[WindowUpload, list[PendingLead]]] = deque()
    in_flight: dict[ChunkTask, tuple[WindowUpload, int]] = {}  # until recorded here
    running = 0  # chunk tasks not yet ended
    halted = False  # a chunk failed or was cancelled: start none any more

    def start_chunks() -> None:
        """Start queued chunks while fewer than ``concurrency`` run (synchronous: it is
        also called from a chunk's completion)."""
        nonlocal running
        while queued and running < concurrency and not (halted or ctx.stopping or ctx.fenced):
            upload, rows = queued.popleft()
            task = asyncio.create_task(_send_chunk(ctx, api, upload.window, rows))
            task.add_done_callback(chunk_ended)
            in_flight[task] = (upload, len(rows))
            running += 1

    def chunk_ended(task: ChunkTask) -> None:
        nonlocal running, halted
        running -= 1
        if task.cancelled() or task.exception() is not None:
            halted = True
        else:
            start_chunks()

    async def load_next() -> None:
        upload = await load(windows[len(uploads)])
        uploads.append(upload)
        pending = upload.pending
        for first in range(0, len(pending), MAX_LEADS_PER_REQUEST):
            queued.append((upload, pending[first : first + MAX_LEADS_PER_REQUEST]))
            upload.chunks_left += 1
        if upload.chunks_left == 0:
            await window_done(upload)
        start_chunks()

    try:
        while True:
            if len(uploads) < len(windows) and len(queued) < concurrency and not halted:
                await load_next()
                continue
            if len(uploads) < len(windows) and not halted:
                await prefill(windows[len(uploads)])  # stores a window once, then returns
            if not in_flight:
                if queued:  # nothing runs, yet chunks are left: stopping or fenced
                    await ctx.check()
                    start_chunks()
                    continue
                return uploads
            finished, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            answers = []
            for task in sorted(finished, key=list(in_flight).index):
                upload, leads = in_flight.pop(task)
                # A chunk's error ends the upload here; the answers of the others are in the
                # ledger, for the next attempt to record without a request.
                answers.append((upload, leads, task.result()))
            for upload, leads, (uploaded, rejected) in answers:
                await _record(ctx, client, upload.window["id"], uploaded, rejected)
                await ctx.commit()
                upload.sent += len(uploaded)
                upload.rejected += len(rejected)
                upload.chunks_left -= 1
                await chunk_done(leads)
                if upload.chunks_left == 0:
                    await window_done(upload)
    except asyncio.CancelledError:
        halted = True
        await _stop_in_flight(list(in_flight), cancel=True)
        raise
    except BaseException:
        halted = True
        await _stop_in_flight(list(in_flight), cancel=False)
        raise


async def _stop_in_flight(tasks: list[ChunkTask], *, cancel: bool) -> None:
    """Let the chunks in flight end (or cancel them) and collect their errors quietly."""
    if cancel:
        for task in tasks:
            task.cancel()
    try:
        await asyncio.gather(*tasks, return_exceptions=True)
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _settle_earlier_calls(
    ctx: WorkflowContext,
    client: Client,
    api: EmailBisonClient,
    window: Any,
    pending: list[PendingLead],
    calls: list[ExternalCall],
) -> tuple[list[PendingLead], dict[str, int]]:
    """Settle the window's chunks sent by earlier attempts; return what is left to send.

    A chunk answered but not recorded is recorded from its answer (no request). A chunk in
    doubt is sent again once, as an upsert, and its call resolved with what happened.
    """
    by_email = {pending_email(row): row for row in pending}
    numbers = {"recorded_from_answers": 0, "resent_in_doubt": 0, "rejected_in_doubt": 0}
    for call in calls:
        if call.request.get("window_id") != window["id"] or call.run_id == ctx.run_id:
            continue
        if call.state == "done" and call.outcome and "resolved_by_run" not in call.outcome:
            uploaded = {
                e: int(i) for e, i in call.outcome.get("uploaded", {}).items() if e in by_email
            }
            rejected = {
                e: str(r) for e, r in call.outcome.get("rejected", {}).items() if e in by_email
            }
            if uploaded or rejected:
                await _record(ctx, client, window["id"], uploaded, rejected)
                await ctx.commit()
                numbers["recorded_from_answers"] += len(uploaded) + len(rejected)
                for email in (*uploaded, *rejected):
                    by_email.pop(email, None)
        elif call.is_intent:
            rows = [by_email[e] for e in call.request.get("emails", []) if e in by_email]
            found: dict[str, Any] = {"in_doubt_leads": len(call.request.get("emails", []))}
            if rows:
                uploaded, rejected = await _send_chunk(ctx, api, window, rows, resolves=call)
                await _record(ctx, client, window["id"], uploaded, rejected)
                await ctx.commit()
                numbers["resent_in_doubt"] += len(uploaded)
                numbers["rejected_in_doubt"] += len(rejected)
                for row in rows:
                    by_email.pop(pending_email(row), None)
                found |= {"resent_as_upsert": len(rows), "stored": len(uploaded)}
            else:
                found |= {"resent_as_upsert": 0, "already_recorded": True}
            await ctx.resolve(call, found)
    left = [row for row in pending if pending_email(row) in by_email]
    return left, numbers


async def run(ctx: WorkflowContext, data: ClientMonth) -> dict[str, Any]:
    client = await get_client(ctx.connection, data.client)
    emailbison_key(client, ctx.settings)  # a missing key fails at once, before any work
    windows = await prepare_windows(ctx, client, data)
    if not any(w["expected"] for w in windows):
        raise PermanentError(
            f"no cleaned leads for client {client.name!r} month {data.month}: run PT2/PT3 first"
        )
    total_leads = sum(int(w["expected"]) for w in windows)
    processed = 0
    await ctx.progress(0, total_leads, note="leads")
    earlier = [c for c in await ctx.external_calls(UPSERT_CALL) if c.run_id != ctx.run_id]
    concurrency = pipeline_settings(ctx.settings).emailbison_concurrency

    async def chunk_done(leads: int) -> None:
        nonlocal processed
        processed += leads
        await ctx.progress(processed, total_leads, note="leads")

    async def window_done(upload: WindowUpload) -> None:
        cursor = await ctx.connection.execute(
            """
            UPDATE renewal_windows w SET
                uploaded = (SELECT count(*) FROM uploaded_leads u
                             WHERE u.window_id = w.id AND u.status = 'uploaded'),
                rejected = (SELECT count(*) FROM uploaded_leads u
                             WHERE u.window_id = w.id AND u.status = 'rejected'),
                completed_at = now()
             WHERE id = %s
            RETURNING uploaded, rejected
            """,
            [upload.window["id"]],
        )
        totals = await cursor.fetchone()
        assert totals is not None
        await ctx.commit()
        done[upload.window["id"]] = dict(totals)

    lead_counts: dict[int, int] = {}  # window id -> leads stored, once filled

    async def prefill(window: Any) -> None:
        """Store the window's leads, the first time only."""
        nonlocal total_leads
        if window["id"] in lead_counts:
            return
        await ctx.check()
        lead_counts[window["id"]] = await fill_window(ctx, client, window)
        total_leads += lead_counts[window["id"]] - int(window["expected"])

    async def load(window: Any) -> WindowUpload:
        nonlocal processed
        await prefill(window)
        await ctx.check()
        lead_count = lead_counts[window["id"]]
        pending = await _pending(ctx, client, window["id"])
        processed += lead_count - len(pending)  # done by an earlier attempt
        before = len(pending)
        # Leads carry custom variables: the workspace must have them before any upload (the
        # first window is read while they are checked).
        await variables
        pending, settled = await _settle_earlier_calls(ctx, client, api, window, pending, earlier)
        processed += before - len(pending)  # calls in doubt, settled just now
        # Chunks in doubt sent again count as sent by this run.
        return WindowUpload(
            window,
            lead_count,
            pending,
            settled,
            sent=settled["resent_in_doubt"],
            rejected=settled["rejected_in_doubt"],
        )

    done: dict[int, dict[str, int]] = {}
    limit = emailbison_limit(ctx, client.emailbison_url)
    async with emailbison_api(client, ctx.settings, ctx.http_hooks, rate_limit=limit) as api:
        variables = asyncio.ensure_future(api.ensure_custom_variables(CUSTOM_VARIABLES))
        try:
            uploads = await _upload_windows(
                ctx,
                client,
                api,
                windows,
                load=load,
                prefill=prefill,
                concurrency=concurrency,
                chunk_done=chunk_done,
                window_done=window_done,
            )
        finally:
            if not variables.done():
                variables.cancel()
                await asyncio.gather(variables, return_exceptions=True)
    summary = [
        {
            "window": upload.window["list_name"],
            "leads": upload.lead_count,
            "sent_this_run": upload.sent,
            "rejected_this_run": upload.rejected,
            **{k: v for k, v in upload.settled.items() if v and k != "rejected_in_doubt"},
            "uploaded": done[upload.window["id"]]["uploaded"],
            "rejected": done[upload.window["id"]]["rejected"],
        }
        for upload in uploads
    ]
    await notify(
        ctx,
        f"PT4 EmailBison upload done for {client.name}, {data.month}: "
        + "; ".join(
            f"{w['window']}: {w['uploaded']} uploaded, {w['rejected']} rejected" for w in summary
        ),
    )
    return {"client": client.name, "month": data.month, "windows": summary}


WORKFLOW: Workflow[ClientMonth] = Workflow(
    name="pt4",
    aliases=("pt4_bison_uploads", "pt4_emailbison_upload", "emailbison_upload"),
    input_model=ClientMonth,
    run=run,
    check=check_client_month,
    description="EmailBison upload: a month's four renewal windows in chunks of 500",
    lock=client_lock,
)
