"""The ``orchestrator`` command line, run for real in subprocesses against a test database.

Independent commands run side by side (``cli_many``): each call pays the interpreter start-up.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.fix_cli import (
    cli,
    cli_many,
    job_status,
    rows,
    run_rows,
    wait_until,
    worker,
    workflow_job_count,
)
from tests.fix_db import subprocess_env

STATES = ["waiting", "delayed", "active", "completed", "failed", "cancelled"]


def _job_id(result: subprocess.CompletedProcess[str]) -> int:
    """The job id ``enqueue`` prints as its last line."""
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip().splitlines()[-1])


def _one_error_line(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert result.returncode == code, (result.args, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, (result.args, result.stderr)
    assert lines[0].startswith("orchestrator: ")
    return lines[0]


def test_enqueue_prints_the_job_id_last(database_url: str, tmp_path: Path) -> None:
    payload_file = tmp_path / "payload.json"
    payload_file.write_text('{"key": "from-file"}')
    inline, from_file = cli_many(
        database_url,
        ["enqueue", "write", "--payload", '{"key": "a"}', "--priority", "7"],
        ["enqueue", "write_row", "--payload", f"@{payload_file}"],
    )
    jobs = rows(
        database_url,
        "SELECT id, task_name, priority, args, status::text AS status FROM procrastinate_jobs"
        " ORDER BY id",
    )
    assert {j["id"] for j in jobs} == {_job_id(inline), _job_id(from_file)}
    by_id = {j.pop("id"): j for j in jobs}
    assert by_id[_job_id(inline)] == {
        "task_name": "write_row",
        "priority": 7,
        "args": {"payload": {"key": "a"}},
        "status": "todo",
    }
    assert by_id[_job_id(from_file)]["args"] == {"payload": {"key": "from-file"}}


def test_enqueue_with_delay_and_dedupe_key(database_url: str) -> None:
    args = ["enqueue", "write_row", "--payload", '{"key": "d"}', "--delay", "30s"]
    job_id = _job_id(cli(database_url, *args, "--dedupe-key", "client-1"))
    assert _job_id(cli(database_url, *args, "--dedupe-key", "client-1")) == job_id
    [job] = rows(
        database_url,
        "SELECT state, dedupe_key, scheduled_at - now() AS wait FROM orchestrator_jobs"
        " WHERE job_id = %s",
        [job_id],
    )
    assert (job["state"], job["dedupe_key"]) == ("delayed", "client-1")
    assert 20 < job["wait"].total_seconds() <= 30
    assert workflow_job_count(database_url) == 1


@pytest.mark.slow
def test_bad_input_exits_2_with_one_line_and_inserts_nothing(database_url: str) -> None:
    ok = ["--payload", '{"key": "a"}']
    cases: list[tuple[list[str], str]] = [
        (["enqueue", "pt9_unknown", "--payload", "{}"], "unknown workflow 'pt9_unknown'"),
        (["enqueue", "write_row", "--payload", "{not json"], "--payload is not valid JSON"),
        (["enqueue", "write_row", "--payload", '{"key": ""}'], "key: String should have"),
        (["enqueue", "write_row", "--payload", "[1]"], "must be a JSON object"),
        (["enqueue", "write_row", *ok, "--delay", "soon"], "invalid duration 'soon'"),
        (["enqueue", "write_row", *ok, "--attempts", "0"], "attempts must be between"),
        (["enqueue", "write_row", *ok, "--schedule-at", "tomorrow"], "is not an ISO date-time"),
        (["enqueue", "write_row", "--payload", "@/nonexistent.json"], "cannot read payload"),
    ]
    results = cli_many(database_url, *(args for args, _ in cases))
    for (_args, message), result in zip(cases, results, strict=True):
        line = _one_error_line(result)
        assert message in line, line
        assert result.stdout == ""
    assert "write_row" in results[0].stderr  # the known workflows are listed
    assert workflow_job_count(database_url) == 0


def test_unreachable_database_exits_2_without_the_password(database_url: str) -> None:
    env = subprocess_env(
        "postgresql://app:s3cret-pw-42@127.0.0.1:1/jobs", ORCHESTRATOR_CONNECT_TIMEOUT="2"
    )
    calls = [["status"], ["enqueue", "write_row", "--payload", '{"key": "a"}'], ["migrate"]]
    for result in cli_many(database_url, *calls, envs=[env] * len(calls)):
        line = _one_error_line(result)
        assert "ORCHESTRATOR_DATABASE_URL=postgresql://app:***@127.0.0.1:1/jobs" in line
        assert "s3cret-pw-42" not in result.stderr + result.stdout


def test_invalid_setting_exits_2_naming_it(database_url: str) -> None:
    cases = [
        ("ORCHESTRATOR_CONCURRENCY", "abc"),
        ("ORCHESTRATOR_LOG_LEVEL", "LOUD"),
        ("ORCHESTRATOR_STALLED_AFTER", "-1"),
    ]
    results = cli_many(
        database_url,
        *([["status"]] * len(cases)),
        envs=[subprocess_env(database_url, **{name: value}) for name, value in cases],
    )
    for (name, _value), result in zip(cases, results, strict=True):
        assert _one_error_line(result).startswith(f"orchestrator: invalid setting {name}: ")


def test_status_table_and_json(database_url: str) -> None:
    _job_id(cli(database_url, "enqueue", "noop", "--delay", "1h"))
    table, as_json = cli_many(database_url, ["status"], ["status", "--json"])
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["workflow", *STATES]
    assert lines[-1].split() == ["total", "0", "1", "0", "0", "0", "0"]
    assert ["noop", "0", "1", "0", "0", "0", "0"] in [line.split() for line in lines]

    assert as_json.returncode == 0, as_json.stderr
    status = json.loads(as_json.stdout)
    assert status["total"] == dict.fromkeys(STATES, 0) | {"delayed": 1}
    assert status["by_workflow"]["noop"]["delayed"] == 1
    assert status["by_workflow"]["write_row"] == dict.fromkeys(STATES, 0)


@pytest.mark.slow
def test_cancel_and_retry_a_waiting_job(database_url: str) -> None:
    job_id = _job_id(cli(database_url, "enqueue", "noop", "--delay", "1h"))
    cancelled, missing = cli_many(database_url, ["cancel", str(job_id)], ["job", "999999"])
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() == f"job {job_id}: cancelled"
    assert job_status(database_url, job_id) == "cancelled"
    assert "no workflow job with id 999999" in _one_error_line(missing, 1)

    again = cli(database_url, "cancel", str(job_id))
    assert "already cancelled" in _one_error_line(again, 1)
    retried = cli(database_url, "retry", str(job_id))
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.strip() == f"job {job_id} queued again"
    assert job_status(database_url, job_id) == "todo"

    not_failed = cli(database_url, "retry", str(job_id))
    assert "only failed or cancelled" in _one_error_line(not_failed, 1)


@pytest.mark.slow
def test_runs_job_and_retry_of_a_failed_job(database_url: str, tmp_path: Path) -> None:
    """A job fails its single attempt, is inspected, retried with the CLI, and succeeds."""
    payload = '{"key": "r", "fail_times": 1}'
    job_id = _job_id(
        cli(database_url, "enqueue", "flaky_fast", "--payload", payload, "--attempts", "1")
    )
    with worker(database_url, tmp_path):
        wait_until(lambda: job_status(database_url, job_id) == "failed", timeout=30)
        failed_runs, detail = cli_many(
            database_url,
            ["runs", "--json", "--status", "failed"],
            ["job", str(job_id), "--json"],
        )
        runs = json.loads(failed_runs.stdout)
        assert [(r["job_id"], r["status"], r["error_type"]) for r in runs] == [
            (job_id, "failed", "RetryableError")
        ]
        assert runs[0]["error_message"] == "transient failure on attempt 1"
        job = json.loads(detail.stdout)
        assert job["job"]["state"] == "failed"
        assert job["job"]["payload"] == {"key": "r", "fail_times": 1}
        assert [r["status"] for r in job["runs"]] == ["failed"]

        retried = cli(database_url, "retry", str(job_id))
        assert retried.returncode == 0, retried.stderr
        wait_until(lambda: job_status(database_url, job_id) == "succeeded", timeout=30)

    assert [r["status"] for r in run_rows(database_url, job_id)] == ["failed", "succeeded"]
    table, text, limited = cli_many(
        database_url,
        ["runs", "--workflow", "flaky_fast"],
        ["job", str(job_id)],
        ["runs", "--json", "--limit", "1"],
    )
    assert table.stdout.splitlines()[0].split()[:5] == [
        "run",
        "job",
        "workflow",
        "attempt",
        "status",
    ]
    # A run's error follows its row on indented lines of its own (errors wrap, never cut).
    rows = [line for line in table.stdout.splitlines()[2:] if not line.startswith(" ")]
    assert [line.split()[4] for line in rows] == ["succeeded", "failed"]
    assert text.stdout.splitlines()[0] == f"job {job_id} flaky_fast state=completed attempts=2"
    assert [r["status"] for r in json.loads(limited.stdout)] == ["succeeded"]


def test_workflows_recover_and_db_url(database_url: str) -> None:
    secret_url = "postgresql://app:s3cret-pw-42@db.example:5432/jobs"
    listed, recovered, shown = cli_many(
        database_url,
        ["workflows"],
        ["recover"],
        ["db-url"],
        envs=[None, None, subprocess_env(secret_url)],
    )
    assert listed.returncode == 0, listed.stderr
    names = {line.split()[0] for line in listed.stdout.splitlines()[2:]}
    assert {"write_row", "flaky_fast", "noop"} <= names

    assert recovered.returncode == 0, recovered.stderr
    assert json.loads(recovered.stdout) == {
        "requeued": [],
        "finished": [],
        "failed": [],
        "reconciled": [],
        "skipped": False,
    }

    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == "postgresql://app:***@db.example:5432/jobs"


def test_job_lists_its_external_calls_in_doubt(database_url: str) -> None:
    job_id = _job_id(cli(database_url, "enqueue", "noop", "--delay", "1h"))
    [run] = rows(
        database_url,
        "INSERT INTO agent_runs (job_id, workflow, attempt, status, finished_at, error)"
        " VALUES (%s, 'noop', 1, 'abandoned', now(), '{\"type\": \"WorkerLost\"}') RETURNING id",
        [job_id],
    )
    for key, state in (("chunk 1", "done"), ("chunk 2", "intent")):
        rows(
            database_url,
            "INSERT INTO external_calls (job_id, run_id, workflow, kind, key, state, finished_at)"
            " VALUES (%s, %s, 'noop', 'emailbison.upsert_leads', %s, %s,"
            "         CASE WHEN %s = 'intent' THEN NULL ELSE now() END) RETURNING id",
            [job_id, run["id"], key, state, state],
        )
    text, as_json = cli_many(database_url, ["job", str(job_id)], ["job", str(job_id), "--json"])
    assert text.returncode == 0, text.stderr
    assert "external calls: 1 done, 0 failed, 1 in doubt" in text.stdout
    assert "in doubt: call 2 emailbison.upsert_leads 'chunk 2' (attempt 1," in text.stdout
    calls = json.loads(as_json.stdout)["external_calls"]
    assert [(c["key"], c["state"], c["in_doubt"]) for c in calls] == [
        ("chunk 1", "done", False),
        ("chunk 2", "intent", True),
    ]
