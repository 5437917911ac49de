"""POST actions: retry, cancel, and the domain's own (run a month, run a week).

Every action is a POST with a valid CSRF token and a same-site ``Origin``; the first POST
shows what is about to happen, and only a second POST with ``confirm=1`` (from that page)
does it. With ``--read-only`` the routes refuse (403) and the pages show no buttons.
Retry and cancel go through the same :class:`~orchestrator.Orchestrator` methods as
``orchestrator retry`` / ``cancel``; domain actions get ``Orchestrator.enqueue_workflow``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from orchestrator._dashboard.pages import ActionRefused, DashboardAction
from orchestrator._dashboard.security import CSRF_COOKIE, CSRF_FIELD, cookies_of, same_origin
from orchestrator._errors import InvalidPayload, OrchestratorError, UnknownWorkflow

if TYPE_CHECKING:
    from orchestrator._dashboard.app import Console

MAX_FORM_BYTES = 64 * 1024
MAX_JOBS = 500


@dataclass(frozen=True)
class Outcome:
    job_id: int | None
    ok: bool
    message: str


async def read_form(request: Request) -> list[tuple[str, str]]:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise ActionRefused("form too large")
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=1000)
    except (UnicodeDecodeError, ValueError):
        raise ActionRefused("unreadable form") from None


def job_ids(form: list[tuple[str, str]]) -> list[int]:
    ids = []
    for key, value in form:
        if key == "job_id":
            if not value.strip().isdigit():
                raise ActionRefused(f"{value!r} is not a job id")
            ids.append(int(value))
    ids = sorted(set(ids))
    if not ids:
        raise ActionRefused("no job selected")
    if len(ids) > MAX_JOBS:
        raise ActionRefused(f"at most {MAX_JOBS} jobs at once")
    return ids


def routes(console: Console) -> list[BaseRoute]:
    async def guard(request: Request) -> tuple[list[tuple[str, str]] | None, Response | None]:
        if console.read_only:
            return None, console.problem(
                request, 403, "Read-only", "This console was started with --read-only."
            )
        if not same_origin(request.headers):
            return None, console.problem(request, 403, "Refused", "Cross-site request refused.")
        try:
            form = await read_form(request)
        except ActionRefused as exc:
            return None, console.problem(request, 400, "Refused", str(exc))
        cookie = cookies_of(request.headers).get(CSRF_COOKIE)
        token = dict(form).get(CSRF_FIELD)
        if not console.csrf.valid(cookie, token):
            return None, console.problem(
                request,
                403,
                "Refused",
                "The form's security token is missing or stale. Reload the page and try again.",
            )
        return form, None

    def confirm_page(
        request: Request, title: str, summary: str, form: list[tuple[str, str]], items: list[Any]
    ) -> Response:
        hidden = [(k, v) for k, v in form if k not in (CSRF_FIELD, "confirm")]
        return console.render(
            request,
            "confirm.html",
            {
                "page_title": title,
                "summary": summary,
                "hidden": hidden,
                "items": items,
                "action": request.url.path,
            },
        )

    def result_page(request: Request, title: str, outcomes: list[Outcome]) -> Response:
        status = 200 if all(o.ok for o in outcomes) else 409
        return console.render(
            request, "result.html", {"page_title": title, "outcomes": outcomes}, status
        )

    async def job_action(request: Request, verb: str) -> Response:
        form, refused = await guard(request)
        if refused is not None or form is None:
            assert refused is not None
            return refused
        try:
            ids = job_ids(form)
        except ActionRefused as exc:
            return console.problem(request, 400, "Refused", str(exc))
        title = f"{verb.capitalize()} {len(ids)} job{'s' if len(ids) != 1 else ''}"
        if dict(form).get("confirm") != "1":
            summary = (
                "Send these jobs back to the queue with a fresh attempt budget?"
                if verb == "retry"
                else "Cancel these jobs (a running one is asked to abort)?"
            )
            return confirm_page(request, title, summary, form, [f"job {i}" for i in ids])
        outcomes = []
        for job_id in ids:
            try:
                if verb == "retry":
                    await console.orch.retry_job(job_id)
                    message = "queued again"
                else:
                    message = await console.orch.cancel_job(job_id)
                outcomes.append(Outcome(job_id, True, message))
            except OrchestratorError as exc:
                outcomes.append(Outcome(job_id, False, console.orch.scrubber(str(exc))))
        return result_page(request, title, outcomes)

    async def retry(request: Request) -> Response:
        return await job_action(request, "retry")

    async def cancel(request: Request) -> Response:
        return await job_action(request, "cancel")

    def domain_action(action: DashboardAction) -> Any:
        async def endpoint(request: Request) -> Response:
            form, refused = await guard(request)
            if refused is not None or form is None:
                assert refused is not None
                return refused
            params: Mapping[str, str] = {k: v for k, v in form if k in action.fields}
            if dict(form).get("confirm") != "1":
                items = [f"{name}: {params.get(name, '')}" for name in action.fields]
                return confirm_page(request, action.title, f"{action.title}?", form, items)
            try:
                result = await action.handler(console.orch.enqueue_workflow, params)
            except (ActionRefused, InvalidPayload, UnknownWorkflow, OrchestratorError) as exc:
                outcome = Outcome(None, False, console.orch.scrubber(str(exc)))
                return result_page(request, action.title, [outcome])
            outcomes = [Outcome(i, True, result.message) for i in result.job_ids] or [
                Outcome(None, True, result.message)
            ]
            return result_page(request, action.title, outcomes)

        return endpoint

    found: list[BaseRoute] = [
        Route("/actions/retry", console.guarded(retry), methods=["POST"], name="retry"),
        Route("/actions/cancel", console.guarded(cancel), methods=["POST"], name="cancel"),
    ]
    for page in console.pages:
        for action in page.actions:
            found.append(
                Route(
                    f"/actions/{action.name}",
                    console.guarded(domain_action(action)),
                    methods=["POST"],
                )
            )
    return found
