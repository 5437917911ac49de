"""Typed configuration read from ``ORCHESTRATOR_*`` environment variables and ``.env``.

Database URLs stay plain strings kept as ``SecretStr``: pydantic's ``PostgresDsn`` rejects the
host-less Unix-socket URLs the embedded server hands out, and the password must never be
printed. Use :func:`load_settings` rather than the constructor so that a bad value becomes one
:class:`~orchestrator._errors.ConfigurationError` line naming the variable.

Example::

    settings = load_settings()              # environment + .env
    settings = load_settings(concurrency=4)  # explicit overrides win
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any, ClassVar, Union, get_args, get_origin

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator._errors import ConfigurationError

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

    #: Secret settings where a blank value is an error rather than "unset": a blank database
    #: URL must not quietly start an embedded server in place of the production database.
    blank_secret_is_an_error: ClassVar[frozenset[str]] = frozenset({"database_url"})

    @field_validator("*", mode="after")
    @classmethod
    def _blank_secret_is_unset(cls, value: Any, info: ValidationInfo) -> Any:
        """An empty or blank secret is no secret: ``ORCHESTRATOR_DEBOUNCE_API_KEY=""`` (as
        compose passes a variable the host does not set) means no key, not the key ``""``.
        Applies to every optional ``SecretStr`` field, plugins' subclasses included."""
        if (
            isinstance(value, SecretStr)
            and not value.get_secret_value().strip()
            and info.field_name not in cls.blank_secret_is_an_error
            and _accepts_none(cls, info.field_name)
        ):
            return None
        return value

    def extra_workflow_modules(self) -> list[str]:
        return [m.strip() for m in self.workflow_modules.split(",") if m.strip()]


def _accepts_none(cls: type[Settings], name: str | None) -> bool:
    field = cls.model_fields.get(name or "")
    if field is None:
        return False
    annotation = field.annotation
    return get_origin(annotation) in (Union, types.UnionType) and type(None) in get_args(annotation)


def secret_values(settings: Settings) -> list[str]:
    """The value of every secret setting (``SecretStr`` fields), for the scrubber."""
    values: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name, None)
        if isinstance(value, SecretStr):
            values.append(value.get_secret_value())
    return values


def settings_class() -> type[Settings]:
    """The deployment's settings class: the engine's, extended by installed plugins."""
    from orchestrator._plugins import entry_point_plugins

    classes = [p.settings_class for p in entry_point_plugins() if p.settings_class is not None]
    for cls in classes:
        if not (isinstance(cls, type) and issubclass(cls, Settings)):
            raise ConfigurationError(f"plugin SETTINGS {cls!r} is not a Settings subclass")
    if not classes:
        return Settings
    if len(classes) == 1:
        return classes[0]
    combined: type[Settings] = type("DeploymentSettings", tuple(reversed(classes)), {})
    return combined


def load_settings(**overrides: Any) -> Settings:
    """Read settings, turning a validation failure into one readable line."""
    try:
        return settings_class()(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigurationError(
            f"invalid setting {ENV_PREFIX}{field.upper()}: {first['msg']}"
        ) from None
