"""The console's view of the settings: the ``dashboard_*`` fields of the engine's Settings.

The variables are ordinary settings (``ORCHESTRATOR_DASHBOARD_TOKEN``, ``_BASIC_AUTH``,
``_URL``, ``_TIMEZONE``, ``_STATEMENT_TIMEOUT``, ``_PAGE_SIZE``, ``_PAYLOAD_FILTERS``, see
:class:`orchestrator._settings.Settings`), so they are validated, listed and checked for
typos with every other one; this module only hands the console the part it uses, under
short names, with the derived values (the zone, the filter keys).

Example::

    console = DashboardSettings.of(load_settings())
    console.requires_auth, console.zone, console.filter_keys()
"""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from pydantic import SecretStr

from orchestrator._settings import Settings


@dataclass(frozen=True)
class DashboardSettings:
    token: SecretStr | None
    basic_auth: SecretStr | None
    url: str | None
    timezone: str
    statement_timeout: float
    page_size: int
    payload_filters: str

    @classmethod
    def of(cls, settings: Settings) -> DashboardSettings:
        return cls(
            token=settings.dashboard_token,
            basic_auth=settings.dashboard_basic_auth,
            url=settings.dashboard_url,
            timezone=settings.dashboard_timezone,
            statement_timeout=settings.dashboard_statement_timeout,
            page_size=settings.dashboard_page_size,
            payload_filters=settings.dashboard_payload_filters,
        )

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def requires_auth(self) -> bool:
        return self.token is not None or self.basic_auth is not None

    def filter_keys(self) -> list[str]:
        return [k.strip() for k in self.payload_filters.split(",") if k.strip()]
