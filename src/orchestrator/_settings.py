"""Typed configuration read from ``ORCHESTRATOR_*`` environment variables and ``.env``.

Database URLs stay plain strings kept as ``SecretStr``: pydantic's ``PostgresDsn`` rejects the
host-less Unix-socket URLs the embedded server hands out, and the password must never be
printed. Use :func:`load_settings` rather than the constructor so that bad values become one
:class:`~orchestrator._errors.ConfigurationError` line naming every bad variable, its value
(secrets masked) and what is expected (see :mod:`orchestrator._settings_problems`).

Nothing is forgiven silently: an ``ORCHESTRATOR_*`` variable (or ``.env`` line) that is no
setting is reported with the closest known name; durations take units (``30s``, ``2m``) in
every duration setting; log levels take any case.

Example::

    settings = load_settings()              # environment + .env
    settings = load_settings(concurrency=4)  # explicit overrides win
"""

from __future__ import annotations

import logging
import os
import re
import types
from pathlib import Path
from typing import Annotated, Any, ClassVar, Union, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator._durations import parse_duration
from orchestrator._errors import ConfigurationError

ENV_PREFIX = "ORCHESTRATOR_"
logger = logging.getLogger("orchestrator.settings")


def _seconds(value: object) -> object:
    """``30s``, ``2m``, ``1h30m`` or a plain number of seconds, as seconds."""
    return parse_duration(value) if isinstance(value, str) else value


def _days(value: object) -> object:
    """Whole days, written ``30`` or ``30d`` (``36h`` is refused: not whole days)."""
    if isinstance(value, str) and not value.strip().isdigit():
        days = parse_duration(value) / 86_400
        if days != int(days):
            raise ValueError(f"{value!r} is not a whole number of days")
        return int(days)
    return value


