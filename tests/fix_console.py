"""An ASGI client on the console over a fresh database (httpx's ASGI transport, no server)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence

import httpx
import pytest
from starlette.applications import Starlette

from orchestrator import Orchestrator
from orchestrator._dashboard.app import create_app
from orchestrator._dashboard.config import DashboardSettings
from orchestrator._dashboard.pages import DashboardPage
from orchestrator._settings import Settings
from workflows.board import PAGES

BASE = "http://127.0.0.1:8080"


def console_settings(**overrides: object) -> DashboardSettings:
    """The console's settings with ``token=...``-style overrides (``dashboard_`` fields)."""
    settings = Settings(_env_file=None, **{f"dashboard_{k}": v for k, v in overrides.items()})  # type: ignore[arg-type,call-arg]
    return DashboardSettings.of(settings)


def console(
    orch: Orchestrator,
    *,
    pages: Sequence[DashboardPage] = PAGES,
    read_only: bool = False,
    **settings: object,
) -> Starlette:
    return create_app(
        orch,
        settings=console_settings(**settings),
        pages=pages,
        read_only=read_only,
        manage_orchestrator=False,
        live=False,
    )


@pytest.fixture
async def client(orch: Orchestrator) -> AsyncIterator[httpx.AsyncClient]:
    """The console (engine pages + the pipeline board) for the ``orch`` fixture."""
    app = console(orch)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http,
    ):
        yield http


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)
