"""Rows into a Clay table through its webhook.

A Clay webhook takes one JSON object per POST (optionally authenticated by the
``x-clay-webhook-auth`` header), about 10 rows a second per workspace, and at most 50,000
submissions over its lifetime. :meth:`ClayWebhook.push_rows` paces the POSTs and stops at the
first failure, raising an error whose ``rows_sent`` says how many rows Clay accepted, so the
caller can resume with ``rows[exc.rows_sent:]`` (a POST is not idempotent: each one adds a row).

Inside a call only 429 is retried (the row was not taken), up to ``retries_on_429`` times,
waiting for ``Retry-After`` (else 1 s, 2 s, ...) unless that exceeds ``max_retry_sleep``.
Any 2xx counts as accepted; Clay's body is not read. The webhook URL and the token are
secrets: messages say "Clay webhook" and never include either.

>>> webhook = ClayWebhook(url, auth_token=token)                        # doctest: +SKIP
>>> sent = await webhook.push_rows(rows, rows_per_second=10.0)          # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence

import httpx

from orchestrator import PermanentError, RetryableError, WorkflowError
from workflows._http import (
    EventHooks,
    RateLimiter,
    backoff_delay,
    excerpt,
    is_retryable_status,
    parse_retry_after,
    redact_url_in_logs,
    url_secrets,
)

__all__ = [
    "MAX_ROWS_PER_WEBHOOK",
    "ClayError",
    "ClayPermanentError",
    "ClayRetryableError",
    "ClayWebhook",
]

logger = logging.getLogger("workflows.clay")

#: Clay accepts at most this many submissions per webhook.
MAX_ROWS_PER_WEBHOOK = 50_000


class ClayError(WorkflowError):
    """Pushing rows to Clay failed after ``rows_sent`` rows were accepted."""

    status_code: int | None = None
    rows_sent: int = 0


class ClayPermanentError(ClayError, PermanentError):
    """Clay refused a row (4xx other than 408/429); sending it again will not help."""

    def __init__(
        self, message: str | None = None, *, status_code: int | None = None, rows_sent: int = 0
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.rows_sent = rows_sent


class ClayRetryableError(ClayError, RetryableError):
    """Clay did not take a row this time (408/429/5xx, timeout, connection error)."""

    def __init__(
        self,
        message: str | None = None,
        *,
        status_code: int | None = None,
        rows_sent: int = 0,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status_code = status_code
        self.rows_sent = rows_sent


class ClayWebhook:
    """One Clay table's webhook."""

    def __init__(
        self,
        url: str,
        auth_token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        retries_on_429: int = 3,
        max_retry_sleep: float = 30.0,
        event_hooks: EventHooks | None = None,
    ) -> None:
        if not url:
            raise ValueError("the Clay webhook URL must not be empty")
        redact_url_in_logs(url)
        self._url = url
        self._headers = {"Content-Type": "application/json"}
        self._secrets = url_secrets(url)
        if auth_token:
            self._headers["x-clay-webhook-auth"] = auth_token
            self._secrets.append(auth_token)
        self._timeout = timeout
        self._transport = transport
        self._retries_on_429 = retries_on_429
        self._max_retry_sleep = max_retry_sleep
        self._event_hooks = event_hooks

    def __repr__(self) -> str:
        return "ClayWebhook(<url redacted>)"

    async def push_rows(
        self, rows: Sequence[Mapping[str, object]], rows_per_second: float = 10.0
    ) -> int:
        """POST each row as one JSON object, at most ``rows_per_second``; returns rows sent.

        Values JSON cannot encode (dates, decimals) are sent as their ``str()``.
        """
        if len(rows) > MAX_ROWS_PER_WEBHOOK:
            raise ValueError(
                f"a Clay webhook accepts at most {MAX_ROWS_PER_WEBHOOK} rows, got {len(rows)}"
            )
        limiter = RateLimiter(rows_per_second)
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(self._timeout),
            transport=self._transport,
            headers=self._headers,
            follow_redirects=False,
            event_hooks=self._event_hooks,
        ) as client:
            for sent, row in enumerate(rows):
                body = json.dumps(dict(row), default=str, ensure_ascii=False).encode()
                await self._post(client, limiter, body, sent)
        return len(rows)

    async def _post(
        self, client: httpx.AsyncClient, limiter: RateLimiter, body: bytes, sent: int
    ) -> None:
        attempt = 0
        while True:
            await limiter.wait()
            try:
                response = await client.post(self._url, content=body)
            except httpx.TimeoutException as exc:
                raise ClayRetryableError(
                    f"Clay webhook POST: no answer in time ({type(exc).__name__}) "
                    f"after {sent} row(s)",
                    rows_sent=sent,
                ) from None
            except httpx.TransportError as exc:
                raise ClayRetryableError(
                    f"Clay webhook POST: connection failed ({type(exc).__name__}) "
                    f"after {sent} row(s)",
                    rows_sent=sent,
                ) from None
            status = response.status_code
            if 200 <= status < 300:
                return
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if status == 429 and attempt < self._retries_on_429:
                delay = retry_after
                if delay is None:
                    delay = backoff_delay(attempt, base=1.0, cap=self._max_retry_sleep)
                if delay <= self._max_retry_sleep:
                    attempt += 1
                    logger.info("Clay webhook: rate limited, retry %d in %.2fs", attempt, delay)
                    await asyncio.sleep(delay)
                    continue
            message = (
                f"Clay webhook POST: HTTP {status} after {sent} row(s): "
                f"{excerpt(response.text, self._secrets)!r}"
            )
            if is_retryable_status(status):
                raise ClayRetryableError(
                    message, status_code=status, rows_sent=sent, retry_after=retry_after
                )
            raise ClayPermanentError(message, status_code=status, rows_sent=sent)
