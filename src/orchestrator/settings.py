"""Typed configuration read from ``ORCHESTRATOR_*`` environment variables and ``.env``.

Database URLs stay plain strings kept as ``SecretStr``: pydantic's ``PostgresDsn`` rejects the
host-less Unix-socket URLs the embedded server hands out, and the password must never be
printed. Use :func:`load_settings` rather than the constructor so that a bad value becomes one
:class:`~orchestrator.errors.ConfigurationError` line naming the variable.

Example::

    settings = load_settings()              # environment + .env
    settings = load_settings(concurrency=4)  # explicit overrides win
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator.errors import ConfigurationError

ENV_PREFIX = "ORCHESTRATOR_"


class Settings(BaseSettings):
    """Every knob of the orchestrator; each field is ``ORCHESTRATOR_<FIELD>`` in the env."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    database_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL URL (postgresql://user:pass@host:port/db). "
        "Unset: an embedded server runs in data_dir.",
    )
    data_dir: Path = Field(
        default=Path(".orchestrator"), description="Embedded PostgreSQL data directory."
    )
    embedded_database: str = Field(
        default="orchestrator",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$",
        description="Database used on the embedded server (created when missing).",
    )
    pool_min_size: int = Field(default=1, ge=0, le=100)
    pool_max_size: int = Field(default=10, ge=1, le=200)
    connect_timeout: float = Field(default=10.0, gt=0, le=300)

    concurrency: int = Field(default=4, ge=1, le=256, description="Jobs run at once per worker.")
    poll_interval: float = Field(
        default=0.5,
        gt=0,
        le=60,
        description="Seconds between polls for due delayed jobs and retries.",
    )
    shutdown_timeout: float = Field(
        default=30.0,
        ge=0,
        description="On SIGTERM, seconds running jobs may finish before they are aborted.",
    )
    heartbeat_interval: float = Field(default=5.0, gt=0, le=300)
    stalled_after: float = Field(
        default=20.0,
        gt=0,
        description="A worker silent for this many seconds is dead; its jobs are re-queued.",
    )
    recovery_interval: int = Field(
        default=10, ge=1, le=59, description="Seconds between crash-recovery sweeps."
    )
    reconcile_after: float = Field(
        default=30.0,
        gt=0,
        description="A job still 'doing' this long after its attempt was recorded is reconciled.",
    )
    retention_days: int = Field(
        default=30, ge=1, description="Finished jobs and their events older than this are pruned."
    )

    default_attempts: int = Field(default=3, ge=1, le=100)
    default_retry_delay: float = Field(default=5.0, ge=0)
    max_payload_bytes: int = Field(default=1_000_000, ge=1_000)

    workflow_modules: str = Field(
        default="",
        description="Comma-separated extra modules whose WORKFLOWS list is registered.",
    )
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    log_format: str = Field(default="text", pattern=r"^(text|json)$")

    cole_inbox: Path = Field(default=Path("cole_inbox"))
    slack_webhook_url: SecretStr | None = None
    debounce_api_key: SecretStr | None = None
    debounce_url: str = "https://api.debounce.io/v1/"
    clay_webhook_url: SecretStr | None = None
    clay_webhook_auth: SecretStr | None = None
    emailbison_rate_limit: float | None = Field(default=None, gt=0)
    emailbison_timeout: float = Field(default=30.0, gt=0, le=600)
    emailbison_allow_http_loopback: bool = Field(
        default=False,
        description="Let clients use plain http to 127.0.0.1/localhost/::1 (local stand-ins "
        "in tests and the demo); otherwise EmailBison URLs must be https.",
    )
    secrets_dir: Path | None = Field(
        default=None, description="Directory of secret files named after their key env var."
    )

    def extra_workflow_modules(self) -> list[str]:
        return [m.strip() for m in self.workflow_modules.split(",") if m.strip()]


def load_settings(**overrides: Any) -> Settings:
    """Read settings, turning a validation failure into one readable line."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigurationError(
            f"invalid setting {ENV_PREFIX}{field.upper()}: {first['msg']}"
        ) from None
