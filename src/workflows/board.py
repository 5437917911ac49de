"""The pipeline board: clients by renewal months, each cell PT1 … PT5 with what matters.

A console page the domain gives the engine's dashboard (``DASHBOARD_PAGES`` in
:mod:`workflows.catalog`): for every client and renewal month, each step's state (from its
latest run or its waiting job, linking to the job) and its figures from the pipeline tables:

- PT1: files and rows pulled, people kept; PT2: cleaned leads, Texas HNW;
- PT3: cleaned vs target and the gap; PT4: windows uploaded x/4, leads uploaded (with a
  progress bar while it runs); PT5: windows added to the evergreen campaign, its last name.

``/board/clients/{id}`` shows one client's whole history, its recent jobs and evergreen
renames, with the run-month / run-week actions (the CLI's ``run-month`` / ``run-week``:
same payloads, same dedupe keys).
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, LiteralString

from psycopg import AsyncConnection
from psycopg.rows import DictRow
from pydantic import ValidationError

from orchestrator import (
    ActionRefused,
    ActionResult,
    DashboardAction,
    DashboardPage,
    PageNotFound,
    describe_validation_error,
    load_queries,
)
from workflows.inputs import ClientMonth
from workflows.schedules import month_chain_payload, month_dedupe_key, week_dedupe_key
from workflows.windows import format_month, parse_month, window_for_upload_date

Enqueue = Callable[..., Awaitable[int]]

TEMPLATES = Path(__file__).parent / "templates"
QUERIES: dict[str, LiteralString] = load_queries(
    resources.files("workflows").joinpath("sql/board.sql").read_text("utf-8")
)
STEPS = ("pt1", "pt2", "pt3", "pt4", "pt5")
#: The board reads the newest this-many attempts of each workflow for step states (older
#: months keep their figures from the pipeline tables).
RUNS_PER_WORKFLOW = 2_000
DEFAULT_MONTHS = 4
#: A client's page lists its jobs among the newest this-many jobs (the Jobs page, filtered
#: by client, pages further back).
RECENT_JOBS_WINDOW = 10_000
#: The figures of a cell (the columns of ``month_facts``); all ``None`` before any step ran.
FACT_KEYS = (
    "files", "rows_pulled", "people", "bad_rows", "raw_rows", "cleaned", "texas_hnw",
    "head_of_household", "target", "cleaned_count", "gap", "gap_status", "upsell", "windows",
    "windows_done", "leads", "uploaded", "rejected", "windows_attached", "last_name",
    "last_upload",
)  # fmt: skip

Conn = AsyncConnection[DictRow]


@dataclass
class Step:
    """One workflow's state for a client-month: from its live job, else its latest run."""

    workflow: str
    state: str = "none"
    job_id: int | None = None
    progress: Any = None
    error_type: str | None = None
    run_id: int = 0


@dataclass
class Cell:
    month: str
    facts: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, Step] = field(default_factory=dict)


RUN_STATES = {
    "succeeded": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
    "running": "active",
    "retrying": "delayed",
    "abandoned": "delayed",
}
JOB_STATES = {"todo": "waiting", "doing": "active"}


async def _rows(conn: Conn, name: str, params: Mapping[str, Any]) -> list[DictRow]:
    cursor = await conn.execute(QUERIES[name], params)
    return list(await cursor.fetchall())


def _month_of(row: Mapping[str, Any]) -> str | None:
    """The renewal month a run or job is about (PT5: the month of its upload's window)."""
    if row.get("month"):
        try:
            return format_month(*parse_month(str(row["month"])))
        except ValueError:
            return None
    if row.get("upload_date"):
        try:
            window = window_for_upload_date(datetime.date.fromisoformat(str(row["upload_date"])))
        except ValueError:
            return None
        return format_month(window.year, window.month)
    return None


