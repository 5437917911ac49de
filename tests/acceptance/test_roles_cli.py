"""``orchestrator roles``: the printed SQL run by psql as documented, and ``--apply``, twice.

Role names are unique per test (roles are cluster-wide on a shared server) and dropped after.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from orchestrator._database import with_database
from tests.fix_cli import cli
from tests.fix_db import subprocess_env
from tests.security.test_least_privilege import as_role

KINDS = ("owner", "worker", "reader")


@pytest.fixture
def names(server_url: str) -> Iterator[dict[str, str]]:
    """Unique role names and an empty database (``names["database"]``), dropped at the end."""
    suffix = uuid.uuid4().hex[:10]
    found = {kind: f"orch_{kind}_{suffix}" for kind in KINDS}
    found["database"] = f"orch_cli_roles_{suffix}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(found["database"])))
    try:
        yield found
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(found["database"])
                )
            )
            for kind in KINDS:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(found[kind])))


def _flags(names: dict[str, str]) -> list[str]:
    return [f"--{key}={value}" for key, value in names.items()]


def _worker_can_log_in_and_use_temp(url: str, names: dict[str, str], password: str) -> None:
    worker_url = as_role(url, names["worker"], password)
    with psycopg.connect(worker_url) as conn:
        row = conn.execute(
            "SELECT current_user, has_database_privilege(current_database(), 'TEMPORARY'),"
            " has_schema_privilege('public', 'CREATE')"
        ).fetchone()
    assert row == (names["worker"], True, False)


@pytest.mark.skipif(shutil.which("psql") is None, reason="psql is not installed")
def test_the_printed_sql_runs_in_psql_and_again(server_url: str, names: dict[str, str]) -> None:
    url = with_database(server_url, names["database"])
    printed = cli(url, "roles", "--sql", "--login", *_flags(names))
    assert printed.returncode == 0, printed.stderr
    passwords = {kind: secrets.token_urlsafe(12) for kind in KINDS}
    variables = [f"--variable={kind}_password={passwords[kind]}" for kind in KINDS]
    for _ in range(2):  # safe to run again
        ran = subprocess.run(
            ["psql", "--no-psqlrc", "-v", "ON_ERROR_STOP=1", *variables, url],
            input=printed.stdout,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert ran.returncode == 0, ran.stderr
        assert not any(p in ran.stdout + ran.stderr for p in passwords.values())
    _worker_can_log_in_and_use_temp(url, names, passwords["worker"])

    missing = subprocess.run(
        ["psql", "--no-psqlrc", "-v", "ON_ERROR_STOP=1", *variables[:2], url],
        input=printed.stdout,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode != 0


def test_apply_creates_login_roles_from_the_environment(
    server_url: str, names: dict[str, str]
) -> None:
    url = with_database(server_url, names["database"])
    passwords = {kind: secrets.token_urlsafe(12) for kind in KINDS}
    env = subprocess_env(
        url, **{f"ORCHESTRATOR_{kind.upper()}_PASSWORD": passwords[kind] for kind in KINDS}
    )
    for _ in range(2):
        applied = cli(url, "roles", "--apply", "--login", *_flags(names), env=env)
        assert applied.returncode == 0, applied.stderr
        assert "grants applied" in applied.stdout
        assert not any(p in applied.stdout + applied.stderr for p in passwords.values())
    _worker_can_log_in_and_use_temp(url, names, passwords["worker"])

    del env["ORCHESTRATOR_READER_PASSWORD"]
    refused = cli(url, "roles", "--apply", "--login", *_flags(names), env=env)
    assert refused.returncode == 2
    assert "ORCHESTRATOR_READER_PASSWORD" in refused.stderr

    other = cli(url, "roles", "--apply", *_flags({**names, "database": "elsewhere"}))
    assert other.returncode == 1
    assert "these grants are for database elsewhere" in other.stderr
