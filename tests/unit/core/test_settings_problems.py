"""Settings forgive nothing silently: units, any-case levels, every error at once with its
value and what is expected, unknown variables named with the closest one, URLs never echoed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import Field, SecretStr, ValidationError

from orchestrator._errors import ConfigurationError
from orchestrator._settings import Settings, database_url_problem, load_settings, read_settings
from orchestrator._settings_problems import check_option, describe_errors, unknown_variables


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("ORCHESTRATOR_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("ORCHESTRATOR_POLL_INTERVAL", "1s", "poll_interval", 1.0),
        ("ORCHESTRATOR_POLL_INTERVAL", "250ms", "poll_interval", 0.25),
        ("ORCHESTRATOR_SHUTDOWN_TIMEOUT", "2m", "shutdown_timeout", 120.0),
        ("ORCHESTRATOR_STALLED_AFTER", "1m30s", "stalled_after", 90.0),
        ("ORCHESTRATOR_HEARTBEAT_INTERVAL", "5s", "heartbeat_interval", 5.0),
        ("ORCHESTRATOR_RECONCILE_AFTER", "45s", "reconcile_after", 45.0),
        ("ORCHESTRATOR_DEFAULT_RETRY_DELAY", "10s", "default_retry_delay", 10.0),
        ("ORCHESTRATOR_CONNECT_TIMEOUT", "3s", "connect_timeout", 3.0),
        ("ORCHESTRATOR_RECOVERY_INTERVAL", "15s", "recovery_interval", 15),
        ("ORCHESTRATOR_RETENTION_DAYS", "30d", "retention_days", 30),
        ("ORCHESTRATOR_EMAILBISON_TIMEOUT", "1m", "emailbison_timeout", 60.0),
        ("ORCHESTRATOR_LOG_LEVEL", "debug", "log_level", "DEBUG"),
        ("ORCHESTRATOR_LOG_FORMAT", "JSON", "log_format", "json"),
    ],
)
def test_units_and_any_case(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str, expected: object
) -> None:
    monkeypatch.setenv(variable, value)
    assert getattr(load_settings(), field) == expected


def test_every_invalid_value_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_CONCURRENCY", "0")
    monkeypatch.setenv("ORCHESTRATOR_RECOVERY_INTERVAL", "1.5s")
    monkeypatch.setenv("ORCHESTRATOR_RETENTION_DAYS", "36h")
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert str(info.value) == (
        "invalid settings (3): "
        "ORCHESTRATOR_CONCURRENCY: got '0', expected an integer from 1 to 256; "
        "ORCHESTRATOR_RECOVERY_INTERVAL: got '1.5s', expected a whole number of seconds "
        "(10s, 1m or 10) from 1 s to 59 s; "
        "ORCHESTRATOR_RETENTION_DAYS: got '36h', expected a number of days (30 or 30d) "
        "at least 1"
    )


def test_a_secret_value_is_never_shown() -> None:
    class WithSecret(Settings):
        api_token: SecretStr = Field(default=SecretStr("x" * 12), min_length=12)

    with pytest.raises(ValidationError) as short:
        WithSecret(api_token="tiny", _env_file=None)  # type: ignore[call-arg, arg-type]
    message = describe_errors(short.value, WithSecret, {})
    assert message.startswith("invalid setting ORCHESTRATOR_API_TOKEN: invalid, expected ")
    assert "tiny" not in message


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("postgresql://app:wr%ngpw@db/jobs", "wr%ngpw"),
        ("postgresql://app:pa%zzword@db/jobs", "pa%zzword"),
        ("mysql://app:s3cret-pw@db/jobs", "s3cret-pw"),
        ("host=db password=s3cret-pw", "s3cret-pw"),
        ("postgresql://app:s3cret-pw@[::1/jobs", "s3cret-pw"),
    ],
)
def test_bad_database_urls_are_refused_without_the_password(
    monkeypatch: pytest.MonkeyPatch, url: str, secret: str
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_DATABASE_URL", url)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith("invalid setting ORCHESTRATOR_DATABASE_URL: ")
    assert secret not in message
    assert url not in message


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:p%40ss@db:5432/jobs",
        "postgres://db/jobs",
        "postgresql://postgres:@/postgres?host=/tmp/data",
        "postgresql:///jobs",
    ],
)
def test_good_database_urls(url: str) -> None:
    assert database_url_problem(url) is None


def test_unknown_variables_are_warned_about_with_the_closest_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_CONCURENCY", "8")
    monkeypatch.setenv("ORCHESTRATOR_SOMETHING_ELSE", "1")
    monkeypatch.setenv("ORCHESTRATOR_TEST_DATABASE_URL", "postgresql://db/x")  # known: tests
    monkeypatch.setenv("ORCHESTRATOR_DEMO_DATABASE", "demo")  # known: the pipeline's demo
    (tmp_path / ".env").write_text(
        "ORCHESTRATOR_LOG_LEVL=debug\nEMAILBISON_KEY_ACME=k\nORCHESTRATOR_COLE_INBOX=x\n",
        encoding="utf-8",
    )
    settings, warnings = read_settings()
    assert settings.concurrency == 4
    assert warnings == [
        "unknown setting ORCHESTRATOR_CONCURENCY ignored; did you mean ORCHESTRATOR_CONCURRENCY?",
        "unknown setting ORCHESTRATOR_LOG_LEVL (in .env) ignored; did you mean "
        "ORCHESTRATOR_LOG_LEVEL?",
        "unknown setting ORCHESTRATOR_SOMETHING_ELSE ignored",
    ]


def test_unknown_variables_without_a_dotenv() -> None:
    assert unknown_variables(Settings, {"ORCHESTRATOR_CONCURRENCY": "2"}, None) == []


def test_an_option_is_checked_against_its_setting() -> None:
    assert check_option("--concurrency", 256, Settings, "concurrency") == 256
    with pytest.raises(ConfigurationError, match=r"^--concurrency 0: expected an integer"):
        check_option("--concurrency", 0, Settings, "concurrency")


def test_console_and_alert_settings_are_settings_like_any_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The console's and the alert sweep's variables are fields of the one Settings class:
    read, validated with the others and known to the unknown-variable check (a typo in one
    is named with the closest real name)."""
    monkeypatch.setenv("ORCHESTRATOR_DASHBOARD_URL", "https://console.example")
    monkeypatch.setenv("ORCHESTRATOR_DASHBOARD_STATEMENT_TIMEOUT", "1500ms")
    monkeypatch.setenv("ORCHESTRATOR_ALERT_INTERVAL", "45s")
    monkeypatch.setenv("ORCHESTRATOR_DASHBOARD_TOKNE", "x" * 20)
    settings, warnings = read_settings()
    assert settings.dashboard_url == "https://console.example"
    assert settings.dashboard_statement_timeout == 1.5
    assert settings.alert_interval == 45
    assert warnings == [
        "unknown setting ORCHESTRATOR_DASHBOARD_TOKNE ignored; did you mean "
        "ORCHESTRATOR_DASHBOARD_TOKEN?"
    ]


def test_console_settings_are_checked_together_with_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_DASHBOARD_TOKEN", "short-secret")
    monkeypatch.setenv("ORCHESTRATOR_DASHBOARD_TIMEZONE", "Mars/Olympus")
    monkeypatch.setenv("ORCHESTRATOR_ALERT_RETRIES", "0")
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    message = str(raised.value)
    assert "ORCHESTRATOR_DASHBOARD_TOKEN" in message and "16 characters" in message
    assert "short-secret" not in message
    assert "ORCHESTRATOR_DASHBOARD_TIMEZONE" in message and "Mars/Olympus" in message
    assert "ORCHESTRATOR_ALERT_RETRIES" in message


def test_a_blank_console_token_is_no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_DASHBOARD_TOKEN", "")
    assert load_settings().dashboard_token is None
