"""Enqueue-time checks of PT1-PT5: what a person's ``run-month``, ``run-week`` or
``enqueue`` would surely fail on is refused at once, what might be a mistake is warned about.

Refused (``InvalidPayload``, exit code 2, nothing enqueued):

- an unknown client (the closest name is suggested: a different case, a typo);
- an inactive client;
- a client whose EmailBison key does not resolve, when the job (or the chain it starts)
  reaches EmailBison: PT4, PT5, and PT1-PT3 with ``chain``.

Warned about (the job is still enqueued):

- a renewal month (or PT5 upload date) outside one month back to six months ahead;
- PT1 without Cole exports in the client-month's inbox folder yet.

The workflows declare these as their ``check=`` (see :class:`orchestrator.Workflow`).
"""

from __future__ import annotations

import difflib
import shlex
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from psycopg import AsyncConnection
from psycopg.rows import DictRow

from orchestrator import CheckContext, InvalidPayload
from workflows.clients import Client, get_client
from workflows.cole import discover_exports, export_dir
from workflows.emailbison.workspace import (
    ClientConfigError,
    UnsafeWorkspaceConfig,
    emailbison_key,
)
from workflows.inputs import ClientMonth
from workflows.settings import pipeline_settings
from workflows.windows import SCHEDULE_TIMEZONE, add_months, format_month

#: Months before and after the current one a run usually covers (PT1 runs two ahead).
PLAUSIBLE_MONTHS = (-1, 6)


def today() -> date:
    return datetime.now(ZoneInfo(SCHEDULE_TIMEZONE)).date()


async def known_client(conn: AsyncConnection[DictRow], name: str) -> Client:
    """The client named exactly ``name``, or ``InvalidPayload`` naming the closest one."""
    cursor = await conn.execute("SELECT name FROM clients ORDER BY name")
    names = [str(row["name"]) for row in await cursor.fetchall()]
    wanted = name.strip()
    if wanted in names:
        return await get_client(conn, wanted)
    message = f"no client named {name!r}"
    suggestion = closest_name(wanted, names)
    if suggestion is not None:
        message += f"; did you mean {suggestion!r}?"
    elif names:
        message += " (see 'orchestrator clients list')"
    else:
        message += " (no clients yet: orchestrator clients add --name NAME --tier 100 ...)"
    raise InvalidPayload(message)


def closest_name(wanted: str, names: list[str]) -> str | None:
    """The known name ``wanted`` most likely meant: the same but for case, else the closest.

    >>> closest_name("acme insurance", ["Acme Insurance", "Beta"])
    'Acme Insurance'
    >>> closest_name("Acme Insurence", ["Acme Insurance", "Beta"])
    'Acme Insurance'
    >>> closest_name("Nope Co", ["Acme Insurance"]) is None
    True
    """
    by_folded = {n.casefold(): n for n in names}
    if wanted.casefold() in by_folded:
        return by_folded[wanted.casefold()]
    close = difflib.get_close_matches(wanted.casefold(), list(by_folded), n=1, cutoff=0.75)
    return by_folded[close[0]] if close else None


def require_active(client: Client) -> None:
    if not client.active:
        raise InvalidPayload(
            f"client {client.name!r} is inactive (to run it again: orchestrator clients "
            f"update --name {shlex.quote(client.name)} --active)"
        )


def require_key(client: Client, ctx: CheckContext) -> None:
    try:
        emailbison_key(client, ctx.settings)
    except (ClientConfigError, UnsafeWorkspaceConfig) as exc:
        raise InvalidPayload(str(exc)) from None


def month_warning(year: int, month: int, *, what: str, on: date | None = None) -> str | None:
    """A warning when ``year-month`` is outside the usual range around ``on`` (today).

    >>> month_warning(2027, 1, what="month 2027-01", on=date(2026, 11, 29)) is None
    True
    >>> print(month_warning(1999, 1, what="month 1999-01", on=date(2026, 11, 29)))
    month 1999-01 is 334 months ago; runs usually cover 2026-10 to 2027-05 (queued anyway)
    """
    now = on or today()
    delta = (year * 12 + month) - (now.year * 12 + now.month)
    low, high = PLAUSIBLE_MONTHS
    if low <= delta <= high:
        return None
    span = "ahead" if delta > 0 else "ago"
    first = format_month(*add_months(now.year, now.month, low))
    last = format_month(*add_months(now.year, now.month, high))
    return (
        f"{what} is {abs(delta)} month{'s' if abs(delta) != 1 else ''} {span}; runs usually "
        f"cover {first} to {last} (queued anyway)"
    )


async def check_client_month(ctx: CheckContext, data: ClientMonth) -> list[str]:
    """PT2, PT3 (and the base of PT1, PT4): the client, its key when needed, the month."""
    client = await known_client(ctx.connection, data.client)
    require_active(client)
    if data.chain or ctx.workflow == "pt4":
        require_key(client, ctx)
    warning = month_warning(*data.year_month, what=f"month {data.month}")
    return [warning] if warning else []


async def check_cole_pull(ctx: CheckContext, data: ClientMonth) -> list[str]:
    """PT1: as :func:`check_client_month`, and Cole exports waiting in the inbox."""
    warnings = await check_client_month(ctx, data)
    if getattr(data, "files", None):
        return warnings
    inbox = Path(pipeline_settings(ctx.settings).cole_inbox)
    if not discover_exports(inbox, data.client, data.month):
        warnings.append(
            f"no Cole exports (*.csv) in {export_dir(inbox, data.client, data.month).resolve()} "
            "yet: "
            "PT1 fails unless they are there when it runs"
        )
    return warnings


async def check_upload_week(ctx: CheckContext, client_name: str, upload_date: date) -> list[str]:
    """PT5: the client, its key, and an upload date near today."""
    client = await known_client(ctx.connection, client_name)
    require_active(client)
    require_key(client, ctx)
    warning = month_warning(
        upload_date.year, upload_date.month, what=f"upload date {upload_date.isoformat()}"
    )
    return [warning] if warning else []
