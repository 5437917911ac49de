"""Least privilege: a month runs with the worker role, which cannot change clients, erase run
history or create objects; the reader only reads; later tables get the same grants.

Roles are cluster-wide and the test server may be shared by parallel runs: every role and the
database get a unique name, the roles log in with a password (whatever the server's
authentication), and all of it is dropped at the end. The set-up is the deployment's: the
administrator creates the roles and grants, ``migrate`` runs as the owner, then the owner
applies the grants again (as compose's migrate service does).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from orchestrator import Orchestrator, OrchestratorError
from orchestrator._database import with_database
from orchestrator._migrate import upgrade
from orchestrator._roles import KINDS, Roles, render, worker_privileges
from tests.fix_db import settings_for_tests
from tests.fix_pipeline import Bison, jobs_by_workflow, run_until_idle, scalar
from workflows.clients import ClientSpec, add_client

MONTH = "2026-09"


def as_role(url: str, user: str, password: str) -> str:
    """The same server and database, reached as ``user`` with ``password``."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class Deployment:
    roles: Roles
    admin_url: str
    owner_url: str
    worker_url: str
    reader_url: str


def _admin(url: str, statement: sql.Composed) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


@pytest.fixture(scope="module")
def deployment(server_url: str) -> Iterator[Deployment]:
    with psycopg.connect(server_url) as conn:
        row = conn.execute(
            "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
    if not (row and row[0]):
        pytest.skip("the test server's user may not create roles")
    suffix = uuid.uuid4().hex[:10]
    roles = Roles(
        owner=f"orch_owner_{suffix}",
        worker=f"orch_worker_{suffix}",
        reader=f"orch_reader_{suffix}",
        login=True,
        worker_privileges=worker_privileges(),
    )
    passwords = {kind: secrets.token_urlsafe(18) for kind in KINDS}
    database = f"orch_roles_{suffix}"
    _admin(server_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    admin_url = with_database(server_url, database)
    try:
        render(roles).apply(admin_url, passwords)
        urls = {kind: as_role(admin_url, roles.name(kind), passwords[kind]) for kind in KINDS}
        upgrade(urls["owner"])
        render(replace(roles, login=False)).apply(urls["owner"])
        yield Deployment(roles, admin_url, urls["owner"], urls["worker"], urls["reader"])
    finally:
        _admin(
            server_url,
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)),
        )
        for kind in KINDS:
            _admin(
                server_url,
                sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(roles.name(kind))),
            )


def refused(url: str, statement: str) -> bool:
    """Whether the server refuses ``statement`` for lack of privilege (rolled back anyway)."""
    with psycopg.connect(url) as conn:
        try:
            conn.execute(statement)
        except psycopg.errors.InsufficientPrivilege:
            return True
        finally:
            conn.rollback()
    return False


