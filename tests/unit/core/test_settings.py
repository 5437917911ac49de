"""Settings from ``ORCHESTRATOR_*`` variables and ``.env``; errors name the variable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from orchestrator._errors import ConfigurationError
from orchestrator._settings import Settings, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ORCHESTRATOR_* variables and no .env from the developer's checkout."""
    for name in list(os.environ):
        if name.startswith("ORCHESTRATOR_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults() -> None:
    settings = load_settings()
    assert settings.database_url is None
    assert settings.data_dir == Path(".orchestrator")
    assert settings.concurrency == 4
    assert settings.default_attempts == 3
    assert settings.default_retry_delay == 5.0
    assert settings.retention_days == 30
    assert settings.stalled_after <= 60  # crash recovery within 60 s
    assert settings.extra_workflow_modules() == []


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_CONCURRENCY", "8")
    monkeypatch.setenv("ORCHESTRATOR_POLL_INTERVAL", "0.25")
    monkeypatch.setenv("ORCHESTRATOR_WORKFLOW_MODULES", " a.b , ,c ")
    settings = load_settings()
    assert settings.concurrency == 8
    assert settings.poll_interval == 0.25
    assert settings.extra_workflow_modules() == ["a.b", "c"]


def test_dotenv_file_is_read_and_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("ORCHESTRATOR_CONCURRENCY=6\nORCHESTRATOR_RETENTION_DAYS=7\n")
    monkeypatch.setenv("ORCHESTRATOR_RETENTION_DAYS", "9")
    settings = load_settings()
    assert (settings.concurrency, settings.retention_days) == (6, 9)


def test_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_CONCURRENCY", "8")
    assert load_settings(concurrency=2).concurrency == 2


def test_database_url_is_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql://app:s3cret-pw@db/jobs"
    monkeypatch.setenv("ORCHESTRATOR_DATABASE_URL", url)
    settings = load_settings()
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value() == url
    assert "s3cret-pw" not in repr(settings)
    assert "s3cret-pw" not in str(settings.model_dump())


def test_socket_urls_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql://postgres:@/postgres?host=/tmp/data"
    monkeypatch.setenv("ORCHESTRATOR_DATABASE_URL", url)
    settings = load_settings()
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value() == url


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ORCHESTRATOR_CONCURRENCY", "abc"),
        ("ORCHESTRATOR_CONCURRENCY", "0"),
        ("ORCHESTRATOR_CONCURRENCY", "1000"),
        ("ORCHESTRATOR_POLL_INTERVAL", "-1"),
        ("ORCHESTRATOR_RECOVERY_INTERVAL", "60"),
        ("ORCHESTRATOR_STALLED_AFTER", "soon"),
        ("ORCHESTRATOR_LOG_LEVEL", "LOUD"),
        ("ORCHESTRATOR_LOG_FORMAT", "xml"),
        ("ORCHESTRATOR_DEFAULT_ATTEMPTS", "0"),
        ("ORCHESTRATOR_MAX_PAYLOAD_BYTES", "10"),
    ],
)
def test_invalid_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(f"invalid setting {variable}: ")
    assert "\n" not in message


def test_invalid_override_names_the_variable() -> None:
    with pytest.raises(ConfigurationError, match=r"^invalid setting ORCHESTRATOR_POOL_MAX_SIZE: "):
        load_settings(pool_max_size=0)


def test_settings_are_frozen() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="frozen"):
        setattr(settings, "concurrency", 3)  # noqa: B010


@pytest.mark.parametrize("blank", ["", "   "])
def test_blank_secrets_are_unset(monkeypatch: pytest.MonkeyPatch, blank: str) -> None:
    """compose passes ``ORCHESTRATOR_DEBOUNCE_API_KEY: ""`` when the host has no key."""
    from workflows.settings import PipelineSettings

    for name in ("DEBOUNCE_API_KEY", "SLACK_WEBHOOK_URL", "CLAY_WEBHOOK_URL", "CLAY_WEBHOOK_AUTH"):
        monkeypatch.setenv(f"ORCHESTRATOR_{name}", blank)
    settings = load_settings()
    assert isinstance(settings, PipelineSettings)
    assert settings.debounce_api_key is None
    assert settings.slack_webhook_url is None
    assert settings.clay_webhook_url is None and settings.clay_webhook_auth is None
    monkeypatch.setenv("ORCHESTRATOR_DEBOUNCE_API_KEY", "k-123")
    key = load_settings().debounce_api_key  # type: ignore[attr-defined]
    assert key is not None and key.get_secret_value() == "k-123"


def test_a_blank_database_url_is_not_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset means the embedded server: a blank URL stays an error, never a silent switch."""
    from orchestrator._database import resolve_database_url
    from orchestrator._errors import DatabaseUnavailable

    monkeypatch.setenv("ORCHESTRATOR_DATABASE_URL", " ")
    # refused when the settings are read, naming the variable (never an embedded server)
    with pytest.raises(ConfigurationError, match="ORCHESTRATOR_DATABASE_URL: empty"):
        load_settings()
    settings = load_settings(database_url=None)
    settings = settings.model_copy(update={"database_url": SecretStr(" ")})
    with pytest.raises(DatabaseUnavailable, match="empty"):
        resolve_database_url(settings)
