"""``orchestrator dashboard``: serve the console with uvicorn.

Binds 127.0.0.1:8080 by default. Any other address is refused unless a token or basic-auth
credentials are configured (see :mod:`orchestrator._dashboard.security`). ``--read-only``
hides and refuses every action.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence
from types import FrameType

import uvicorn

from orchestrator._dashboard.app import create_app
from orchestrator._dashboard.config import DashboardSettings
from orchestrator._dashboard.pages import DashboardPage
from orchestrator._dashboard.security import check_bind
from orchestrator._orchestrator import Orchestrator
from orchestrator._plugins import plugins
from orchestrator._settings import Settings

#: Seconds open event streams get to close when the server stops.
GRACEFUL_S = 2


def load_pages(settings: Settings) -> list[DashboardPage]:
    """The ``DASHBOARD_PAGES`` every plugin declares (see :mod:`orchestrator._plugins`)."""
    pages: list[DashboardPage] = []
    for plugin in plugins(settings.workflow_modules):
        pages.extend(plugin.attribute("DASHBOARD_PAGES", ()))
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
    # uvicorn stops gracefully on SIGTERM, then raises the signal again for its default
    # action, which would end the process without running the exit hooks (the embedded
    # server's release among them, leaving it running). Ending by SystemExit runs them.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        ConsoleServer(config, on_exit=app.state.console.stopping).run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


class ConsoleServer(uvicorn.Server):
    """uvicorn's server, telling the console first when a stop signal arrives."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._on_exit()
        super().handle_exit(sig, frame)
