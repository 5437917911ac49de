"""What the operator reads: the worker's banner and log lines, ``runs``, ``job``, bulk
``retry`` and ``schedules``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.fix_cli import cli, cli_many, job_status, run_cli, run_rows, wait_until, worker
from tests.fix_db import subprocess_env

LONG_CLIENT = "Lone Star & Sooner Home and Auto Insurance Agency of North Texas"


def _job(result: object) -> int:
    assert hasattr(result, "stdout")
    return int(str(result.stdout).strip().splitlines()[-1])


@pytest.mark.slow
def test_worker_banner_and_one_line_per_expected_failure(database_url: str, tmp_path: Path) -> None:
    flaky = _job(
        cli(database_url, "enqueue", "flaky", "--payload", '{"key": "f", "fail_times": 1}')
    )
    permanent = _job(
        cli(
            database_url,
            "enqueue",
            "flaky_fast",
            "--payload",
            '{"key": "p", "fail_times": 1, "permanent": true}',
        )
    )
    crash = _job(cli(database_url, "enqueue", "crash", "--payload", '{"key": "c"}'))
    with worker(database_url, tmp_path, "w1") as process:
        wait_until(lambda: job_status(database_url, permanent) == "failed", timeout=30)
        wait_until(lambda: job_status(database_url, crash) == "failed", timeout=30)
        wait_until(lambda: len(run_rows(database_url, flaky)) >= 1, timeout=30)
        wait_until(lambda: run_rows(database_url, flaky)[0]["status"] == "retrying", timeout=30)

        detail = cli(database_url, "job", str(flaky))
        assert detail.returncode == 0, detail.stderr
        text = detail.stdout
        assert text.splitlines()[0] == f"job {flaky} flaky state=delayed attempts=1"
        assert re.search(r"next:\s+attempt 2 due \S+ \S+ UTC \(in [0-5] s\)", text), text
        assert "RetryableError: transient failure on attempt 1" in text
        assert re.search(r"next attempt after 5 s, due \d\d:\d\d:\d\d", text), text
        wait_until(lambda: job_status(database_url, flaky) == "succeeded", timeout=30)
    log = process.output()

    banner = [line for line in log.splitlines() if "event=worker.started" in line]
    assert len(banner) == 4, log
    assert re.search(r"worker w1 started: concurrency 4, queues all \(pid \d+\)", banner[0])
    assert "workflows: " in banner[1] and "flaky_fast" in banner[1]
    assert "schedules: monthly_pipeline next " in banner[2]
    database = conninfo_to_dict(database_url)["dbname"]
    assert f"database:  {database} on " in banner[3] and "schema 0011_rate_limits" in banner[3]

    assert f"workflow flaky job {flaky} attempt 1 failed after running " in log
    assert re.search(
        rf"job {flaky} attempt 1 failed after running \S+ s: RetryableError: transient "
        r"failure on attempt 1; retry in 5 s",
        log,
    )
    # (the alert sweep's "ALERT: ... failed for good" note is another matter, not a failure)
    failures = [
        line for line in log.splitlines() if f"job {permanent} " in line and "ALERT:" not in line
    ]
    assert len(failures) == 1, failures
    assert "; no retry" in failures[0]
    assert "ERROR" in failures[0]
    # A traceback only for the unexpected exception, once per attempt (2 attempts), and none
    # of procrastinate's own duplicate "ended with status" records.
    assert log.count("Traceback (most recent call last)") == 2, log
    # line + traceback, twice (the alert sweep may also report the job's failure: not counted)
    without_alerts = "\n".join(line for line in log.splitlines() if "ALERT:" not in line)
    assert without_alerts.count("RuntimeError: unexpected bug for c") == 4
    assert "ended with status" not in log


@pytest.mark.slow
def test_runs_fit_100_columns_and_keep_the_whole_error(database_url: str, tmp_path: Path) -> None:
    env = subprocess_env(database_url, ORCHESTRATOR_COLE_INBOX=str(tmp_path / "inbox"))
    added = run_cli("clients", "add", "--name", LONG_CLIENT, "--tier", "100", env=env)
    assert added.returncode == 0, added.stderr
    job_id = _job(
        run_cli(
            "enqueue",
            "pt1",
            "--payload",
            json.dumps({"client": LONG_CLIENT, "month": "2027-01"}),
            env=env,
        )
    )
    with worker(database_url, tmp_path, "w2", ORCHESTRATOR_COLE_INBOX=str(tmp_path / "inbox")):
        wait_until(lambda: job_status(database_url, job_id) == "failed", timeout=30)
    table, as_json, detail = cli_many(
        database_url, ["runs"], ["runs", "--json"], ["job", str(job_id), "--traceback"]
    )
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        *("run", "job", "workflow", "attempt", "status"),
        *("client", "month", "started", "duration"),
    ]
    assert max(len(line) for line in lines) <= 100, table.stdout
    [error] = [r["error_message"] for r in json.loads(as_json.stdout)]
    assert len(error) > 100
    # Wrapped (a path longer than a line is split), never cut: every character is there.
    assert "".join(f"PermanentError: {error}".split()) in "".join("".join(lines).split())
    assert "2027-01" in lines[2]
    [run] = json.loads(as_json.stdout)
    assert (run["client"], run["month"]) == (LONG_CLIENT, "2027-01")
    assert run["error_traceback"].startswith("Traceback (most recent call last)")

    shown = detail.stdout
    assert f"  client:     {LONG_CLIENT}" in shown
    assert "  month:      2027-01" in shown
    assert f"none: failed for good (orchestrator retry {job_id} to try again)" in shown
    assert "traceback:" in shown and "raise PermanentError(" in shown


@pytest.mark.slow
def test_bulk_retry_of_a_workflow(database_url: str, tmp_path: Path) -> None:
    payload = '{"key": "%s", "fail_times": 1, "permanent": true}'
    ids = [
        _job(cli(database_url, "enqueue", "flaky_fast", "--payload", payload % key))
        for key in ("a", "b")
    ]
    with worker(database_url, tmp_path, "w3"):
        for job_id in ids:
            wait_until(
                lambda job_id=job_id: job_status(database_url, job_id) == "failed", timeout=30
            )
        none_yet, retried = cli_many(
            database_url,
            ["retry", "--workflow", "flaky_fast", "--status", "cancelled"],
            ["retry", "--workflow", "flaky_fast", "--since", "10m"],
        )
        assert none_yet.stdout.strip() == "no cancelled flaky_fast jobs to retry"
        assert retried.returncode == 0, retried.stderr
        assert retried.stdout.strip() == (f"2 flaky_fast job(s) queued again: {ids[0]}, {ids[1]}")
        for job_id in ids:
            wait_until(
                lambda job_id=job_id: job_status(database_url, job_id) == "succeeded", timeout=30
            )
    old = cli(database_url, "retry", "--workflow", "flaky_fast", "--since", "2000-01-01")
    assert old.stdout.strip() == "no failed flaky_fast jobs to retry"


def test_json_worker_writes_only_json(database_url: str, tmp_path: Path) -> None:
    job_id = _job(
        cli(database_url, "enqueue", "flaky_fast", "--payload", '{"key": "j", "fail_times": 1}')
    )
    with worker(database_url, tmp_path, "w4", ORCHESTRATOR_LOG_FORMAT="json") as process:
        wait_until(lambda: job_status(database_url, job_id) == "succeeded", timeout=30)
    records = [json.loads(line) for line in process.output().splitlines() if line.strip()]
    events = [r.get("event") for r in records]
    assert events.count("worker.started") == 4
    assert "workflow.retrying" in events
    [retry] = [r for r in records if r.get("event") == "workflow.retrying"]
    assert retry["retry_in_s"] == 0.2 and retry["job_id"] == job_id


def test_schedules_show_the_next_runs_in_chicago_and_utc(database_url: str) -> None:
    text, as_json = cli_many(database_url, ["schedules"], ["schedules", "--json", "--count", "2"])
    assert text.returncode == 0, text.stderr
    assert "monthly_pipeline: 15th 09:00 America/Chicago" in text.stdout
    assert re.search(
        r"next runs \w{3} \d{4}-\d\d-15 09:00 C[SD]T \(America/Chicago\) = 1[45]:00 UTC",
        text.stdout,
    )
    schedules = {s["id"]: s for s in json.loads(as_json.stdout)}
    weekly = schedules["weekly_evergreen"]["next_runs"]
    assert len(weekly) == 2
    assert all("T09:00:00-0" in run["local"] for run in weekly)
