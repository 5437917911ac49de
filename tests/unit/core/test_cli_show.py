"""What the CLI prints for people: tables that wrap instead of cutting, a job's story."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from orchestrator._cli_show import job_report, runs_table, wrapped_table

NOW = datetime(2026, 11, 29, 10, 0, 0, tzinfo=UTC)


def _run(run_id: int, attempt: int, status: str, **extra: Any) -> dict[str, Any]:
    started = NOW - timedelta(seconds=20 - run_id)
    return {
        "run_id": run_id,
        "job_id": 7,
        "workflow": "pt4",
        "attempt": attempt,
        "status": status,
        "client": "Lone Star & Sooner Home and Auto Insurance Agency",
        "month": "2027-01",
        "started_at": started,
        "finished_at": started + timedelta(seconds=0.31),
        "duration_s": Decimal("0.310"),
        "error_type": None,
        "error_message": None,
        "retry_in_s": None,
        "error_traceback": None,
        **extra,
    }


def test_tables_wrap_to_the_width_and_keep_every_word() -> None:
    error = "HTTP 503 from https://mail.example.com/api/leads/multiple " * 4
    runs = [_run(1, 1, "retrying", error_type="RetryableError", error_message=error)]
    text = runs_table(runs, width=100)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "".join(error.split()) in "".join(text.split())
    assert "Lone Star" in text and "Agency" in text


def test_narrow_columns_wrap_their_cells() -> None:
    text = wrapped_table(
        ["id", "name"], [["1", "a very long name that must wrap"]], width=20, wrap=(1,)
    )
    assert text.splitlines() == [
        "id  name",
        "--  ----------------",
        "1   a very long name",
        "    that must wrap",
    ]


def test_a_job_tells_its_attempts_and_what_comes_next() -> None:
    job = {
        "job_id": 7,
        "workflow": "pt4",
        "state": "delayed",
        "attempts": 1,
        "queue": "default",
        "priority": 0,
        "dedupe_key": None,
        "scheduled_at": NOW + timedelta(seconds=4),
        "payload": {"client": "Acme", "month": "2027-01"},
    }
    first = _run(
        1,
        1,
        "retrying",
        error_type="RetryableError",
        error_message="HTTP 503",
        retry_in_s=5.0,
        error_traceback="Traceback (most recent call last):\n  boom\nRetryableError: HTTP 503",
    )
    text = job_report(job, [first], traceback=True, now=NOW)
    lines = text.splitlines()
    assert lines[0] == "job 7 pt4 state=delayed attempts=1"
    assert "  client:     Acme" in lines
    assert "  month:      2027-01" in lines
    assert "  next:       attempt 2 due 2026-11-29 10:00:04 UTC (in 4 s)" in lines
    finished = first["finished_at"] + timedelta(seconds=5)
    assert f"       next attempt after 5 s, due {finished:%H:%M:%S}" in lines
    assert "       RetryableError: HTTP 503" in lines
    assert "         RetryableError: HTTP 503" in lines  # the traceback's last line
