"""Alerts to Slack: the engine's alert sweep calls :func:`slack_alert` (``ALERT_HOOKS``).

The message names the client, the month (or upload date), the workflow, the error and a link
to the job in the console when ``ORCHESTRATOR_DASHBOARD_URL`` is set. Posting goes through
:class:`~workflows.notify.SlackNotifier`, which never raises: a failed post is logged only.
"""

from __future__ import annotations

import logging

from orchestrator import Alert, Settings
from workflows.notify import SlackNotifier
from workflows.settings import pipeline_settings

logger = logging.getLogger("workflows.alerts")


def console_link(settings: Settings, path: str) -> str | None:
    """``path`` on the console (``/jobs/12``), when ``ORCHESTRATOR_DASHBOARD_URL`` is set.

    >>> console_link(Settings(dashboard_url="https://ops.example/console/"), "/jobs/12")
    'https://ops.example/console/jobs/12'
    """
    base = settings.dashboard_url
    return None if not base else f"{base.rstrip('/')}/{path.lstrip('/')}"


def alert_text(alert: Alert) -> str:
    parts = [f"ALERT: {alert.summary}"]
    client = alert.payload.get("client")
    when = alert.payload.get("month") or alert.payload.get("upload_date")
    if client:
        parts.append(f"client {client}" + (f", {when}" if when else ""))
    if alert.error_type:
        parts.append(f"{alert.error_type}: {(alert.error_message or '')[:300]}")
    if alert.link:
        parts.append(alert.link)
    return " — ".join(parts)


async def slack_alert(alert: Alert, settings: Settings) -> None:
    url = pipeline_settings(settings).slack_webhook_url
    notifier = SlackNotifier(url.get_secret_value() if url is not None else None, logger)
    await notifier.post(alert_text(alert))
