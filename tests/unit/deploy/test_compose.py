"""compose.yaml must be right for users with Docker, even though no engine runs here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_postgres_has_volume_and_healthcheck() -> None:
    postgres = _compose()["services"]["postgres"]
    assert any(str(v).endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_migrate_is_one_shot_after_postgres_is_healthy() -> None:
    migrate = _compose()["services"]["migrate"]
    assert migrate["command"] == ["migrate"]
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


def test_every_service_gets_the_database_url() -> None:
    services = _compose()["services"]
    for name in ("migrate", "worker", "cli"):
        url = services[name]["environment"]["ORCHESTRATOR_DATABASE_URL"]
        assert url.startswith("postgresql://") and "@postgres:5432/" in url


def test_dockerfile_installs_from_the_lock_and_runs_the_cli() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "--require-hashes -r requirements.lock" in dockerfile
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
