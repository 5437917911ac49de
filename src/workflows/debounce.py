"""Debounce (debounce.io) email validation: is an address safe to send to?

PT2 keeps only rows with a "safe to send" email. Debounce validates one address per
``GET {base_url}?api=<key>&email=<address>``; the key must travel in the query string, so
this module takes care that it never reaches a message, a log line or a ``repr()``: errors
name only the path, and a filter on the ``httpx`` logger (see ``workflows._http``) replaces
the ``api`` parameter of logged URLs with ``REDACTED``.

Reading of the answer (``{"debounce": {...}, "success": "1"}``): an address is *safe* when
``debounce.result == "Safe to Send"`` or ``debounce.send_transactional == "1"``, as the
pipeline's brief asks. Note that Debounce sets ``send_transactional`` for some addresses it
rates "Risky"/"Unknown" (accept-all domains, role accounts), so this is the more permissive
reading. ``success == "0"`` (bad key, no credits, malformed request) is a permanent error.

Errors are ``PermanentError``/``RetryableError`` subclasses. Inside a call, 408/429/5xx,
timeouts and connection errors are retried ``max_retries`` times with exponential backoff
(honouring ``Retry-After``, capped at ``max_retry_sleep``); a GET is always safe to repeat.

``rate_limit`` (PT2 passes the account's shared limit, see :mod:`workflows.limits`) is asked
before every request and told of every 429, so all workers checking emails together stay
within the account's rate and a 429 holds them all back.

>>> async with DebounceClient(api_key) as debounce:                      # doctest: +SKIP
...     verdicts = await debounce.validate_many(emails, concurrency=8)
...     keep = [e for e in emails if verdicts[e]]
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self

import httpx

from orchestrator import PermanentError, RetryableError, WorkflowError
from workflows._http import (
    EventHooks,
    Pacer,
    backoff_delay,
    excerpt,
    is_retryable_status,
    parse_retry_after,
    redact_url_in_logs,
    send_gate,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "DebounceClient",
    "DebounceError",
    "DebouncePermanentError",
    "DebounceRetryableError",
]

logger = logging.getLogger("workflows.debounce")

DEFAULT_BASE_URL = "https://api.debounce.io/v1/"
_SAFE_RESULT = "Safe to Send"


class DebounceError(WorkflowError):
    """The Debounce call failed; ``status_code`` is ``None`` when no answer arrived."""

    status_code: int | None = None


class DebouncePermanentError(DebounceError, PermanentError):
    """Debounce refused the request (bad key, no credits, 4xx); retrying will not help."""

    def __init__(self, message: str | None = None, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class DebounceRetryableError(DebounceError, RetryableError):
    """Debounce did not answer usefully this time (408/429/5xx, timeout, broken body)."""

    def __init__(
        self,
        message: str | None = None,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status_code = status_code


class DebounceClient:
    """Validates emails with Debounce; each distinct address is checked once per client.

    The cache is keyed by the trimmed, lower-cased address and lives as long as the client.
    """

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        max_retries: int = 3,
        backoff_base: float = 0.5,
        max_retry_sleep: float = 30.0,
        event_hooks: EventHooks | None = None,
        rate_limit: Pacer | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty (without one only syntax checks exist)")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        redact_url_in_logs()
        self._api_key = api_key
        self._url = httpx.URL(base_url)
        self._max_retries = max_retries
        self._backoff_base = backoff_base
        self._max_retry_sleep = max_retry_sleep
        self._cache: dict[str, bool] = {}
        self._limit = rate_limit
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            transport=transport,
            follow_redirects=False,
            event_hooks=event_hooks,
        )

    def __repr__(self) -> str:
        return f"DebounceClient(base_url={str(self._url)!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def validate(self, email: str) -> bool:
        """Whether ``email`` is safe to send to (cached)."""
        key = email.strip().lower()
        if key not in self._cache:
            self._cache[key] = await self._check(email.strip())
        return self._cache[key]

    async def validate_many(self, emails: Iterable[str], concurrency: int = 4) -> dict[str, bool]:
        """Validate many emails with at most ``concurrency`` requests in flight.

        Returns ``{email: safe}`` keyed by the emails as given. On the first error the other
        checks are cancelled and that error is raised; verdicts obtained so far stay cached,
        so calling again resumes where it stopped.
        """
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        given = list(emails)
        pending: dict[str, str] = {}  # cache key -> the first spelling given
        for email in given:
            key = email.strip().lower()
            if key not in self._cache:
                pending.setdefault(key, email.strip())
        gate = asyncio.Semaphore(concurrency)

        async def one(address: str) -> None:
            async with gate:
                await self.validate(address)

        try:
            async with asyncio.TaskGroup() as group:
                for address in pending.values():
                    group.create_task(one(address))
        except ExceptionGroup as failures:
            first = failures.exceptions[0]
            while isinstance(first, ExceptionGroup):
                first = first.exceptions[0]
            raise first from None
        return {email: self._cache[email.strip().lower()] for email in given}

    async def _check(self, email: str) -> bool:
        attempt = 0
        while True:
            error = await self._attempt(email)
            if isinstance(error, bool):
                return error
            delay = error.retry_after
            if delay is None:
                delay = backoff_delay(attempt, base=self._backoff_base, cap=self._max_retry_sleep)
            throttled = error.status_code == 429 and self._limit is not None
            if throttled:
                assert self._limit is not None
                await self._limit.throttled(delay)  # every checker waits, not only this one
            if attempt >= self._max_retries or delay > self._max_retry_sleep:
                raise error
            attempt += 1
            logger.info(
                "Debounce: %s; retry %d/%d in %.2fs", error, attempt, self._max_retries, delay
            )
            if not throttled:  # after a 429 the limit's next grant waits for the block
                await asyncio.sleep(delay)

    async def _attempt(self, email: str) -> bool | DebounceRetryableError:
        """One request: the verdict, or the retryable error to retry (others are raised)."""
        path = self._url.path
        if self._limit is not None:
            await self._limit.acquire()
        try:
            response = await self._http.get(
                self._url,
                params={"api": self._api_key, "email": email},
                extensions=send_gate(self._limit),
            )
        except httpx.TimeoutException as exc:
            return DebounceRetryableError(f"GET {path}: no answer in time ({type(exc).__name__})")
        except httpx.TransportError as exc:
            return DebounceRetryableError(f"GET {path}: connection failed ({type(exc).__name__})")
        if is_retryable_status(response.status_code):
            return DebounceRetryableError(
                f"GET {path}: HTTP {response.status_code}: "
                f"{excerpt(response.text, [self._api_key])!r}",
                status_code=response.status_code,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        try:
            return self._verdict(path, response)
        except DebounceRetryableError as exc:  # a broken body: worth another request
            return exc

    def _verdict(self, path: str, response: httpx.Response) -> bool:
        status = response.status_code
        quoted = excerpt(response.text, [self._api_key])
        if not 200 <= status < 300:
            raise DebouncePermanentError(
                f"GET {path}: HTTP {status}: {quoted!r}", status_code=status
            )
        try:
            body: Any = response.json()
        except ValueError:
            raise DebounceRetryableError(
                f"GET {path}: HTTP {status} with a body that is not JSON: {quoted!r}",
                status_code=status,
            ) from None
        result = body.get("debounce") if isinstance(body, dict) else None
        if not isinstance(result, dict) or str(body.get("success", "1")) == "0":
            raise DebouncePermanentError(
                f"GET {path}: Debounce reported failure: {quoted!r}", status_code=status
            )
        return result.get("result") == _SAFE_RESULT or str(result.get("send_transactional")) == "1"
