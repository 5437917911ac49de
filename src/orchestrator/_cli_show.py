"""What ``status``, ``runs``, ``job``, ``retry`` and ``schedules`` print: text for people.

Tables fit the width they are given (100 columns unless the terminal is narrower) by wrapping
long cells — a client name, an error — never by cutting them: the full error is always there.
Times are UTC unless said otherwise.

The engine knows no workflow: a job's "client" and "month" are the payload keys ``client``
and ``month`` (``upload_date`` when there is no month), the keys workflow inputs commonly
use; the ``orchestrator_runs`` view exposes the same keys as columns (migration 0006).
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from orchestrator._job_control import BulkRetry
from orchestrator._progress import describe_progress
from orchestrator._rate_limits import RateLimitState
from orchestrator._schedules import Schedule, next_runs
from orchestrator._settings import Settings
from orchestrator._status import STATES, QueueStatus

WIDTH = 100
GAP = "  "
ERROR_INDENT = 6


def output_width() -> int:
    """100 columns, or the terminal's width when it is narrower."""
    if sys.stdout.isatty():
        return min(WIDTH, shutil.get_terminal_size((WIDTH, 24)).columns)
    return WIDTH


def plain_table(rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, a dashed line under the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [GAP.join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, GAP.join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def wrapped_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    width: int,
    wrap: Sequence[int] = (),
    notes: Sequence[str] | None = None,
) -> str:
    """A table no wider than ``width``: columns in ``wrap`` give up width (their cells wrap
    onto more lines), and each row's note (an error) follows it on lines of its own,
    indented, wrapped to ``width``."""
    widths = [max([len(header[i]), *(len(row[i]) for row in rows)]) for i in range(len(header))]
    total = sum(widths) + len(GAP) * (len(widths) - 1)
    for index in sorted(wrap, key=lambda i: -widths[i]):
        if total <= width:
            break
        floor = max(len(header[index]), 8)
        cut = min(total - width, widths[index] - floor)
        if cut > 0:
            widths[index] -= cut
            total -= cut
    lines = [_line(header, widths), GAP.join("-" * w for w in widths)]
    for position, row in enumerate(rows):
        cells = [
            textwrap.wrap(cell, w, break_on_hyphens=False) or [""] if i in wrap else [cell]
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        for depth in range(max(len(c) for c in cells)):
            lines.append(_line([c[depth] if depth < len(c) else "" for c in cells], widths))
        note = notes[position] if notes is not None else ""
        if note:
            lines.extend(_indented(note, width, ERROR_INDENT))
    return "\n".join(lines)


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return GAP.join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)).rstrip()


def _indented(text: str, width: int, indent: int) -> list[str]:
    pad = " " * indent
    out: list[str] = []
    for paragraph in text.splitlines() or [""]:
        out.extend(
            textwrap.wrap(
                paragraph,
                max(20, width - indent),
                break_on_hyphens=False,
                initial_indent=pad,
                subsequent_indent=pad,
            )
            or [pad.rstrip()]
        )
    return out


def duration(seconds: float | None) -> str:
    """``0.012s``, ``12.3s``, ``4m05s``, ``2h03m``.

    >>> [duration(s) for s in (0.0123, 12.34, 245, 7380)]
    ['0.012s', '12.3s', '4m05s', '2h03m']
    """
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.3f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _wait(seconds: float) -> str:
    return f"{seconds:g} s" if seconds < 120 else duration(seconds)


