"""Completion messages to Slack through an incoming webhook.

The team posts a line after each step (client, month or window, counts). A notification is a
courtesy, never a reason to fail or retry a job, so :meth:`SlackNotifier.post` never raises: it
returns whether Slack accepted the message. The webhook URL is a secret (anyone holding it can
post), so it is never logged, and ``repr()`` only says whether one is configured.

>>> notifier = SlackNotifier(None, logging.getLogger("workflows"))
>>> # await notifier.post("PT4 Acme: March 1st - 7th renewals, 1,234 leads uploaded")
>>> # -> logged at INFO, returns False (no webhook configured)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import httpx

from workflows._http import EventHooks, excerpt, redact_url_in_logs, url_secrets

if TYPE_CHECKING:
    from orchestrator import WorkflowContext

__all__ = ["SlackNotifier", "notify"]

Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]


class SlackNotifier:
    """Posts ``{"text": ...}`` to a Slack incoming webhook, or logs the text without one."""

    def __init__(
        self,
        webhook_url: str | None,
        logger: Logger,
        *,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        event_hooks: EventHooks | None = None,
    ) -> None:
        self._webhook_url = webhook_url or None
        if self._webhook_url is not None:
            redact_url_in_logs(self._webhook_url)
        self._logger = logger
        self._timeout = timeout
        self._transport = transport
        self._event_hooks = event_hooks

    def __repr__(self) -> str:
        state = "configured" if self._webhook_url else "not configured"
        return f"SlackNotifier(webhook {state})"

    async def post(self, text: str) -> bool:
        """Send ``text``; ``True`` when Slack answered 2xx, ``False`` otherwise (logged)."""
        if self._webhook_url is None:
            self._logger.info("Slack notification (no webhook configured): %s", text)
            return False
        try:
            async with httpx.AsyncClient(
                timeout=httpx.Timeout(self._timeout),
                transport=self._transport,
                follow_redirects=False,
                event_hooks=self._event_hooks,
            ) as client:
                response = await client.post(self._webhook_url, json={"text": text})
        except Exception as exc:  # a notification must never fail the job
            self._logger.warning("Slack notification failed: %s", type(exc).__name__)
            return False
        if not 200 <= response.status_code < 300:
            self._logger.warning(
                "Slack notification refused: HTTP %d %r",
                response.status_code,
                excerpt(response.text, url_secrets(self._webhook_url), limit=100),
            )
            return False
        return True


async def notify(ctx: WorkflowContext, text: str) -> bool:
    """Post a step's completion message with the run's settings and logger.

    Uses ``ORCHESTRATOR_SLACK_WEBHOOK_URL`` when set; otherwise the text is only logged.
    """
    from workflows.settings import pipeline_settings

    url = pipeline_settings(ctx.settings).slack_webhook_url
    notifier = SlackNotifier(
        url.get_secret_value() if url is not None else None,
        ctx.logger,
        event_hooks=ctx.http_hooks,
    )
    return await notifier.post(text)
