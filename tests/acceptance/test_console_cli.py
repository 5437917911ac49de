"""``orchestrator health`` and ``orchestrator dashboard``'s bind rule, through the real CLI."""

from __future__ import annotations

from tests.fix_cli import cli
from tests.fix_db import subprocess_env


def test_health_is_one_line_and_an_exit_code(database_url: str) -> None:
    healthy = cli(database_url, "health")
    assert healthy.returncode == 0, healthy.stderr
    assert healthy.stdout.startswith("ok: database reachable, schema at ")
    assert len(healthy.stdout.strip().splitlines()) == 1

    env = subprocess_env("postgresql://nobody:pw@127.0.0.1:1/nothing")
    down = cli(database_url, "health", env=env)
    assert down.returncode == 1
    assert down.stdout.startswith("unhealthy: database unreachable")
    assert "pw" not in down.stdout + down.stderr


def test_dashboard_refuses_a_public_bind_without_a_token(database_url: str) -> None:
    refused = cli(database_url, "dashboard", "--host", "0.0.0.0", "--port", "0", timeout=30)
    assert refused.returncode == 2
    assert "ORCHESTRATOR_DASHBOARD_TOKEN" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
