"""Database fixtures: a migrated template database, cloned for every test that needs one.

The server is ``ORCHESTRATOR_TEST_DATABASE_URL`` when set (any PostgreSQL >= 14, reached as
a user allowed to create databases), otherwise the embedded server in
``.orchestrator/test`` (started once, stopped when the test session ends). The template
is migrated once per session; each test gets ``CREATE DATABASE ... TEMPLATE`` (fast, clean).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from orchestrator import Orchestrator
from orchestrator._database import embedded_server_url, with_database
from orchestrator._migrate import upgrade
from orchestrator._registry import Registry
from orchestrator._settings import Settings, settings_class

ROOT = Path(__file__).resolve().parents[1]
TEST_TABLES = """
CREATE TABLE test_effects (
    id bigserial PRIMARY KEY,
    key text NOT NULL,
    job_id bigint,
    attempt integer,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE UNIQUE INDEX test_effects_key ON test_effects (key);
"""


def _admin_url() -> str:
    url = os.environ.get("ORCHESTRATOR_TEST_DATABASE_URL")
    if url:
        return url
    return embedded_server_url(ROOT / ".orchestrator" / "test")


def _admin_execute(url: str, statement: sql.Composed) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


@pytest.fixture(scope="session")
def server_url() -> str:
    """URL of the test server's maintenance database."""
    return _admin_url()


@pytest.fixture(scope="session")
def template_database(server_url: str) -> Iterator[str]:
    name = f"orch_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    _admin_execute(server_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(server_url, name)
    try:
        upgrade(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(TEST_TABLES)
        yield name
    finally:
        _admin_execute(
            server_url,
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)),
        )


@contextlib.contextmanager
def _fresh_database(server_url: str, prefix: str, template: str | None = None) -> Iterator[str]:
    """A database created for one test (a copy of ``template``, or empty), dropped after."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        create = sql.SQL("{} TEMPLATE {}").format(create, sql.Identifier(template))
    _admin_execute(server_url, create)
    try:
        yield with_database(server_url, name)
    finally:
        _admin_execute(
            server_url,
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)),
        )


@pytest.fixture
def database_url(server_url: str, template_database: str) -> Iterator[str]:
    """A fresh, migrated database for this test only."""
    with _fresh_database(server_url, "orch_t", template_database) as url:
        yield url


@pytest.fixture
def empty_database_url(server_url: str) -> Iterator[str]:
    """A fresh database without any migration, for this test only."""
    with _fresh_database(server_url, "orch_empty") as url:
        yield url


def settings_for_tests(**overrides: object) -> Settings:
    """Settings for tests: fast polling and recovery, no .env file."""
    values: dict[str, object] = {
        "poll_interval": 0.1,
        "heartbeat_interval": 0.5,
        "stalled_after": 2.0,
        "recovery_interval": 1,
        "reconcile_after": 1.0,
        "shutdown_timeout": 5.0,
        "concurrency": 4,
        "_env_file": None,
    }
    values.update(overrides)
    return settings_class()(**values)  # type: ignore[arg-type]


def registry_for_tests() -> Registry:
    from tests import workflows_for_tests

    return Registry(workflows_for_tests.WORKFLOWS)


@pytest.fixture
async def orch(database_url: str) -> AsyncIterator[Orchestrator]:
    """An opened orchestrator on a fresh database with the test workflows."""
    orchestrator = Orchestrator(
        settings_for_tests(), registry=registry_for_tests(), schedules=[], database_url=database_url
    )
    await orchestrator.open()
    try:
        yield orchestrator
    finally:
        await orchestrator.close()


def subprocess_env(database_url: str, **extra: str) -> dict[str, str]:
    """Environment for a CLI or worker subprocess using the test database and workflows."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(
        {
            "ORCHESTRATOR_DATABASE_URL": database_url,
            "ORCHESTRATOR_WORKFLOW_MODULES": "tests.workflows_for_tests",
            "ORCHESTRATOR_POLL_INTERVAL": "0.1",
            "ORCHESTRATOR_HEARTBEAT_INTERVAL": "0.5",
            "ORCHESTRATOR_STALLED_AFTER": "2",
            "ORCHESTRATOR_RECOVERY_INTERVAL": "1",
            "ORCHESTRATOR_RECONCILE_AFTER": "1",
            "ORCHESTRATOR_SHUTDOWN_TIMEOUT": "5",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


async def wait_for(predicate: object, *, timeout: float = 30.0, interval: float = 0.05) -> None:
    """Await an async predicate until it is true; fail the test after ``timeout`` seconds."""
    assert callable(predicate)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if await predicate():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)
