"""compose.yaml must be right for users with Docker, even though no engine runs here."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from orchestrator._roles import Roles, render, worker_privileges

ROOT = Path(__file__).resolve().parents[3]
INIT = ROOT / "deploy" / "postgres-init"
ROLE_PASSWORDS = (
    "ORCHESTRATOR_OWNER_PASSWORD",
    "ORCHESTRATOR_WORKER_PASSWORD",
    "ORCHESTRATOR_READER_PASSWORD",
)


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text(encoding="utf-8")


def _required(value: str, variable: str) -> bool:
    """``value`` is exactly ``${variable:?message}``: compose refuses to start without it."""
    return re.fullmatch(rf"\$\{{{variable}:\?[^}}]+\}}", value) is not None


def test_postgres_has_volume_and_healthcheck() -> None:
    postgres = _compose()["services"]["postgres"]
    assert any(str(v).endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_migrate_is_one_shot_after_postgres_is_healthy_and_grants_again() -> None:
    migrate = _compose()["services"]["migrate"]
    assert migrate["entrypoint"] == ["/bin/sh", "-c"]
    assert migrate["command"] == ["orchestrator migrate && orchestrator roles --apply"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate.get("restart") == "no"


def test_workers_scale_and_wait_for_the_migration() -> None:
    worker = _compose()["services"]["worker"]
    assert worker["command"][0] == "worker"
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    # --scale needs containers without fixed names or host ports
    assert "container_name" not in worker
    assert "ports" not in worker
    assert worker.get("stop_signal") == "SIGTERM"


def test_the_owner_role_migrates_and_the_worker_role_does_the_rest() -> None:
    services = _compose()["services"]
    expected = {"migrate": "orchestrator_owner", "worker": "orchestrator_worker"}
    expected["cli"] = "orchestrator_worker"
    for name, role in expected.items():
        env = services[name]["environment"]
        url = env["ORCHESTRATOR_DATABASE_URL"]
        assert url == f"postgresql://{role}@postgres:5432/orchestrator", name
        # the password reaches libpq as PGPASSWORD: no URL-encoding, not in the URL
        kind = role.removeprefix("orchestrator_").upper()
        assert _required(env["PGPASSWORD"], f"ORCHESTRATOR_{kind}_PASSWORD"), name
    roles = Roles(worker_privileges=worker_privileges())
    assert (roles.owner, roles.worker) == ("orchestrator_owner", "orchestrator_worker")


def test_every_password_is_required_and_none_has_a_default() -> None:
    text = (ROOT / "compose.yaml").read_text(encoding="utf-8")
    assert not re.search(r"PASSWORD:-", text), "a password with a default value"
    postgres = _compose()["services"]["postgres"]["environment"]
    assert postgres["POSTGRES_USER"] == "postgres"
    assert _required(postgres["POSTGRES_PASSWORD"], "POSTGRES_PASSWORD")
    for variable in ROLE_PASSWORDS:
        assert _required(postgres[variable], variable)
    for name, service in _compose()["services"].items():
        url = str(service.get("environment", {}).get("ORCHESTRATOR_DATABASE_URL", ""))
        assert "postgres@" not in url, f"{name} connects as the superuser"


def test_postgres_creates_the_roles_on_first_start() -> None:
    postgres = _compose()["services"]["postgres"]
    assert "./deploy/postgres-init:/docker-entrypoint-initdb.d:ro" in postgres["volumes"]
    script = INIT / "10-orchestrator-roles.sh"
    assert os.access(script, os.X_OK), "executed, not sourced, by the postgres entrypoint"
    text = script.read_text(encoding="utf-8")
    assert "-f /docker-entrypoint-initdb.d/orchestrator-roles.psql" in text
    for kind in ("owner", "worker", "reader"):
        assert f'-v {kind}_password="$ORCHESTRATOR_{kind.upper()}_PASSWORD"' in text


def test_the_init_sql_is_the_roles_command_output() -> None:
    """Regenerate with: orchestrator roles --sql --login --database orchestrator
    > deploy/postgres-init/orchestrator-roles.psql"""
    roles = Roles(database="orchestrator", login=True, worker_privileges=worker_privileges())
    committed = (INIT / "orchestrator-roles.psql").read_text(encoding="utf-8")
    assert committed == render(roles).psql()


def test_base_images_are_pinned_to_patch_releases() -> None:
    dockerfile = _dockerfile()
    match = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.MULTILINE)
    assert match is not None
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", match[1])
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\}$", dockerfile, re.MULTILINE)
    image = _compose()["services"]["postgres"]["image"]
    default = re.fullmatch(r"\$\{POSTGRES_IMAGE:-([^}]+)\}", image)
    assert default is not None
    assert re.fullmatch(r"postgres:16\.\d+(-bookworm)?(@sha256:[0-9a-f]{64})?", default[1])


def test_dockerfile_installs_the_production_lock_and_runs_the_cli() -> None:
    dockerfile = _dockerfile()
    assert "--require-hashes -r requirements.prod.lock" in dockerfile
    assert "requirements.lock" not in dockerfile.replace("requirements.prod.lock", "")
    assert 'ENTRYPOINT ["orchestrator"]' in dockerfile
    assert "COPY src ./src" in dockerfile
    # migrations ship inside the installed packages: a plain install, no repository files
    assert "--no-deps ." in dockerfile and " -e ." not in dockerfile
    assert "COPY migrations" not in dockerfile and "alembic.ini" not in dockerfile


def test_dashboard_needs_a_token_and_publishes_on_loopback_only() -> None:
    services = _compose()["services"]
    dashboard = services["dashboard"]
    assert dashboard["command"][0] == "dashboard"
    assert "ORCHESTRATOR_DASHBOARD_TOKEN" in dashboard["environment"]
    assert ":?" in dashboard["environment"]["ORCHESTRATOR_DASHBOARD_TOKEN"]
    assert all(str(port).startswith("127.0.0.1:") for port in dashboard["ports"])
    assert "/readyz" in " ".join(dashboard["healthcheck"]["test"])
    assert dashboard["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["worker"]["healthcheck"]["test"] == ["CMD", "orchestrator", "health"]
    assert "orchestrator_worker@postgres" in dashboard["environment"]["ORCHESTRATOR_DATABASE_URL"]


def test_the_build_context_holds_only_what_the_dockerfile_copies() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "everything is excluded first"
    kept = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied: set[str] = set()
    for match in re.finditer(r"^COPY (.+) \S+$", _dockerfile(), re.MULTILINE):
        copied.update(match[1].split())
    assert kept == copied
    for secret in (".env", ".git", ".venv", ".orchestrator", "secrets", "tests", "bench"):
        assert secret not in kept
    assert "**/__pycache__" in lines
