"""Small helpers shared by the HTTP edges (EmailBison, Debounce, Clay, Slack).

Private to :mod:`workflows`: the clients use these so that every edge reads ``Retry-After``,
paces requests and quotes response bodies the same way. Nothing here knows about a particular
service.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from orchestrator import RateLimit

#: httpx ``event_hooks``: the workflow context's (``ctx.http_hooks``) check the attempt's lease
#: before every request, so a fenced attempt sends nothing.
EventHooks = Mapping[str, list[Callable[..., Any]]]

#: How much of a response body an error message quotes.
EXCERPT_CHARS = 200

_WHITESPACE = re.compile(r"\s+")


def is_retryable_status(status: int) -> bool:
    """Whether another attempt may succeed: 408, 429 and every 5xx."""
    return status in (408, 429) or status >= 500


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, or ``None`` when absent or unreadable.

    Both forms of RFC 9110 are accepted: delay-seconds (fractions tolerated, since test servers
    use them) and an HTTP-date. Dates in the past and negative numbers give ``0.0``.

    >>> parse_retry_after("2")
    2.0
    >>> parse_retry_after("soon") is None
    True
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def excerpt(text: str, secrets: Iterable[str] = (), limit: int = EXCERPT_CHARS) -> str:
    """A one-line, bounded quote of ``text`` with every secret replaced by ``***``.

    Servers sometimes echo what they were sent; redacting here means an error message can
    quote a body without ever carrying an API key.
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    # Secrets are gone, so a prefix is safe to cut: collapsing whitespace in a whole large body
    # would cost milliseconds for a quote of ``limit`` characters.
    text = _WHITESPACE.sub(" ", text[: limit * 8]).strip()
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def url_secrets(url: str) -> list[str]:
    """The strings to redact for a webhook URL whose path is the secret: the URL itself and
    its path (servers tend to echo the path in error pages)."""
    secrets = [url]
    try:
        path = httpx.URL(url).path
    except httpx.InvalidURL:
        return secrets
    if path.strip("/"):
        secrets.append(path)
    return secrets


def backoff_delay(attempt: int, *, base: float, cap: float) -> float:
    """Exponential backoff without jitter: ``base * 2**attempt`` bounded by ``cap``."""
    return float(min(cap, base * (2**attempt)))


class Pacer(Protocol):
    """What a client asks before each request and tells after a 429.

    :class:`orchestrator.RateLimit` (``ctx.rate_limit``: shared by every worker through
    PostgreSQL) and :class:`RateLimiter` (this process only) are pacers.
    """

    async def acquire(self) -> float:
        """Return when the next request may go (the seconds waited)."""
        ...

    async def throttled(self, retry_after: float) -> float:
        """The provider answered 429: hold every request back for ``retry_after`` seconds."""
        ...


def send_gate(pacer: Pacer | None) -> dict[str, Any]:
    """The request ``extensions`` that have the worker's request hook (``ctx.http_hooks``)
    space a request on ``pacer`` as it leaves, after its lease check: a shared
    :class:`orchestrator.RateLimit` only (see :meth:`~orchestrator.RateLimit.before_send`).

    >>> send_gate(None)
    {}
    """
    if isinstance(pacer, RateLimit):
        return {RateLimit.SEND_GATE: pacer.before_send}
    return {}


def instance_origin(url: str) -> str:
    """``scheme://host[:port]`` of a provider URL, lower-cased: the instance a shared limit
    is keyed by (two workspaces of one EmailBison server share its rate).

    >>> instance_origin("HTTPS://Bison.Example:8443/api/")
    'https://bison.example:8443'
    """
    parts = urlsplit(url.strip())
    if not parts.scheme or not parts.hostname:
        raise ValueError(
            f"not an absolute URL: expected https://host, got {excerpt(url, limit=60)!r}"
        )
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme.lower()}://{host}{port}"


class RateLimiter:
    """Spaces calls at least ``1 / per_second`` seconds apart (no bursts), in one process.

    A plain interval rather than a token bucket: uploads are long, steady streams, and an even
    pace is what a provider's limiter likes best. Safe to share between tasks of one event loop.
    A limit shared by several processes is :class:`orchestrator.RateLimit` instead.

    >>> limiter = RateLimiter(10.0)   # at most ten calls a second
    >>> # await limiter.wait()  before each request
    """

    def __init__(self, per_second: float) -> None:
        if not per_second > 0 or math.isinf(per_second):
            raise ValueError("per_second must be a positive, finite number")
        self.interval = 1.0 / per_second
        self._next_at = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        """Return when the next call may start."""
        async with self._lock:
            now = time.monotonic()
            delay = self._next_at - now
            if delay > 0:
                await asyncio.sleep(delay)
                now = time.monotonic()
            self._next_at = max(now, self._next_at) + self.interval

    async def acquire(self) -> float:
        """:meth:`wait`, as a :class:`Pacer`."""
        started = time.monotonic()
        await self.wait()
        return time.monotonic() - started

    async def throttled(self, retry_after: float) -> float:
        """No call of this limiter before ``retry_after`` seconds from now."""
        self._next_at = max(self._next_at, time.monotonic() + max(0.0, retry_after))
        return max(0.0, retry_after)


class _RedactingFilter(logging.Filter):
    """Keeps secrets out of httpx's own ``HTTP Request: <method> <url> ...`` INFO lines.

    Two kinds of URL carry secrets here: any URL with an ``api`` query parameter (Debounce's
    key) and webhook URLs registered with :func:`redact_url_in_logs` (Slack, Clay), whose path
    is the secret. Such URLs are logged as ``scheme://host/<redacted>`` or with ``api=REDACTED``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._secret_urls: set[str] = set()
        self._lock = threading.Lock()

    def add(self, url: str) -> None:
        try:
            normalized = str(httpx.URL(url))
        except httpx.InvalidURL:
            normalized = url
        with self._lock:
            self._secret_urls.add(_without_query(normalized))

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._redact(arg) for arg in record.args)
        return True

    def _redact(self, arg: object) -> object:
        if not isinstance(arg, httpx.URL):
            return arg
        with self._lock:
            secret = _without_query(str(arg)) in self._secret_urls
        if secret:
            return f"{arg.scheme}://{arg.netloc.decode('ascii')}/<redacted>"
        if "api" in arg.params:
            return arg.copy_set_param("api", "REDACTED")
        return arg


def _without_query(url: str) -> str:
    return url.split("?", 1)[0].split("#", 1)[0].rstrip("/")


_filter = _RedactingFilter()
_install_lock = threading.Lock()


def redact_url_in_logs(url: str | None = None) -> None:
    """Install the httpx log filter once; with ``url``, also treat that URL as a secret."""
    with _install_lock:
        httpx_logger = logging.getLogger("httpx")
        if _filter not in httpx_logger.filters:
            httpx_logger.addFilter(_filter)
    if url:
        _filter.add(url)
