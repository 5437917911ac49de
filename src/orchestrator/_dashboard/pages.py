"""Pages and actions a domain adds to the operations console, without the engine knowing it.

The engine's dashboard shows jobs, runs, workers and failures; anything about the domain's
own tables (the pipeline board, a client's history) comes from :class:`DashboardPage` objects
the domain lists (``DASHBOARD_PAGES`` in its catalog module). A page's handler gets a
connection in a read-only transaction with a statement timeout and the request's parameters
(path and query, as strings), and returns the context of its Jinja template (autoescaped;
templates may ``{% extends "base.html" %}``). An action is a POST the engine guards (CSRF
token, confirmation step, refused in ``--read-only``) before calling its handler with the
orchestrator's ``enqueue``.

This module imports nothing heavy: a domain catalog can import it in every process.

Example::

    async def board(conn, params):
        cursor = await conn.execute("SELECT name FROM clients ORDER BY name")
        return {"clients": await cursor.fetchall()}

    PAGE = DashboardPage("/board", "Pipeline board", board, Path(__file__).parent / "templates",
                         template="board.html")
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow

PageHandler = Callable[[AsyncConnection[DictRow], Mapping[str, str]], Awaitable[dict[str, Any]]]
Enqueue = Callable[..., Awaitable[int]]
ActionHandler = Callable[[Enqueue, Mapping[str, str]], Awaitable["ActionResult"]]


class PageNotFound(Exception):
    """A page handler found nothing for these parameters (the console answers 404)."""


class ActionRefused(Exception):
    """An action's input is invalid; the message is shown to the operator."""


@dataclass(frozen=True)
class ActionResult:
    """What an action did: a one-line message and the jobs it enqueued."""

    message: str
    job_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class DashboardAction:
    """A POST at ``/actions/<name>``; ``fields`` are the form fields shown for confirmation."""

    name: str
    title: str
    handler: ActionHandler
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class DashboardPage:
    """A page at ``path`` (Starlette path syntax, e.g. ``/board/clients/{client_id:int}``)."""

    path: str
    title: str
    handler: PageHandler
    template_dir: Path
    template: str = ""
    nav: bool = True
    actions: tuple[DashboardAction, ...] = field(default_factory=tuple)

    @property
    def template_name(self) -> str:
        """The template rendered: ``template``, or the path's first segment + ``.html``."""
        if self.template:
            return self.template
        first = self.path.strip("/").split("/")[0] or "index"
        return f"{first}.html"
