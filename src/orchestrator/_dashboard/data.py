"""What the engine's pages show, read with the queries of ``sql/dashboard.sql``.

Every function takes a connection already in a read-only transaction with a statement
timeout (see :func:`orchestrator._dashboard.app.read_only`) and returns plain dicts and lists
for the templates. Nothing here knows the domain: payload filters are generic JSON keys.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from croniter import croniter
from psycopg import AsyncConnection
from psycopg.rows import DictRow

from orchestrator._dashboard.queries import QUERIES
from orchestrator._schedules import Schedule
from orchestrator._status import STATES

Conn = AsyncConnection[DictRow]
#: At most this many failed attempts of each kind are looked at by the failures inbox.
FAILURE_SCAN = 2_000
#: Jobs shown per error type on the failures inbox (a "more" link pages through the rest).
FAILURES_PER_GROUP = 10
#: Filters no index answers (workflow, a finished state, payload keys, free text) read at
#: most this many of the newest jobs per page; the page links on to the next ones.
SEARCH_WINDOW = 10_000
#: States of unfinished jobs, found through procrastinate's index on them at any size.
LIVE_STATES = ("waiting", "delayed", "active")


async def _rows(conn: Conn, name: str, params: Mapping[str, Any] | None = None) -> list[DictRow]:
    cursor = await conn.execute(QUERIES[name], params)
    return list(await cursor.fetchall())


# -- overview --------------------------------------------------------------------------------


async def overview(conn: Conn, workflows: Sequence[str]) -> dict[str, Any]:
    counts = {name: dict.fromkeys(STATES, 0) for name in workflows}
    total = dict.fromkeys(STATES, 0)
    for row in await _rows(conn, "queue_counts"):
        target = total if row["workflow"] == "*" else counts.setdefault(row["workflow"], {})
        for state in STATES:
            target[state] = int(row[state])
    oldest = {row["workflow"]: row for row in await _rows(conn, "oldest_waiting")}
    throughput = {row["workflow"]: _rates(row) for row in await _rows(conn, "throughput")}
    workers: dict[int, dict[str, Any]] = {}
    for row in await _rows(conn, "workers"):
        worker = workers.setdefault(
            row["worker_id"],
            {
                "id": row["worker_id"],
                "last_heartbeat": row["last_heartbeat"],
                "heartbeat_age_s": float(row["heartbeat_age_s"]),
                "jobs": [],
                "label": None,
            },
        )
        if row["job_id"] is not None:
            worker["jobs"].append(row)
            worker["label"] = worker["label"] or row["worker_label"]
    return {
        "counts": dict(sorted(counts.items())),
        "total": total,
        "oldest": oldest,
        "throughput": throughput,
        "workers": list(workers.values()),
        "rate_limits": await _rows(conn, "rate_limits"),
    }


def _rates(row: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"avg_duration_s": row["avg_duration_s"]}
    for window in ("1h", "24h"):
        ok, bad = int(row[f"succeeded_{window}"]), int(row[f"failed_{window}"])
        out[f"succeeded_{window}"] = ok
        out[f"failed_{window}"] = bad
        out[f"failure_rate_{window}"] = None if ok + bad == 0 else bad / (ok + bad)
    return out


@dataclass(frozen=True)
class NextRun:
    schedule: str
    description: str
    at: datetime.datetime


def next_runs(
    schedules: Iterable[Schedule],
    *,
    now: datetime.datetime | None = None,
    per_schedule: int = 3,
    max_steps: int = 5_000,
) -> list[NextRun]:
    """The next firings of each schedule that its calendar check accepts, soonest first."""
    start = now or datetime.datetime.now(datetime.UTC)
    found: list[NextRun] = []
    for schedule in schedules:
        iterator = croniter(schedule.cron, start)
        taken = 0
        for _ in range(max_steps):
            at: datetime.datetime = iterator.get_next(datetime.datetime)
            if schedule.applies is None or schedule.applies(at):
                found.append(NextRun(schedule.id, schedule.description, at))
                taken += 1
                if taken >= per_schedule:
                    break
    return sorted(found, key=lambda run: run.at)


# -- jobs ------------------------------------------------------------------------------------


@dataclass
class JobFilters:
    """The jobs list's filters, read from query parameters (blank means "any")."""

    workflow: str | None = None
    state: str | None = None
    dedupe_key: str | None = None
    search: str | None = None
    payload: dict[str, str] = field(default_factory=dict)
    before: int | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, str], payload_keys: Sequence[str]) -> JobFilters:
        def text(name: str) -> str | None:
            value = params.get(name, "").strip()
            return value or None

        state = text("state")
        if state is not None and state not in STATES:
            state = None
        before = text("before")
        return cls(
            workflow=text("workflow"),
            state=state,
            dedupe_key=text("dedupe_key"),
            search=text("q"),
            payload={k: v for k in payload_keys if (v := text(k)) is not None},
            before=int(before) if before is not None and before.isdigit() else None,
        )

    def query_params(self, **changes: Any) -> dict[str, str]:
        """These filters as query parameters (for links), with ``changes`` applied."""
        params: dict[str, str] = {}
        for name in ("workflow", "state", "dedupe_key"):
            value = getattr(self, name)
            if value:
                params[name] = value
        if self.search:
            params["q"] = self.search
        params.update(self.payload)
        for key, value in changes.items():
            if value is None:
                params.pop(key, None)
            else:
                params[key] = str(value)
        return params


