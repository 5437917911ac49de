"""The roles script: names checked, limits from the engine and the plugins, no password in it."""

from __future__ import annotations

from types import ModuleType

import pytest

from orchestrator._cli import main
from orchestrator._errors import ConfigurationError
from orchestrator._plugins import Plugin
from orchestrator._roles import (
    ENGINE_WORKER_PRIVILEGES,
    Roles,
    passwords_from_environment,
    render,
    worker_privileges,
)


def _plugin(name: str, **attributes: object) -> Plugin:
    module = ModuleType(name)
    for key, value in attributes.items():
        setattr(module, key, value)
    return Plugin(name, module)


def test_the_pipeline_keeps_workers_from_changing_clients() -> None:
    limits = worker_privileges()
    assert limits["clients"] == ("SELECT",)
    assert limits["agent_runs"] == ("SELECT", "INSERT", "UPDATE")  # run history is kept
    assert set(ENGINE_WORKER_PRIVILEGES) <= set(limits)


def test_plugin_limits_are_ordered_and_conflicts_refused() -> None:
    mine = _plugin("mine", WORKER_PRIVILEGES={"ledger": ["INSERT", "SELECT"]})
    assert worker_privileges([mine])["ledger"] == ("SELECT", "INSERT")
    again = _plugin("again", WORKER_PRIVILEGES={"ledger": ["SELECT"]})
    with pytest.raises(ConfigurationError, match="already limited"):
        worker_privileges([mine, again])
    with pytest.raises(ConfigurationError, match="TRUNCATE"):
        worker_privileges([_plugin("bad", WORKER_PRIVILEGES={"ledger": ["TRUNCATE"]})])


@pytest.mark.parametrize(
    "roles",
    [
        {"worker": "Worker"},
        {"reader": "reader; DROP TABLE clients"},
        {"owner": "1owner"},
        {"database": "my-db"},
        {"worker": "orchestrator_owner"},
        {"worker_privileges": {"no such table!": ("SELECT",)}},
    ],
)
def test_names_are_plain_lowercase_identifiers_and_distinct(roles: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        Roles(**roles)  # type: ignore[arg-type]


def test_the_script_limits_tables_and_sets_default_privileges() -> None:
    text = render(Roles(worker_privileges=worker_privileges())).psql()
    assert text.count("BEGIN;") == 1 and text.rstrip().endswith("COMMIT;")
    assert 'GRANT SELECT ON TABLE "public"."clients" TO "orchestrator_worker";' in text
    assert (
        'GRANT SELECT, INSERT, UPDATE ON TABLE "public"."agent_runs" TO "orchestrator_worker";'
        in text
    )
    assert (
        'ALTER DEFAULT PRIVILEGES FOR ROLE "orchestrator_owner" IN SCHEMA public\n'
        '    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "orchestrator_worker";'
    ) in text
    assert "CREATE ROLE %I NOLOGIN" in text
    assert "LOGIN PASSWORD" not in text and "SET LOCAL" not in text


def test_login_roles_take_passwords_from_psql_variables() -> None:
    text = render(Roles(login=True)).psql()
    for kind in ("owner", "worker", "reader"):
        assert f"SET LOCAL orchestrator_roles.{kind}_password = :'{kind}_password';" in text
    assert "LOGIN PASSWORD %L" in text


def test_apply_needs_every_login_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_OWNER_PASSWORD", "o")
    monkeypatch.setenv("ORCHESTRATOR_WORKER_PASSWORD", "  ")
    monkeypatch.delenv("ORCHESTRATOR_READER_PASSWORD", raising=False)
    passwords = passwords_from_environment()
    assert passwords == {"owner": "o"}
    with pytest.raises(ConfigurationError, match="ORCHESTRATOR_WORKER_PASSWORD"):
        render(Roles(login=True)).apply("postgresql://nowhere.invalid/db", passwords)


def test_roles_command_prints_the_script(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["roles", "--sql", "--worker", "app_worker", "--database", "jobs"]) == 0
    out = capsys.readouterr().out
    assert '"app_worker"' in out and "'jobs'" in out
    assert main(["roles", "--sql", "--reader", "Bad-Name"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "invalid reader role name" in err[0]