def _utc(moment: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return "" if moment is None else moment.astimezone(UTC).strftime(fmt)


def payload_summary(payload: Any) -> dict[str, str]:
    """``client`` and ``month`` of a payload (``upload_date`` standing in for the month)."""
    if not isinstance(payload, Mapping):
        return {}
    summary = {}
    if payload.get("client") not in (None, ""):
        summary["client"] = str(payload["client"])
    when = payload.get("month") or payload.get("upload_date")
    if when:
        summary["month" if payload.get("month") else "upload date"] = str(when)
    return summary


def error_text(run: Mapping[str, Any]) -> str:
    if not run.get("error_type"):
        return ""
    return f"{run['error_type']}: {run.get('error_message') or ''}".rstrip(": ")


def already(state: str, job_id: int) -> str:
    """``already queued as job 12`` (or running, or delayed)."""
    verb = {"active": "running", "delayed": "queued (delayed)"}.get(state, "queued")
    return f"already {verb} as job {job_id}"


def status_table(status: QueueStatus) -> str:
    rows: list[tuple[str, ...]] = [("workflow", *STATES)]
    for name, counts in sorted(status.by_workflow.items()):
        rows.append((name, *(str(v) for v in counts.as_dict().values())))
    rows.append(("total", *(str(v) for v in status.total.as_dict().values())))
    return plain_table(rows)


def rate_limits_table(limits: Sequence[RateLimitState]) -> str:
    """The shared rate limits: configured rate and burst, tokens now, the wait for a new
    grant, a 429 block, and grants in this and the last clock minute."""
    rows: list[tuple[str, ...]] = [
        (
            "rate limit",
            "rate/s",
            "burst",
            "tokens",
            "next in",
            "blocked until",
            "grants/min",
            "last min",
            "429s",
        )
    ]
    for limit in limits:
        blocked = "-" if limit.blocked_until is None else limit.blocked_until.strftime("%H:%M:%S")
        rows.append(
            (
                limit.key,
                f"{limit.rate:g}",
                f"{limit.burst:g}",
                f"{limit.tokens:.1f}",
                f"{limit.next_grant_in_s:.2f}s",
                blocked,
                str(limit.grants_this_minute),
                str(limit.grants_last_minute),
                str(limit.throttled),
            )
        )
    return plain_table(rows)


def runs_table(runs: Sequence[Mapping[str, Any]], *, width: int = WIDTH) -> str:
    """One row per attempt (client and month included); its error in full underneath."""
    header = (
        "run",
        "job",
        "workflow",
        "attempt",
        "status",
        "client",
        "month",
        "started",
        "duration",
    )
    rows = [
        (
            str(r["run_id"]),
            str(r["job_id"]),
            str(r["workflow"]),
            str(r["attempt"]),
            str(r["status"]),
            str(r.get("client") or ""),
            str(r.get("month") or ""),
            _utc(r["started_at"], "%m-%d %H:%M:%S"),
            duration(float(r["duration_s"])) if r["duration_s"] is not None else "",
        )
        for r in runs
    ]
    if not rows:
        return "no runs yet"
    return wrapped_table(
        header,
        rows,
        width=width,
        wrap=(5, 2),
        notes=[error_text(r) or describe_progress(r.get("progress")) for r in runs],
    )


def job_report(
    job: Mapping[str, Any],
    runs: Sequence[Mapping[str, Any]],
    *,
    traceback: bool,
    now: datetime,
    width: int = WIDTH,
) -> str:
    """A job, what it is for, where it stands and what comes next; every attempt, oldest
    first, with how long it ran, its full error and the wait before the next one."""
    lines = [
        f"job {job['job_id']} {job['workflow']} state={job['state']} attempts={job['attempts']}"
    ]
    details = payload_summary(job.get("payload"))
    for label, value in details.items():
        lines.append(f"  {label + ':':<12}{value}")
    queue = f"{job['queue']}, priority {job['priority']}"
    if job.get("dedupe_key"):
        queue += f", dedupe key {job['dedupe_key']!r}"
    lines.append(f"  {'queue:':<12}{queue}")
    lines.extend(_indented(f"payload:    {json.dumps(job.get('payload'))}", width, 2))
    nxt = _next_step(job, runs, now)
    if nxt:
        lines.append(f"  {'next:':<12}{nxt}")
    if not runs:
        lines.append("attempts: none yet")
        return "\n".join(lines)
    lines.append("attempts (times UTC):")
    ordered = sorted(runs, key=lambda r: int(r["run_id"]))
    for run in ordered:
        took = duration(float(run["duration_s"])) if run["duration_s"] is not None else ""
        verb = "running for" if run["status"] == "running" else "ran"
        lines.append(
            f"  {run['attempt']:>3}  {run['status']:<10} {verb} {took:<8} "
            f"started {_utc(run['started_at'])}"
        )
        error = error_text(run)
        if error:
            lines.extend(_indented(error, width, 7))
        progress = describe_progress(run.get("progress"))
        if progress:
            lines.append(f"       progress: {progress}")
        if run["status"] == "retrying" and run.get("retry_in_s") is not None:
            wait = float(run["retry_in_s"])
            due = (run["finished_at"] or now) + timedelta(seconds=wait)
            lines.append(f"       next attempt after {_wait(wait)}, due {_utc(due, '%H:%M:%S')}")
        if traceback and run.get("error_traceback"):
            lines.append("       traceback:")
            lines.extend(
                "         " + line for line in str(run["error_traceback"]).rstrip().splitlines()
            )
    if traceback and not any(r.get("error_traceback") for r in ordered):
        lines.append("(no traceback stored: no attempt failed with an exception)")
    return "\n".join(lines)


def _next_step(job: Mapping[str, Any], runs: Sequence[Mapping[str, Any]], now: datetime) -> str:
    state = job["state"]
    attempt = int(job["attempts"]) + 1
    scheduled = job.get("scheduled_at")
    if state == "delayed" and scheduled is not None:
        seconds = max(0.0, (scheduled - now).total_seconds())
        what = "attempt" if runs else "first attempt"
        return f"{what} {attempt} due {_utc(scheduled)} UTC (in {_wait(round(seconds))})"
    if state == "waiting":
        return f"attempt {attempt} due now, waiting for a worker"
    if state == "active":
        return "running now"
    if state == "failed":
        return f"none: failed for good (orchestrator retry {job['job_id']} to try again)"
    if state == "cancelled":
        return f"none: cancelled (orchestrator retry {job['job_id']} to run it again)"
    return ""


def bulk_retry(result: BulkRetry, workflow: str, state: str) -> str:
    if not result.queued and not result.skipped:
        return f"no {state} {workflow} jobs to retry"
    lines = []
    if result.queued:
        ids = ", ".join(str(i) for i in result.queued)
        lines.append(f"{len(result.queued)} {workflow} job(s) queued again: {ids}")
    for job_id, reason in result.skipped:
        lines.append(f"job {job_id} not retried: {reason}")
    return "\n".join(lines)


def _zone(schedule: Schedule) -> ZoneInfo:
    return ZoneInfo(schedule.timezone)


def schedules_text(
    schedules: Sequence[Schedule], now: datetime, count: int, settings: Settings
) -> str:
    """Each schedule, what it starts, its cron and its next runs in its zone and in UTC."""
    if not schedules:
        return "no schedules (the installed plugins declare none)"
    lines: list[str] = []
    for schedule in schedules:
        zone = _zone(schedule)
        lines.append(f"{schedule.id}: {schedule.description}".rstrip(": "))
        lines.append(f"  cron (UTC) {schedule.cron}")
        runs = next_runs(schedule, now, count)
        for index, moment in enumerate(runs):
            local = moment.astimezone(zone)
            label = "  next runs " if index == 0 else " " * 12
            lines.append(
                f"{label}{local:%a %Y-%m-%d %H:%M %Z} ({schedule.timezone})"
                f" = {moment:%H:%M} UTC" + (f" (in {_until(moment - now)})" if index == 0 else "")
            )
        if not runs:
            lines.append("  next runs  none found")
        lines.append("")
    lines.append(
        f"every worker also sweeps for crashed jobs every {settings.recovery_interval} s and "
        "prunes finished jobs hourly (at :17)"
    )
    return "\n".join(lines)


def _until(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {rest // 60:02d}m"


def schedules_json(schedules: Sequence[Schedule], now: datetime, count: int) -> list[Any]:
    return [
        {
            "id": s.id,
            "description": s.description,
            "cron_utc": s.cron,
            "timezone": s.timezone,
            "next_runs": [
                {"utc": t.isoformat(), "local": t.astimezone(_zone(s)).isoformat()}
                for t in next_runs(s, now, count)
            ],
        }
        for s in schedules
    ]
