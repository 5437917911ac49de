"""An unmigrated or out-of-date database stops every command (and the worker) with one line;
the embedded server's database is migrated on first use instead, and psql works on it."""

from __future__ import annotations

import json
import time

import psycopg
import pytest

from tests.fix_cli import (
    cli,
    cli_many,
    embedded_data_dir,
    embedded_env,
    one_line,
    rows,
    run_cli,
)
from tests.fix_db import subprocess_env

NOT_MIGRATED = "orchestrator: database not migrated: run 'orchestrator migrate'"
COMMANDS = [
    ["status"],
    ["runs"],
    ["job", "1"],
    ["retry", "1"],
    ["cancel", "1"],
    ["recover"],
    ["clients", "list"],
    ["clients", "add", "--name", "Acme", "--tier", "100"],
    ["run-month", "Acme", "2027-01"],
    ["run-week", "Acme", "2026-12-07"],
    ["enqueue", "noop"],
]


def _empty(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")


@pytest.mark.slow
def test_every_command_on_an_unmigrated_database_says_to_migrate(database_url: str) -> None:
    _empty(database_url)
    for args, result in zip(COMMANDS, cli_many(database_url, *COMMANDS), strict=True):
        assert one_line(result) == NOT_MIGRATED, args
        assert result.stdout == "", args


def test_the_worker_exits_2_instead_of_restarting(database_url: str) -> None:
    _empty(database_url)
    started = time.monotonic()
    result = cli(database_url, "worker", timeout=30)
    assert one_line(result) == NOT_MIGRATED
    assert time.monotonic() - started < 20


def test_an_out_of_date_schema_names_both_revisions(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0010_fencing_pipeline'")
    status, worker = cli_many(database_url, ["status"], ["worker"])
    for result in (status, worker):
        line = one_line(result)
        assert line.startswith(NOT_MIGRATED + " (the schema is at 0010_fencing_pipeline; ")
        assert "this version needs 0011_rate_limits" in line

    migrated = cli(database_url, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert cli(database_url, "status").returncode == 0


def test_a_newer_schema_is_not_refused(database_url: str) -> None:
    """A revision this version does not know: a newer release migrated the database."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099_from_the_future'")
    result = cli(database_url, "status")
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_the_embedded_database_is_migrated_on_first_use_and_psql_opens_it() -> None:
    with embedded_data_dir() as data_dir:
        env = embedded_env(data_dir)
        first = run_cli("clients", "list", env=env, timeout=120)
        assert first.returncode == 0, first.stderr
        assert first.stdout.startswith("no clients yet")
        assert first.stderr.splitlines() == [
            f"orchestrator: embedded PostgreSQL created in {data_dir} "
            "(set ORCHESTRATOR_DATABASE_URL to use another server)",
            "orchestrator: migrating the embedded database to the latest schema (first use)",
            "orchestrator: database migrated to 0011_rate_limits",
        ]

        again = run_cli("status", env=env)
        assert again.returncode == 0 and again.stderr == "", again.stderr

        # The server stops when each command exits; psql keeps it up while it runs.
        psql = run_cli("psql", "-Atc", "SELECT count(*) FROM agent_runs", env=env)
        assert (psql.returncode, psql.stdout, psql.stderr) == (0, "0\n", "")
        passed = run_cli("psql", "--", "-Atc", "SELECT 40 + 2", env=env)
        assert (passed.returncode, passed.stdout) == (0, "42\n")

        url = run_cli("db-url", env=env)
        assert url.returncode == 0
        assert "'orchestrator psql' keeps it up" in one_line(url, 0)


@pytest.mark.slow
def test_json_mode_writes_only_json_even_the_embedded_server_notices() -> None:
    with embedded_data_dir() as data_dir:
        env = embedded_env(data_dir, ORCHESTRATOR_LOG_FORMAT="json")
        result = run_cli("status", env=env, timeout=120)
        assert result.returncode == 0, result.stderr
        records = [json.loads(line) for line in result.stderr.splitlines()]
        assert [r["event"] for r in records] == [
            "embedded.created",
            "schema.migrating",
            "schema.migrated",
        ]
        failed = run_cli("job", "999", env=env)
        assert failed.returncode == 1
        [record] = [json.loads(line) for line in failed.stderr.splitlines()]
        assert (record["level"], record["message"]) == ("error", "no workflow job with id 999")


def test_psql_on_a_url_database(database_url: str) -> None:
    result = run_cli(
        "psql", "-Atc", "SELECT count(*) FROM clients", env=subprocess_env(database_url)
    )
    assert (result.returncode, result.stdout.strip()) == (0, "0")
    assert rows(database_url, "SELECT count(*) AS n FROM clients") == [{"n": 0}]