async def _cells(
    conn: Conn, clients: list[DictRow], client: str | None
) -> dict[int, dict[str, Cell]]:
    """Cells by client id and month ("YYYY-MM")."""
    by_name = {c["name"]: c["id"] for c in clients}
    cells: dict[int, dict[str, Cell]] = {c["id"]: {} for c in clients}

    def cell(client_id: int, month: str) -> Cell:
        found = cells[client_id].get(month)
        if found is None:
            found = cells[client_id][month] = Cell(
                month, facts=dict.fromkeys(FACT_KEYS), steps={s: Step(s) for s in STEPS}
            )
        return found

    facts = await _rows(conn, "month_facts", {"clients": list(by_name.values())})
    for row in facts:
        cell(row["client_id"], row["month"].strftime("%Y-%m")).facts.update(row)
    params = {"per_workflow": RUNS_PER_WORKFLOW, "client": client}
    for row in await _rows(conn, "recent_runs", params):
        month = _month_of(row)
        client_id = by_name.get(row["client"])
        if month is None or client_id is None:
            continue
        step = cell(client_id, month).steps[row["workflow"]]
        if row["run_id"] > step.run_id:
            step.run_id = row["run_id"]
            step.state = RUN_STATES.get(row["status"], str(row["status"]))
            step.job_id = row["job_id"]
            step.progress = row["progress"] if row["status"] == "running" else None
            step.error_type = row["error_type"] if row["status"] != "succeeded" else None
    for row in await _rows(conn, "live_jobs", params):
        month = _month_of(row)
        client_id = by_name.get(row["client"])
        if month is None or client_id is None:
            continue
        step = cell(client_id, month).steps[row["workflow"]]
        step.job_id = row["job_id"]
        if row["status"] == "doing":
            step.state = "active"
        elif row["scheduled_at"] is not None and row["scheduled_at"] > datetime.datetime.now(
            datetime.UTC
        ):
            step.state = "delayed"
        else:
            step.state = "waiting"
    return cells


async def board(conn: Conn, params: Mapping[str, str]) -> dict[str, Any]:
    """The board page: the latest ``months`` renewal months with any activity."""
    try:
        count = max(1, min(24, int(params.get("months", DEFAULT_MONTHS))))
    except ValueError:
        count = DEFAULT_MONTHS
    clients = await _rows(conn, "clients", {"client_id": None})
    cells = await _cells(conn, clients, None)
    months = sorted({m for by_month in cells.values() for m in by_month})[-count:]
    return {"clients": clients, "months": months, "cells": cells, "months_shown": count}


async def client_page(conn: Conn, params: Mapping[str, str]) -> dict[str, Any]:
    """One client's history: every month's cell, its recent jobs, its evergreen renames."""
    client_id = int(params["client_id"])
    found = await _rows(conn, "clients", {"client_id": client_id})
    if not found:
        raise PageNotFound(f"No client with id {client_id}.")
    client = found[0]
    cells = await _cells(conn, found, client["name"])
    months = sorted(cells[client_id], reverse=True)
    return {
        "page_title": f"Client {client['name']}",
        "client": client,
        "months": months,
        "cells": cells[client_id],
        "jobs": await _rows(
            conn, "client_jobs", {"client": client["name"], "window": RECENT_JOBS_WINDOW}
        ),
        "jobs_window": RECENT_JOBS_WINDOW,
        "evergreen": await _rows(conn, "evergreen_history", {"client_id": client_id}),
    }


# -- actions: the CLI's run-month and run-week ------------------------------------------------


async def run_month(enqueue: Enqueue, params: Mapping[str, str]) -> ActionResult:
    """PT1 → PT2 → PT3 → PT4 for a client-month (as ``orchestrator run-month``)."""
    try:
        data = ClientMonth.model_validate(
            {"client": params.get("client", ""), "month": params.get("month", "")}
        )
    except ValidationError as exc:
        raise ActionRefused(describe_validation_error(exc)) from None
    job_id = await enqueue(
        "pt1",
        month_chain_payload(data.client, data.month),
        dedupe_key=month_dedupe_key(data.client, data.month),
    )
    return ActionResult(f"PT1 → PT2 → PT3 → PT4 started for {data.client} {data.month}", (job_id,))


async def run_week(enqueue: Enqueue, params: Mapping[str, str]) -> ActionResult:
    """PT5 for a client's upload Monday (as ``orchestrator run-week``)."""
    client = params.get("client", "").strip()
    try:
        upload_date = datetime.date.fromisoformat(params.get("upload_date", "").strip())
    except ValueError:
        raise ActionRefused("upload date must be YYYY-MM-DD") from None
    job_id = await enqueue(
        "pt5",
        {"client": client, "upload_date": upload_date.isoformat()},
        dedupe_key=week_dedupe_key(client, upload_date),
    )
    return ActionResult(f"PT5 started for {client} upload date {upload_date}", (job_id,))


RUN_MONTH = DashboardAction("run-month", "Run month (PT1 → PT4)", run_month, ("client", "month"))
RUN_WEEK = DashboardAction("run-week", "Run week (PT5)", run_week, ("client", "upload_date"))

PAGES = [
    DashboardPage("/board", "Pipeline board", board, TEMPLATES, template="board.html"),
    DashboardPage(
        "/board/clients/{client_id:int}",
        "Client",
        client_page,
        TEMPLATES,
        template="client.html",
        nav=False,
        actions=(RUN_MONTH, RUN_WEEK),
    ),
]