#: Seconds, written ``30s``, ``2m``, ``1h30m`` or as a number (``1.5``). Plugins use it for
#: their own duration settings.
Duration = Annotated[float, BeforeValidator(_seconds)]
WholeSeconds = Annotated[int, BeforeValidator(_seconds)]
Days = Annotated[int, BeforeValidator(_days)]


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
    connect_timeout: Duration = Field(default=10.0, gt=0, le=300)

    concurrency: int = Field(default=4, ge=1, le=256, description="Jobs run at once per worker.")
    poll_interval: Duration = Field(
        default=0.5,
        gt=0,
        le=60,
        description="Seconds between polls for due delayed jobs and retries.",
    )
    shutdown_timeout: Duration = Field(
        default=30.0,
        ge=0,
        description="On SIGTERM, seconds running jobs may finish before they are aborted.",
    )
    heartbeat_interval: Duration = Field(default=5.0, gt=0, le=300)
    stalled_after: Duration = Field(
        default=20.0,
        gt=0,
        description="A worker silent for this many seconds is dead; its jobs are re-queued.",
    )
    recovery_interval: WholeSeconds = Field(
        default=10, ge=1, le=59, description="Seconds between crash-recovery sweeps."
    )
    reconcile_after: Duration = Field(
        default=30.0,
        gt=0,
        description="A job still 'doing' this long after its attempt was recorded is reconciled.",
    )
    retention_days: Days = Field(
        default=30, ge=1, description="Finished jobs and their events older than this are pruned."
    )

    default_attempts: int = Field(default=3, ge=1, le=100)
    default_retry_delay: Duration = Field(default=5.0, ge=0)
    max_payload_bytes: int = Field(default=1_000_000, ge=1_000)

    workflow_modules: str = Field(
        default="",
        description="Comma-separated extra modules whose WORKFLOWS list is registered.",
    )
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    log_format: str = Field(default="text", pattern=r"^(text|json)$")

    # -- the operations console (orchestrator dashboard) ---------------------------------
    dashboard_token: SecretStr | None = Field(
        default=None,
        description="Console access token (16+ characters): required off loopback, "
        "or dashboard_basic_auth.",
    )
    dashboard_basic_auth: SecretStr | None = Field(
        default=None, description="user:password for the console's HTTP basic auth."
    )
    dashboard_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="The console's public URL, for links in alerts.",
    )
    dashboard_timezone: str = Field(
        default="America/Chicago", description="The console shows times in this zone."
    )
    dashboard_statement_timeout: Duration = Field(
        default=2.0, gt=0, le=60, description="Seconds any one console query may take."
    )
    dashboard_page_size: int = Field(default=50, ge=5, le=500, description="Jobs per page.")
    dashboard_payload_filters: str = Field(
        default="client,month", description="Payload keys offered as job filters."
    )

    # -- alerts (a sweep on the workers) ---------------------------------------------------
    alert_retries: int = Field(
        default=3, ge=1, le=100, description="Alert when a job's attempt number exceeds this."
    )
    alert_interval: WholeSeconds = Field(
        default=30, ge=5, le=59, description="Seconds between alert sweeps."
    )

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

    #: ``ORCHESTRATOR_*`` variables that are read elsewhere (test and benchmark servers), so
    #: not reported as unknown. Subclasses add their own; every class's set counts.
    other_variables: ClassVar[frozenset[str]] = frozenset(
        {
            "TEST_DATABASE_URL",
            "BENCH_DATABASE_URL",
            # passwords of orchestrator roles --apply --login
            "OWNER_PASSWORD",
            "WORKER_PASSWORD",
            "READER_PASSWORD",
            # the browser tests
            "REQUIRE_BROWSER",
            "CHROMIUM",
            "WRITE_SCREENSHOTS",
        }
    )

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        """``debug`` is ``DEBUG``, ``JSON`` is ``json`` (a bad value is reported as given)."""
        if isinstance(value, str):
            for choice in ("DEBUG", "INFO", "WARNING", "ERROR", "text", "json"):
                if value.strip().lower() == choice.lower():
                    return choice
        return value

    @field_validator("dashboard_basic_auth")
    @classmethod
    def _user_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and ":" not in value.get_secret_value():
            raise ValueError("must be user:password")
        return value

    @field_validator("dashboard_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @field_validator("dashboard_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("database_url")
    @classmethod
    def _postgresql_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            problem = database_url_problem(value.get_secret_value())
            if problem is not None:
                raise ValueError(problem)
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


def database_url_problem(url: str) -> str | None:
    """Why ``url`` is not a usable PostgreSQL URL, without ever quoting it (it holds the
    password); ``None`` when it is one.

    >>> database_url_problem("postgresql://app:pw@db:5432/jobs") is None
    True
    >>> database_url_problem("mysql://app:pw@db/jobs")
    'a mysql:// URL; expected a URL like postgresql://host:5432/dbname'
    >>> database_url_problem("postgresql://app:wr%ngpw@db/jobs")
    "a '%' that starts no percent-escape (write % in a password as %25)"
    """
    url = url.strip()
    if not url:
        return "empty (unset it to use the embedded server)"
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", url)
    if scheme is None:
        return "not a URL; expected a URL like postgresql://host:5432/dbname"
    if scheme.group(1).lower() not in ("postgresql", "postgres"):
        return f"a {scheme.group(1)}:// URL; expected a URL like postgresql://host:5432/dbname"
    if re.search(r"%(?![0-9A-Fa-f]{2})", url):
        return "a '%' that starts no percent-escape (write % in a password as %25)"
    from psycopg import Error
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(url)
    except Error:
        # libpq's message quotes the URL, password included: it is never shown.
        return (
            "libpq cannot parse this URL (characters such as @ / : # ? in the user or "
            "password must be percent-encoded)"
        )
    return None


def read_settings(**overrides: Any) -> tuple[Settings, list[str]]:
    """Settings and warnings (unknown ``ORCHESTRATOR_*`` variables, with the closest known
    name); every invalid value is reported at once in one :class:`ConfigurationError`."""
    from orchestrator._settings_problems import describe_errors, unknown_variables

    cls = settings_class()
    env_file = overrides.get("_env_file", cls.model_config.get("env_file"))
    try:
        settings = cls(**overrides)
    except ValidationError as exc:
        raise ConfigurationError(describe_errors(exc, cls, os.environ, env_file)) from None
    return settings, unknown_variables(cls, os.environ, env_file)


def load_settings(**overrides: Any) -> Settings:
    """Read settings, turning validation failures into one readable line (the unknown
    variables are logged as warnings)."""
    settings, warnings = read_settings(**overrides)
    for warning in warnings:
        logger.warning(warning, extra={"event": "settings.unknown_variable"})
    return settings
