"""The console's Starlette app: engine pages, domain pages, live updates, metrics, health.

Example (what ``orchestrator dashboard`` does, see :mod:`orchestrator._dashboard.server`)::

    orch = Orchestrator()
    app = create_app(orch, settings=DashboardSettings.of(orch.settings),
                     pages=load_pages(orch.settings))
    uvicorn.run(app, host="127.0.0.1", port=8080)

Every page reads through :func:`read_only`: a pooled connection in a READ ONLY transaction
whose statements stop after ``ORCHESTRATOR_DASHBOARD_STATEMENT_TIMEOUT`` seconds; a page
that runs out of time answers 503 with a sentence saying so, never hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from orchestrator._dashboard import actions, data
from orchestrator._dashboard.actions import read_form
from orchestrator._dashboard.config import DashboardSettings
from orchestrator._dashboard.live import ChangeFeed
from orchestrator._dashboard.metrics import MetricsCache, read_snapshot
from orchestrator._dashboard.pages import DashboardPage, PageNotFound
from orchestrator._dashboard.render import Renderer
from orchestrator._dashboard.security import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    Authenticator,
    Csrf,
    SecurityMiddleware,
    cookies_of,
    same_origin,
)
from orchestrator._health import check_database, expected_revisions
from orchestrator._orchestrator import Orchestrator
from orchestrator._redaction import redact_payload
from orchestrator._status import STATES

STATIC = Path(__file__).parent / "static"
METRICS_TIMEOUT_S = 15.0
Endpoint = Callable[[Request], Awaitable[Response]]


class Console:
    """Everything the routes share: the orchestrator, settings, pages, renderer, feed."""

    def __init__(
        self,
        orch: Orchestrator,
        settings: DashboardSettings,
        pages: Sequence[DashboardPage],
        *,
        read_only: bool,
    ) -> None:
        self.orch = orch
        self.settings = settings
        self.pages = list(pages)
        self.read_only = read_only
        self.renderer = Renderer([p.template_dir for p in self.pages], settings.zone)
        self.csrf = Csrf()
        self.auth = Authenticator(settings)
        self.metrics = MetricsCache()
        self.feed: ChangeFeed | None = None
        self.expected: set[str] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def stopping(self) -> None:
        """The server is stopping: end the event streams so it need not wait for them."""
        if self.loop is not None and self.feed is not None:
            self.loop.call_soon_threadsafe(self.feed.close_subscribers)

    @contextlib.asynccontextmanager
    async def read_only_connection(self, timeout: float | None = None) -> AsyncIterator[data.Conn]:
        """A pooled connection in a read-only transaction with the statement timeout."""
        timeout_ms = int((timeout or self.settings.statement_timeout) * 1000)
        async with self.orch.pool.connection() as conn, conn.transaction():
            await conn.execute(
                "SELECT set_config('transaction_read_only', 'on', true),"
                " set_config('statement_timeout', %s, true)",
                [str(timeout_ms)],
            )
            yield conn

    def csrf_token(self, request: Request) -> str:
        cookie = cookies_of(request.headers).get(CSRF_COOKIE)
        if not cookie:
            cookie = getattr(request.state, "new_csrf_cookie", None) or Csrf.new_cookie()
            request.state.new_csrf_cookie = cookie
        return self.csrf.token_for(cookie)

    def base_context(self, request: Request) -> dict[str, Any]:
        root = str(request.scope.get("root_path", "")).rstrip("/") + "/"
        nav = [("", "Overview"), ("jobs", "Jobs"), ("failures", "Failures")]
        nav += [(p.path.lstrip("/"), p.title) for p in self.pages if p.nav]
        return {
            "request": request,
            "root": root,
            "nav": nav,
            "current": request.url.path,
            "read_only": self.read_only,
            "csrf_token": self.csrf_token(request),
            "rendered_at": time.time(),
            "page_title": "",
        }

    def render(
        self, request: Request, template: str, context: dict[str, Any], status_code: int = 200
    ) -> Response:
        return self.renderer.render(request, template, context, status_code=status_code)

    def problem(self, request: Request, status: int, title: str, message: str) -> Response:
        return self.render(
            request, "problem.html", {"page_title": title, "message": message}, status
        )

    def guarded(self, endpoint: Endpoint) -> Endpoint:
        """Database trouble becomes a readable 503 page instead of a stack trace."""

        async def wrapper(request: Request) -> Response:
            try:
                return await endpoint(request)
            except psycopg.errors.QueryCanceled:
                return self.problem(
                    request,
                    503,
                    "Too slow",
                    f"This page needed more than {self.settings.statement_timeout:g} s of "
                    "database time and was stopped. Narrow the filters and try again.",
                )
            except (psycopg.OperationalError, PoolTimeout):
                return self.problem(
                    request, 503, "Database unavailable", "The database did not answer."
                )
            except PageNotFound as exc:
                return self.problem(request, 404, "Not found", str(exc) or "Nothing here.")

        return wrapper


# -- engine pages ----------------------------------------------------------------------------


async def overview(request: Request) -> Response:
    console: Console = request.app.state.console
    async with console.read_only_connection() as conn:
        context = await data.overview(conn, console.orch.registry.names())
    context["next_runs"] = data.next_runs(console.orch.schedules)
    context["zone"] = console.settings.timezone
    context["stalled_after"] = console.orch.settings.stalled_after
    return console.render(request, "overview.html", {"page_title": "Overview", **context})


async def jobs(request: Request) -> Response:
    console: Console = request.app.state.console
    keys = console.settings.filter_keys()
    filters = data.JobFilters.from_params(request.query_params, keys)
    async with console.read_only_connection() as conn:
        page = await data.list_jobs(
            conn, filters, console.settings.page_size, window=data.SEARCH_WINDOW
        )
    next_before = page.next_before
    return console.render(
        request,
        "jobs.html",
        {
            "page_title": "Jobs",
            "jobs": page.rows,
            "window_floor": page.window_floor,
            "window": data.SEARCH_WINDOW,
            "filters": filters,
            "filter_keys": keys,
            "workflows": console.orch.registry.names(),
            "states": STATES,
            "next_params": filters.query_params(before=next_before) if next_before else None,
            "first_params": filters.query_params(before=None) if filters.before else None,
        },
    )


async def job_detail(request: Request) -> Response:
    console: Console = request.app.state.console
    job_id = int(request.path_params["job_id"])
    async with console.read_only_connection() as conn:
        found = await data.job_detail(conn, job_id)
    if found is None:
        raise PageNotFound(f"No job {job_id}: it never existed, or it was pruned with no runs.")
    job = found["job"]
    scrub = console.orch.scrubber
    workflow = job["workflow"] if job else (found["runs"][0]["workflow"] if found["runs"] else "")
    secret_fields: frozenset[str] = frozenset()
    if workflow in console.orch.registry:
        secret_fields = console.orch.registry.get(workflow).secret_fields
    if job is not None:
        job = {**job, "payload": redact_payload(job["payload"], secret_fields)}
    runs = []
    for run in found["runs"]:
        error = run["error"] or None
        if error:
            error = {
                "type": error.get("type"),
                "message": scrub(str(error.get("message") or "")),
                "traceback": scrub(str(error.get("traceback") or "")) or None,
                "retry_in_s": error.get("retry_in_s"),
            }
        runs.append(
            {
                **run,
                "error": error,
                "input": redact_payload(run["input"], secret_fields),
                "output": redact_payload(run["output"], secret_fields),
            }
        )
    return console.render(
        request,
        "job.html",
        {
            "page_title": f"Job {job_id}",
            "job_id": job_id,
            "job": job,
            "workflow": workflow,
            "runs": runs,
            "events": found["events"],
            "can_retry": job is not None and job["state"] in ("failed", "cancelled"),
            "can_cancel": job is not None and job["state"] in ("waiting", "delayed", "active"),
        },
    )


async def failures(request: Request) -> Response:
    """All groups (the newest jobs of each), or one group (``?error_type=``) page by page."""
    console: Console = request.app.state.console
    error_type = request.query_params.get("error_type", "").strip() or None
    before_text = request.query_params.get("before", "")
    before = int(before_text) if before_text.isdigit() else None
    per_group = data.FAILURES_PER_GROUP if error_type is None else console.settings.page_size
    async with console.read_only_connection() as conn:
        groups = await data.failures(
            conn,
            error_type=error_type,
            before=before,
            per_group=per_group,
            scan=data.FAILURE_SCAN,
        )
        beyond = await data.failures_beyond_scan(conn, data.FAILURE_SCAN)
    return console.render(
        request,
        "failures.html",
        {
            "page_title": "Failures" if error_type is None else f"Failures: {error_type}",
            "groups": groups,
            "scan": data.FAILURE_SCAN,
            "error_type": error_type,
            "paged": before is not None,
            "beyond": beyond,
        },
    )


def domain_page(page: DashboardPage) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        console: Console = request.app.state.console
        params = {**request.query_params, **{k: str(v) for k, v in request.path_params.items()}}
        async with console.read_only_connection() as conn:
            context = await page.handler(conn, params)
        context.setdefault("page_title", page.title)
        context["page_actions"] = {a.name: a for a in page.actions}
        return console.render(request, page.template_name, context)

    return endpoint


# -- live updates, metrics, health -----------------------------------------------------------


async def events(request: Request) -> Response:
    console: Console = request.app.state.console
    feed = console.feed
    if feed is None:
        return PlainTextResponse("live updates are off\n", status_code=404)

    async def stream() -> AsyncIterator[str]:
        yield "retry: 3000\n\n"
        async for item in feed.subscribe():
            yield f"event: change\ndata: {time.time():.3f}\n\n" if item else ": keepalive\n\n"

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"}
    )


async def metrics(request: Request) -> Response:
    console: Console = request.app.state.console

    async def read() -> Any:
        # A scrape reads counters, not the run history; it still gets more time than a page
        # (a busy database), and its answer is cached for a few seconds.
        timeout = max(METRICS_TIMEOUT_S, console.settings.statement_timeout)
        async with console.read_only_connection(timeout) as conn:
            return await read_snapshot(conn)

    body = await console.metrics.get(read)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok\n")


async def readyz(request: Request) -> Response:
    console: Console = request.app.state.console
    if console.expected is None:
        console.expected = expected_revisions()
    health = await check_database(
        console.orch.database_url, console.expected, console.orch.settings.connect_timeout
    )
    return PlainTextResponse(health.line() + "\n", status_code=200 if health.ok else 503)


async def login(request: Request) -> Response:
    """The token form: a correct token sets the session cookie (an HMAC of the token)."""
    console: Console = request.app.state.console
    root = str(request.scope.get("root_path", "")).rstrip("/") + "/"
    if not console.auth.uses_token:
        return RedirectResponse(root, status_code=303)
    if request.method == "GET":
        return console.render(request, "login.html", {"page_title": "Sign in", "failed": False})
    form = dict(await read_form(request))
    if not same_origin(request.headers) or not console.auth.token_matches(form.get("token", "")):
        return console.render(
            request, "login.html", {"page_title": "Sign in", "failed": True}, status_code=401
        )
    response = RedirectResponse(root, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        console.auth.session_cookie() or "",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


# -- the app ---------------------------------------------------------------------------------


def create_app(
    orch: Orchestrator,
    *,
    settings: DashboardSettings,
    pages: Sequence[DashboardPage] = (),
    read_only: bool = False,
    manage_orchestrator: bool = True,
    live: bool = True,
) -> Starlette:
    """The console for ``orch``; its lifespan opens (and closes) ``orch`` unless told not to."""
    console = Console(orch, settings, pages, read_only=read_only)
    g = console.guarded
    routes: list[BaseRoute] = [
        Route("/", g(overview), name="overview"),
        Route("/jobs", g(jobs), name="jobs"),
        Route("/jobs/{job_id:int}", g(job_detail), name="job"),
        Route("/failures", g(failures), name="failures"),
        Route("/events", events, name="events"),
        Route("/metrics", metrics, name="metrics"),
        Route("/healthz", healthz, methods=["GET", "HEAD"], name="healthz"),
        Route("/readyz", readyz, methods=["GET", "HEAD"], name="readyz"),
        Route("/login", login, methods=["GET", "POST"], name="login"),
        *actions.routes(console),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    for page in console.pages:
        routes.append(Route(page.path, g(domain_page(page))))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if manage_orchestrator:
            await orch.open()
        if live:
            console.feed = ChangeFeed(orch.database_url)
            await console.feed.start()
        console.loop = asyncio.get_running_loop()
        try:
            yield
        finally:
            if console.feed is not None:
                await console.feed.stop()
                console.feed = None
            if manage_orchestrator:
                await orch.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.console = console
    app.state.base_context = console.base_context
    app.add_middleware(SecurityMiddleware, authenticator=console.auth)
    return app
