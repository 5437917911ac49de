"""What the CLI prints for people: tables that wrap instead of cutting, a job's story."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from orchestrator._cli_show import job_report, rate_limits_table, runs_table, wrapped_table
from orchestrator._rate_limits import RateLimitState

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


def test_rate_limits_table_shows_each_limit_and_its_block() -> None:
    now = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
    limits = [
        RateLimitState(
            key="emailbison:https://bison.example",
            rate=20.0,
            burst=1.0,
            tokens=0.0,
            next_grant_in_s=1.25,
            blocked_until=now + timedelta(seconds=30),
            grants_this_minute=400,
            grants_last_minute=1200,
            granted=9000,
            throttled=2,
            last_grant_at=now,
        ),
        RateLimitState(
            key="debounce",
            rate=10.0,
            burst=5.0,
            tokens=5.0,
            next_grant_in_s=0.0,
            blocked_until=None,
            grants_this_minute=0,
            grants_last_minute=0,
            granted=10,
            throttled=0,
            last_grant_at=now,
        ),
    ]
    lines = rate_limits_table(limits).splitlines()
    assert lines[0].split()[:4] == ["rate", "limit", "rate/s", "burst"]
    assert lines[2].split() == [
        "emailbison:https://bison.example", "20", "1", "0.0", "1.25s", "03:00:30", "400",
        "1200", "2",
    ]  # fmt: skip
    assert lines[3].split() == ["debounce", "10", "5", "5.0", "0.00s", "-", "0", "0", "0"]
    assert limits[0].as_dict()["blocked_until"] == "2026-11-30T03:00:30+00:00"