def _like_pattern(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass
class JobsPage:
    """One page of the jobs list.

    ``next_before``: the id to continue from (the "older" link), if there may be more.
    ``window_floor``: set when a filter without an index (see :data:`SEARCH_WINDOW`) looked
    only at the newest :data:`SEARCH_WINDOW` jobs below ``before``, down to this id, and found
    less than a page there; older jobs were not looked at (the page says so and links on).
    """

    rows: list[DictRow]
    next_before: int | None
    window_floor: int | None = None


async def list_jobs(
    conn: Conn, filters: JobFilters, limit: int, *, window: int = SEARCH_WINDOW
) -> JobsPage:
    """One page of jobs (newest first). A filter no index answers reads at most ``window``
    jobs (see :class:`JobsPage`); a live state reads only unfinished jobs, through
    procrastinate's index on them; the dedupe key reads its own index (migration 0011)."""
    floor = None
    among: list[int] | None = None
    window_params = {"before": filters.before, "window": window}
    if filters.dedupe_key:
        pass  # its own index finds the few jobs with that key
    elif filters.state in LIVE_STATES:
        among = [int(r["id"]) for r in await _rows(conn, "unfinished_job_ids", window_params)]
        floor = among[-1] if len(among) >= window else None
    elif filters.workflow or filters.state or filters.search or filters.payload:
        found = await _rows(conn, "job_window_floor", window_params)
        floor = int(found[0]["id"]) if found else None
    rows = await _rows(
        conn,
        "list_jobs",
        {
            "workflow": filters.workflow,
            "state": filters.state,
            "dedupe_key": filters.dedupe_key,
            "contains": json.dumps(filters.payload) if filters.payload else None,
            "search": _like_pattern(filters.search) if filters.search else None,
            "before": filters.before,
            "floor": floor,
            "among": among,
            "limit": limit + 1,
        },
    )
    if len(rows) > limit:
        rows = rows[:limit]
        return JobsPage(rows, int(rows[-1]["job_id"]))
    if floor is not None:
        # the window ran out before the page filled: older jobs exist, unread
        return JobsPage(rows, floor, window_floor=floor)
    return JobsPage(rows, None)


# -- one job ---------------------------------------------------------------------------------


async def job_detail(conn: Conn, job_id: int) -> dict[str, Any] | None:
    found = await _rows(conn, "job", {"job_id": job_id})
    runs = await _rows(conn, "job_runs", {"job_id": job_id})
    if not found and not runs:
        return None
    job = found[0] if found else None
    events = await _rows(conn, "job_events", {"job_id": job_id}) if job else []
    return {"job": job, "runs": runs, "events": events}


# -- failures --------------------------------------------------------------------------------


@dataclass
class FailureGroup:
    """One error type in the failures inbox: its size and the jobs shown of it."""

    error_type: str
    size: int
    failed: int
    jobs: list[DictRow] = field(default_factory=list)
    next_before: int | None = None
    """The run id to continue this group from (the "more" link), if it has more jobs."""


async def failures(
    conn: Conn,
    *,
    error_type: str | None = None,
    before: int | None = None,
    per_group: int = FAILURES_PER_GROUP,
    scan: int = FAILURE_SCAN,
) -> list[FailureGroup]:
    """Failed and retrying jobs grouped by error type, biggest group first.

    Every group says how many jobs it holds but shows only its newest ``per_group``; with
    ``error_type`` only that group, continuing below run id ``before`` (keyset pagination):
    a page shows a bounded number of jobs however many thousands failed.
    """
    groups: dict[str, FailureGroup] = {}
    rows = await _rows(
        conn,
        "failures",
        {
            "scan": scan,
            "per_group": per_group + 1,
            "error_type": error_type,
            "before": before,
        },
    )
    for row in rows:
        group = groups.get(row["error_type"])
        if group is None:
            group = groups[row["error_type"]] = FailureGroup(
                row["error_type"], int(row["group_size"]), int(row["group_failed"])
            )
        group.jobs.append(row)
    for group in groups.values():
        if len(group.jobs) > per_group:
            group.jobs = group.jobs[:per_group]
            group.next_before = int(group.jobs[-1]["run_id"])
    return list(groups.values())


async def failures_beyond_scan(conn: Conn, scan: int = FAILURE_SCAN) -> bool:
    """Whether older failing attempts exist than the inbox looks at (its sizes are then
    lower bounds: the page says so)."""
    [row] = await _rows(conn, "failures_beyond_scan", {"scan": scan})
    return bool(row["beyond"])
