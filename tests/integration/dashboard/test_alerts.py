"""The alert sweep: once per failed job, retry storms, stalled workers, hooks that fail."""

from __future__ import annotations

import httpx

from orchestrator import Orchestrator
from orchestrator._alerts import Alert, sweep
from orchestrator._settings import Settings
from tests.fix_worker import execute
from workflows.alerts import alert_text, slack_alert


async def test_each_alert_goes_out_once_and_a_failing_hook_is_harmless(
    orch: Orchestrator,
) -> None:
    failed = 41
    await execute(
        orch,
        "INSERT INTO agent_runs (job_id, workflow, attempt, status, input, error, finished_at)"
        " VALUES (%(job)s, 'pt4', 3, 'failed', '{\"client\": \"Acme\"}',"
        ' \'{"type": "PermanentError", "message": "no"}\', now())',
        {"job": failed},
    )
    await execute(
        orch,
        "INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now() - interval '1 hour')",
    )
    seen: list[Alert] = []

    async def record(alert: Alert, settings: Settings) -> None:
        seen.append(alert)

    async def broken(alert: Alert, settings: Settings) -> None:
        raise RuntimeError("hook down")

    settings = orch.settings.model_copy(update={"dashboard_url": "https://console.example"})
    first = await sweep(orch.pool, settings, [broken, record])
    again = await sweep(orch.pool, settings, [record])

    kinds = sorted(a.kind for a in first)
    assert kinds == ["job_failed", "worker_stalled"], first
    assert again == [] and len(seen) == 2
    [job_alert] = [a for a in seen if a.kind == "job_failed"]
    assert job_alert.job_id == failed and job_alert.link == f"https://console.example/jobs/{failed}"
    assert job_alert.error_type == "PermanentError"


def test_alert_text_names_client_month_error_and_link() -> None:
    alert = Alert(
        "job_failed",
        "7",
        "pt4 job 12 failed for good (attempt 3)",
        "pt4",
        12,
        3,
        {"client": "Acme", "month": "2027-03"},
        "EmailBisonError",
        "HTTP 401",
        "https://console.example/jobs/12",
    )
    text = alert_text(alert)
    for part in ("pt4 job 12", "client Acme, 2027-03", "EmailBisonError: HTTP 401", "/jobs/12"):
        assert part in text


async def test_slack_alert_posts_and_never_raises() -> None:
    from tests.fix_db import settings_for_tests

    posted: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        posted.append(request.content)
        return httpx.Response(500)

    alert = Alert("worker_stalled", "1", "worker #1 stopped sending heartbeats")
    # no webhook configured: logged only
    await slack_alert(alert, settings_for_tests())
    # a refused post is logged and swallowed
    from workflows import alerts as module
    from workflows.notify import SlackNotifier

    notifier = SlackNotifier(
        "https://hooks.example/T/B/x", module.logger, transport=httpx.MockTransport(handler)
    )
    assert await notifier.post(alert_text(alert)) is False
    assert posted and b"worker #1" in posted[0]
