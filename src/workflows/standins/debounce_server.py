"""LOCAL STAND-IN for Debounce's single-email validation API, for tests and benchmarks only.

Not Debounce: it answers ``GET /v1/?api=<key>&email=<address>`` over real HTTP on 127.0.0.1
the way :class:`workflows.debounce.DebounceClient` reads Debounce, so the real client (and
PT2's use of it) runs with its timeouts, retries and the shared rate limit. Standard library
only. Verdicts are made up from the address: a local part starting with ``risky`` is "Risky"
(not safe), one starting with ``bad`` is "Invalid", anything else "Safe to Send". A wrong key
gives Debounce's ``success: "0"`` answer.

Like a provider it can be slow and strict: above ``rate_limit_per_second`` (a token bucket of
burst ``max(1, rate)``, taken from as a request arrives) a 429 at once with a fractional
``Retry-After``, and ``latency`` seconds before every other answer. It counts requests, 429s
and the most requests it held at once::

    with LocalDebounce("debounce-key", latency=0.3, rate_limit_per_second=10) as debounce:
        async with DebounceClient("debounce-key", base_url=debounce.url) as client:
            assert await client.validate("ann@example.com")
        assert debounce.throttled == 0
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from workflows.standins.loopback import LoopbackServer, ProviderBucket

__all__ = ["LocalDebounce"]


class LocalDebounce(LoopbackServer):
    """A local Debounce stand-in on ``127.0.0.1`` (see the module docstring)."""

    thread_name = "local-debounce"

    def __init__(
        self,
        api_key: str,
        *,
        latency: float = 0.0,
        rate_limit_per_second: float | None = None,
        port: int = 0,
    ) -> None:
        super().__init__(port)
        self.api_key = api_key
        self.latency = max(0.0, latency)
        self.rate = rate_limit_per_second
        self._bucket = (
            None if rate_limit_per_second is None else ProviderBucket(rate_limit_per_second)
        )
        self._lock = threading.Lock()
        #: Answers given, by status; the checked addresses (200s only), in order.
        self.statuses: dict[int, int] = {}
        self.checked: list[str] = []
        self._in_flight = 0
        self.most_in_flight = 0
        #: ``time.monotonic()`` of the first request's arrival and of the last answer.
        self.first_request_at = 0.0
        self.last_answer_at = 0.0

    @property
    def throttled(self) -> int:
        """429s answered so far."""
        with self._lock:
            return self.statuses.get(429, 0)

    @property
    def requests(self) -> int:
        with self._lock:
            return sum(self.statuses.values())

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(_Handler):
            debounce = owner

        return Handler

    def url_for(self, host: str, port: int) -> str:
        return f"http://{host}:{port}/v1/"

    @property
    def url(self) -> str:
        """The base URL (``http://127.0.0.1:N/v1/``); empty until started."""
        return self._url

    def answer(self, path: str) -> tuple[int, dict[str, Any], float | None]:
        """(status, body, Retry-After) for one request; counted."""
        with self._lock:
            self._in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self._in_flight)
            if not self.first_request_at:
                self.first_request_at = time.monotonic()
        try:
            with self._lock:
                retry_after = None if self._bucket is None else self._bucket.take()
            if retry_after is not None:
                status, body = 429, {"message": "Too Many Requests"}
            else:
                if self.latency:
                    self._stopping.wait(self.latency)
                status, body, retry_after = self._decide(path)
        finally:
            with self._lock:
                self._in_flight -= 1
                self.statuses[status] = self.statuses.get(status, 0) + 1
                self.last_answer_at = time.monotonic()
        return status, body, retry_after

    def _decide(self, path: str) -> tuple[int, dict[str, Any], float | None]:
        split = urlsplit(path)
        if split.path.rstrip("/") != "/v1":
            return 404, {"message": "not found"}, None
        query = dict(parse_qsl(split.query))
        if query.get("api") != self.api_key:
            return 200, {"success": "0", "debounce": {"error": "Wrong API key"}}, None
        email = query.get("email", "")
        local = email.split("@", 1)[0].lower()
        if local.startswith("risky"):
            result, code, transactional = "Risky", "4", "0"
        elif local.startswith("bad"):
            result, code, transactional = "Invalid", "6", "0"
        else:
            result, code, transactional = "Safe to Send", "5", "1"
        with self._lock:
            self.checked.append(email)
        return (
            200,
            {
                "debounce": {
                    "email": email,
                    "code": code,
                    "result": result,
                    "send_transactional": transactional,
                },
                "success": "1",
            },
            None,
        )


class _Handler(BaseHTTPRequestHandler):
    debounce: LocalDebounce
    server_version = "LocalDebounce/1.0"

    def do_GET(self) -> None:
        status, body, retry_after = self.debounce.answer(self.path)
        raw = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            if retry_after is not None:
                self.send_header("Retry-After", f"{retry_after:g}")
            self.end_headers()
            self.wfile.write(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the query string carries the key: never logged
