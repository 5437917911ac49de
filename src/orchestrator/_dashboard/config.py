"""The console's own settings, ``ORCHESTRATOR_DASHBOARD_*`` in the environment or ``.env``.

- ``ORCHESTRATOR_DASHBOARD_TOKEN``: a shared secret; when set, every request needs it
  (``Authorization: Bearer <token>``, or the session cookie the ``/login`` form sets).
- ``ORCHESTRATOR_DASHBOARD_BASIC_AUTH``: ``user:password`` for HTTP basic auth instead.
  One of the two is required to bind anything but a loopback address.
- ``ORCHESTRATOR_DASHBOARD_URL``: the console's public URL, for links in alerts.
- ``ORCHESTRATOR_DASHBOARD_TIMEZONE``: times are shown in this zone (America/Chicago).
- ``ORCHESTRATOR_DASHBOARD_STATEMENT_TIMEOUT``: seconds any one page query may take (2).
- ``ORCHESTRATOR_DASHBOARD_PAYLOAD_FILTERS``: payload keys offered as job filters.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator._errors import ConfigurationError

ENV_PREFIX = "ORCHESTRATOR_DASHBOARD_"


class DashboardSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    token: SecretStr | None = None
    basic_auth: SecretStr | None = Field(default=None, description="user:password")
    url: str | None = Field(default=None, pattern=r"^https?://")
    timezone: str = "America/Chicago"
    statement_timeout: float = Field(default=2.0, gt=0, le=60)
    page_size: int = Field(default=50, ge=5, le=500)
    payload_filters: str = "client,month"

    @field_validator("basic_auth")
    @classmethod
    def _user_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and ":" not in value.get_secret_value():
            raise ValueError("must be user:password")
        return value

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def requires_auth(self) -> bool:
        return self.token is not None or self.basic_auth is not None

    def filter_keys(self) -> list[str]:
        return [k.strip() for k in self.payload_filters.split(",") if k.strip()]


def load_dashboard_settings(**overrides: Any) -> DashboardSettings:
    """Read the settings, turning a validation failure into one readable line."""
    try:
        return DashboardSettings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigurationError(
            f"invalid setting {ENV_PREFIX}{name.upper()}: {first['msg']}"
        ) from None
