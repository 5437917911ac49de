"""Templates: one Jinja environment (autoescaped) over the engine's and the domain's folders.

Every value from the database reaches the page through autoescaping; the filters below only
format (numbers, ages, times in the console's time zone, JSON), they never mark text safe.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from orchestrator._progress import describe_progress

TEMPLATES = Path(__file__).parent / "templates"


def format_age(seconds: Any) -> str:
    """``45 s``, ``3 min 20 s``, ``2 h 5 min``, ``3 d 4 h`` (``—`` for nothing)."""
    if seconds is None:
        return "—"
    s = max(0, int(float(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def format_duration(seconds: Any) -> str:
    if seconds is None:
        return "—"
    value = float(seconds)
    return f"{value:.2f} s" if value < 60 else format_age(value)


def format_number(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def format_percent(value: Any) -> str:
    return "—" if value is None else f"{float(value) * 100:.1f}%"


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def progress_percent(progress: Any) -> int | None:
    if not isinstance(progress, Mapping) or not progress.get("total"):
        return None
    return min(100, int(int(progress.get("done", 0)) * 100 / int(progress["total"])))


class Renderer:
    """Renders pages with the shared context (navigation, CSRF token, read-only flag)."""

    def __init__(self, template_dirs: Iterable[Path], zone: ZoneInfo) -> None:
        folders = [str(TEMPLATES), *(str(d) for d in template_dirs)]
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(folders),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.zone = zone

        def format_time(value: Any, with_zone: bool = True) -> str:
            if value is None:
                return "—"
            if isinstance(value, datetime.datetime):
                local = value.astimezone(zone)
                return local.strftime("%Y-%m-%d %H:%M:%S" + (" %Z" if with_zone else ""))
            return str(value)

        self.env.filters.update(
            {
                "dt": format_time,
                "age": format_age,
                "duration": format_duration,
                "num": format_number,
                "pct": format_percent,
                "pretty": pretty_json,
                "progress_text": describe_progress,
                "progress_pct": progress_percent,
            }
        )

    def render(
        self,
        request: Request,
        template: str,
        context: Mapping[str, Any],
        *,
        status_code: int = 200,
    ) -> HTMLResponse:
        base = request.app.state.base_context(request)
        html = self.env.get_template(template).render({**base, **context})
        response = HTMLResponse(html, status_code=status_code)
        cookie = getattr(request.state, "new_csrf_cookie", None)
        if cookie is not None:
            response.set_cookie(
                "orchestrator_csrf",
                cookie,
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
                path="/",
            )
        return response
