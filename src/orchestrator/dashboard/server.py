"""``orchestrator dashboard``: serve the console with uvicorn.

Binds 127.0.0.1:8080 by default. Any other address is refused unless a token or basic-auth
credentials are configured (see :mod:`orchestrator.dashboard.security`). ``--read-only``
hides and refuses every action.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from types import FrameType

import uvicorn

from orchestrator.app import Orchestrator
from orchestrator.dashboard.app import create_app
from orchestrator.dashboard.config import DashboardSettings
from orchestrator.dashboard.pages import DashboardPage
from orchestrator.dashboard.security import check_bind
from orchestrator.errors import ConfigurationError
from orchestrator.settings import Settings

#: Seconds open event streams get to close when the server stops.
GRACEFUL_S = 2


def load_pages(settings: Settings) -> list[DashboardPage]:
    """``DASHBOARD_PAGES`` of the workflow catalog and of ``ORCHESTRATOR_WORKFLOW_MODULES``."""
    pages: list[DashboardPage] = []
    for module_name in ["workflows.catalog", *settings.extra_workflow_modules()]:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigurationError(
                f"invalid setting ORCHESTRATOR_WORKFLOW_MODULES: cannot import {module_name!r}: "
                f"{exc}"
            ) from None
        pages.extend(getattr(module, "DASHBOARD_PAGES", ()))
    return pages


def serve(
    settings: Settings,
    dashboard: DashboardSettings,
    *,
    host: str,
    port: int,
    read_only: bool,
    pages: Sequence[DashboardPage] | None = None,
) -> int:
    check_bind(host, dashboard)
    orch = Orchestrator(settings)
    app = create_app(
        orch,
        settings=dashboard,
        pages=load_pages(settings) if pages is None else pages,
        read_only=read_only,
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_S,
        server_header=False,
        proxy_headers=False,
    )
    ConsoleServer(config, on_exit=app.state.console.stopping).run()
    return 0


class ConsoleServer(uvicorn.Server):
    """uvicorn's server, telling the console first when a stop signal arrives."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._on_exit()
        super().handle_exit(sig, frame)