async def test_a_month_runs_with_the_worker_role(
    deployment: Deployment,
    bison: Bison,
    inbox: Path,
    write_exports: Callable[..., list[Path]],
) -> None:
    async with await psycopg.AsyncConnection.connect(
        deployment.owner_url, autocommit=True, row_factory=dict_row
    ) as conn:  # clients are the operator's: the owner role writes them
        client = await add_client(
            conn,
            ClientSpec(
                name=f"Least Privilege {uuid.uuid4().hex[:6]}",
                tier=100,
                licensed_states=["TX", "OK"],
                approved_zips=["75001", "75002", "75006", "73003", "73008"],
                emailbison_url=bison.url,
                emailbison_key_env=bison.key_env,
            ),
        )
    write_exports(client.name, MONTH, rows=2_000)
    settings = settings_for_tests(
        cole_inbox=inbox,
        default_retry_delay=0.2,
        emailbison_allow_http_loopback=True,  # the stand-in is http on 127.0.0.1
    )
    worker = Orchestrator(settings, schedules=[], database_url=deployment.worker_url)
    await worker.open()
    try:
        payload = {"client": client.name, "month": MONTH, "chain": True}
        await worker.enqueue_workflow("pt1", payload)
        await run_until_idle(worker)

        found = await jobs_by_workflow(worker)
        statuses = {name: [job["status"] for job in jobs] for name, jobs in found.items()}
        assert statuses == {
            "pt1": ["succeeded"],
            "pt2": ["succeeded"],
            "pt3": ["succeeded"],
            "pt4": ["succeeded"],
        }
        cleaned = await scalar(worker, "SELECT count(*) FROM cleaned_leads WHERE selected")
        assert cleaned > 0
        assert len(bison.leads()) == cleaned
        assert await scalar(worker, "SELECT current_user") == deployment.roles.worker
    finally:
        await worker.close()

    reader = Orchestrator(settings, schedules=[], database_url=deployment.reader_url)
    await reader.open()
    try:
        status = await reader.queue_status()
        assert {name: status.by_workflow[name].completed for name in statuses} == dict.fromkeys(
            statuses, 1
        )
        runs = await reader.list_runs(limit=10)
        assert sorted(r["workflow"] for r in runs) == sorted(statuses)
    finally:
        await reader.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE clients SET emailbison_url = 'https://attacker.example'",
        "INSERT INTO clients (name, tier) VALUES ('Intruder', 100)",
        "DELETE FROM clients",
        "DELETE FROM agent_runs",
        "DELETE FROM orchestrator_runs",  # a view over agent_runs: no write through it
        "UPDATE orchestrator_job_counts SET n = 0",
        "UPDATE alembic_version SET version_num = 'x'",
        "DELETE FROM orchestrator_rate_limits",  # grants and 429s only
        "TRUNCATE procrastinate_events",
        "CREATE TABLE intruder (id integer)",
        "CREATE VIEW intruder AS SELECT 1",
        "CREATE SCHEMA intruder",
        "ALTER TABLE agent_runs DISABLE TRIGGER ALL",
        "DROP TABLE raw_leads",
    ],
)
def test_the_worker_role_may_not(deployment: Deployment, statement: str) -> None:
    assert refused(deployment.worker_url, statement)


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO agent_runs (job_id, workflow, attempt) VALUES (1, 'x', 1)",
        "UPDATE procrastinate_jobs SET priority = 1",
        "DELETE FROM raw_leads",
        "CREATE TEMP TABLE scratch (id integer)",
        "CREATE TABLE intruder (id integer)",
    ],
)
def test_the_reader_role_may_only_read(deployment: Deployment, statement: str) -> None:
    assert refused(deployment.reader_url, statement)


def test_what_each_role_may_do(deployment: Deployment) -> None:
    with psycopg.connect(deployment.worker_url) as conn:
        conn.execute("CREATE TEMP TABLE pt1_scratch (id integer)")  # PT1 stages rows so
        conn.execute("SELECT count(*) FROM clients")
        conn.execute("UPDATE agent_runs SET worker = worker WHERE false")
        conn.rollback()
    assert refused(deployment.worker_url, f"SET ROLE {deployment.roles.owner}")
    with psycopg.connect(deployment.admin_url) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace"
                " AND c.relkind IN ('r', 'v')"
            )
        ]
        roles = deployment.roles
        for table in tables:
            assert conn.execute(
                "SELECT has_table_privilege(%s, %s, 'SELECT')", [roles.reader, table]
            ).fetchone() == (True,), table
            for privilege in ("INSERT", "UPDATE", "DELETE", "TRUNCATE"):
                assert conn.execute(
                    "SELECT has_table_privilege(%s, %s, %s)", [roles.reader, table, privilege]
                ).fetchone() == (False,), (table, privilege)
        [(owner,)] = conn.execute(
            "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class"
            " WHERE relnamespace = 'public'::regnamespace"
        ).fetchall()
        assert owner == roles.owner


def test_tables_of_later_migrations_get_the_same_grants(deployment: Deployment) -> None:
    with psycopg.connect(deployment.owner_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE later_table (id bigserial PRIMARY KEY, note text)")
    try:
        with psycopg.connect(deployment.worker_url, autocommit=True) as conn:
            conn.execute("INSERT INTO later_table (note) VALUES ('written by a worker')")
            conn.execute("DELETE FROM later_table")
        with psycopg.connect(deployment.reader_url, autocommit=True) as conn:
            conn.execute("SELECT count(*) FROM later_table")
        assert refused(deployment.reader_url, "INSERT INTO later_table (note) VALUES ('x')")
    finally:
        with psycopg.connect(deployment.owner_url, autocommit=True) as conn:
            conn.execute("DROP TABLE later_table")


def test_a_superuser_cannot_be_the_worker(deployment: Deployment) -> None:
    with psycopg.connect(deployment.admin_url) as conn:
        row = conn.execute(
            "SELECT rolname, rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
    assert row is not None
    if not row[1]:
        pytest.skip("the test server's user is not a superuser")
    roles = replace(deployment.roles, worker=row[0], login=False)
    with pytest.raises(OrchestratorError, match="superuser"):
        render(roles).apply(deployment.admin_url)
