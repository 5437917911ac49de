"""LOCAL STAND-IN for the EmailBison API, for the tests and the demo only.

This is not EmailBison and is never used unless asked for explicitly (a test fixture, or the
demo pointing ``base_url`` at it). It serves, over real HTTP on 127.0.0.1, the handful of routes
the pipeline calls, from in-memory state, so the real :class:`EmailBisonClient` can be exercised
with its timeouts, retries and status codes. Standard library only.

What it enforces, following EmailBison's public docs where they speak:

- ``Authorization: Bearer <key>``; a missing or unknown key is a 401. Each key is its own
  workspace; another workspace's campaign id answers 404 ``Record not found``, as a
  workspace-scoped query would (the docs allow 403 too; 404 was chosen).
- Leads unique per workspace by email (case-insensitive); re-sending an email updates the lead
  and keeps its id. More than 500 leads, a malformed email, or a custom variable that was not
  created first give a 422 with Laravel ``errors`` keyed ``leads.{i}.{field}``; a 422 writes
  nothing. Within one request, a repeated email updates the same lead.
- Campaign search (case-insensitive substring) paginated 15 per page with ``data/links/meta``;
  attaching an unknown lead id is a 422 keyed ``lead_ids.{i}``; attaching twice is a no-op.
- Unknown path: 404 ``{"message": "Record not found"}``; known path, wrong method: 405.

Faults for tests (thread-safe; checked in this order, before routing):
``rate_limit_per_second`` answers 429 at once, with a (fractional) ``Retry-After``, when its
token bucket is empty as the request arrives (:attr:`throttled` counts the 429s);
``slow_seconds`` delays every other answer (``latency=`` when built: a provider's answer time,
for benchmarks); ``fail_next(...)`` answers a canned status/body;
``broken_json_next(n)`` answers 200 with truncated JSON; ``slow_answer_next(seconds, ...)``
carries a request out and then holds its answer back (a client timeout on a request the server
did store). Every request is recorded as (method, path, query, status), with its arrival time,
the attempt that sent it (``X-Orchestrator-Run``), the emails of a lead upsert and the name of a
rename; ``on_answered`` (if set) is called with each record once the answer is written. The
Authorization header is never recorded or logged. ::

    with LocalEmailBison() as bison:
        bison.add_workspace("test-key")
        campaign_id = bison.add_campaign("test-key", "Evergreen, Last Upload: March 1-7")
        bison.fail_next(429, retry_after=0.5)       # the next request is rate limited
        async with EmailBisonClient(bison.base_url, "test-key") as client:
            ...
        assert bison.request_count(status=429) == 1

Run it standalone for the demo::

    python -m workflows.standins.emailbison_server --port 8025 --api-key demo-key \\
        --campaign "Evergreen, Last Upload: March 1-7"
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from types import FrameType
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlsplit

import orjson

from workflows.standins._emailbison_api import ApiRequest, LocalApi, Workspace
from workflows.standins.loopback import LoopbackServer, ProviderBucket

__all__ = ["LocalEmailBison", "RequestRecord", "Workspace", "main"]

logger = logging.getLogger("workflows.standins.emailbison_server")

_BROKEN_JSON = b'{"data": [{"id": 1, "email": "trunc'


@dataclass(frozen=True)
class RequestRecord:
    """One answered request, for assertions. No secret header is kept."""

    method: str
    path: str
    query: str
    status: int
    #: ``time.time()`` when the request arrived.
    received_at: float = 0.0
    #: The ``X-Orchestrator-Run`` header: the attempt (agent_runs id) that sent it.
    run_id: int | None = None
    #: Lower-cased emails of a lead upsert, in request order.
    emails: tuple[str, ...] = ()
    #: The new name of a campaign rename.
    name: str | None = None


@dataclass
class _Fault:
    status: int
    remaining: int
    retry_after: float | None
    body: str | None
    path_contains: str | None


@dataclass
class _LateAnswer:
    seconds: float
    remaining: int
    path_contains: str | None


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    content_type: str = "application/json"
    retry_after: float | None = None


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:.3f}"


class LocalEmailBison(LoopbackServer):
    """A local EmailBison stand-in on ``127.0.0.1`` (see the module docstring)."""

    thread_name = "local-emailbison"

    def __init__(
        self,
        *,
        port: int = 0,
        latency: float = 0.0,
        rate_limit_per_second: float | None = None,
    ) -> None:
        """``latency``: seconds before every answer (:attr:`slow_seconds`), as a real
        provider's ~300 ms; ``rate_limit_per_second``: its 429 limiter (see the property)."""
        super().__init__(port)
        self.api = LocalApi()
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._late: list[_LateAnswer] = []
        #: Called (in the server's thread) with each record once its answer is written.
        self.on_answered: Callable[[RequestRecord], None] | None = None
        self._broken_json = 0
        self._slow_seconds = 0.0
        self._bucket: ProviderBucket | None = None
        self._log: list[RequestRecord] = []
        self._cut: list[RequestRecord] = []
        self.slow_seconds = latency
        self.rate_limit_per_second = rate_limit_per_second

    # -- lifecycle --------------------------------------------------------------------------

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(_Handler):
            bison = owner

        return Handler

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("LocalEmailBison is not running; call start()")
        return self._url

    # -- state ------------------------------------------------------------------------------

    def add_workspace(self, api_key: str) -> Workspace:
        """The workspace of ``api_key``, created empty if new."""
        return self.api.add_workspace(api_key)

    def add_campaign(self, api_key: str, name: str, status: str = "active") -> int:
        """Create a campaign in ``api_key``'s workspace; returns its id."""
        return self.api.add_campaign(api_key, name, status)

    def add_custom_variable(self, api_key: str, name: str) -> None:
        self.api.add_custom_variable(api_key, name)

    def leads(self, api_key: str) -> list[dict[str, Any]]:
        """A snapshot of the workspace's leads as the API would show them."""
        with self.api.lock:
            return [lead.as_json() for lead in self.api.workspace(api_key).leads.values()]

    def campaign(self, api_key: str, campaign_id: int) -> dict[str, Any]:
        with self.api.lock:
            return self.api.workspace(api_key).campaigns[campaign_id].as_json()

    def attached_lead_ids(self, api_key: str, campaign_id: int) -> list[int]:
        with self.api.lock:
            return list(self.api.workspace(api_key).campaigns[campaign_id].lead_ids)

    # -- faults -----------------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        count: int = 1,
        retry_after: float | None = None,
        body: str | None = None,
        path_contains: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests (whose path contains ``path_contains``, if given)
        with ``status``, an optional ``Retry-After`` and ``body`` (default: a JSON message;
        a body starting with ``<`` is sent as HTML). Faults queue up in call order."""
        with self._lock:
            self._faults.append(_Fault(status, count, retry_after, body, path_contains))

    def slow_answer_next(
        self, seconds: float, count: int = 1, path_contains: str | None = None
    ) -> None:
        """Carry out the next ``count`` requests (whose path contains ``path_contains``) and
        hold their answers back ``seconds``: the work is done even if the client gave up."""
        with self._lock:
            self._late.append(_LateAnswer(seconds, count, path_contains))

    def broken_json_next(self, count: int = 1) -> None:
        """Answer the next ``count`` requests with 200 and a truncated JSON body."""
        with self._lock:
            self._broken_json += count

    @property
    def slow_seconds(self) -> float:
        """Delay before every answer (0 = none); interrupted by :meth:`stop`."""
        with self._lock:
            return self._slow_seconds

    @slow_seconds.setter
    def slow_seconds(self, value: float) -> None:
        with self._lock:
            self._slow_seconds = max(0.0, value)

    @property
    def rate_limit_per_second(self) -> float | None:
        """Token bucket (burst = max(1, rate)), taken from as a request arrives; ``None``
        disables it. Setting it refills the bucket."""
        with self._lock:
            return None if self._bucket is None else self._bucket.rate

    @rate_limit_per_second.setter
    def rate_limit_per_second(self, value: float | None) -> None:
        bucket = None if value is None else ProviderBucket(value)
        with self._lock:
            self._bucket = bucket

    def clear_faults(self) -> None:
        """Drop queued faults and switch off delays and rate limiting."""
        with self._lock:
            self._faults.clear()
            self._late.clear()
            self._broken_json = 0
            self._slow_seconds = 0.0
            self._bucket = None

    # -- request log ------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the request log, oldest first."""
        with self._lock:
            return list(self._log)

    def request_count(
        self, method: str | None = None, path_contains: str | None = None, status: int | None = None
    ) -> int:
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method)
            and (path_contains is None or path_contains in r.path)
            and (status is None or r.status == status)
        )

    @property
    def throttled(self) -> int:
        """429s answered so far (the rate limiter's and injected ones)."""
        return self.request_count(status=429)

    @property
    def cut_requests(self) -> list[RequestRecord]:
        """Requests whose client was gone before the answer could be written (cut mid-flight:
        the work may be done, the client never learned it)."""
        with self._lock:
            return list(self._cut)

    def reset_log(self) -> None:
        with self._lock:
            self._log.clear()
            self._cut.clear()

    # -- answering (called from the handler threads) ---------------------------------------

    def _arrived(self) -> tuple[float, float | None]:
        """A request's line and headers are in: when (``time.time()``), and the rate limit's
        ``Retry-After`` if it is refused. Taken before the body is read and parsed, which cost
        this process milliseconds a request (more when its CPU is short): a provider counts a
        request when it arrives, not when it has got round to reading it."""
        received_at = time.time()
        with self._lock:
            retry_after = None if self._bucket is None else self._bucket.take()
        return received_at, retry_after

    def _answer(
        self,
        method: str,
        target: str,
        raw: bytes,
        authorization: str | None,
        run_header: str | None = None,
        *,
        arrival: tuple[float, float | None],
    ) -> tuple[_Answer, RequestRecord]:
        received_at, retry_after = arrival
        split = urlsplit(target)
        try:
            body = orjson.loads(raw) if raw.strip() else None
        except ValueError:
            body = _MALFORMED
        answer = self._injected(split.path, retry_after) or self._api_answer(
            method, split, body, authorization
        )
        emails, name = _request_detail(split.path, body)
        record = RequestRecord(
            method,
            split.path,
            split.query,
            answer.status,
            received_at=received_at,
            run_id=int(run_header) if run_header and run_header.isdigit() else None,
            emails=emails,
            name=name,
        )
        with self._lock:
            self._log.append(record)
            late = next(
                (
                    fault
                    for fault in self._late
                    if fault.path_contains is None or fault.path_contains in split.path
                ),
                None,
            )
            if late is not None:
                late.remaining -= 1
                if late.remaining <= 0:
                    self._late.remove(late)
        if late is not None:
            self._stopping.wait(late.seconds)
        return answer, record

    def _injected(self, path: str, retry_after: float | None) -> _Answer | None:
        with self._lock:
            delay = self._slow_seconds
        if retry_after is not None:
            return _json_answer(429, {"message": "Too Many Attempts."}, retry_after=retry_after)
        if delay > 0:
            self._stopping.wait(delay)
        with self._lock:
            for fault in self._faults:
                if fault.path_contains is None or fault.path_contains in path:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return _fault_answer(fault)
            if self._broken_json > 0:
                self._broken_json -= 1
                return _Answer(200, _BROKEN_JSON)
        return None

    def _api_answer(
        self, method: str, split: SplitResult, body: object, authorization: str | None
    ) -> _Answer:
        if body is _MALFORMED:
            return _json_answer(400, {"message": "Malformed JSON body."})
        api_key = None
        if authorization is not None and authorization.startswith("Bearer "):
            api_key = authorization.removeprefix("Bearer ").strip()
        request = ApiRequest(
            method=method,
            path=split.path.rstrip("/") or "/",
            query=dict(parse_qsl(split.query)),
            body=body,
            api_key=api_key,
            base_url=self._url,
        )
        try:
            status, payload = self.api.dispatch(request)
        except Exception:
            logger.exception("local EmailBison failed on %s %s", method, split.path)
            return _json_answer(500, {"message": "Server Error"})
        return _json_answer(status, payload)


def _request_detail(path: str, body: object) -> tuple[tuple[str, ...], str | None]:
    """The emails of a lead upsert and the name of a rename, for the request log."""
    if not (path.endswith("/leads/create-or-update/multiple") or path.endswith("/update")):
        return (), None
    if not isinstance(body, dict):
        return (), None
    leads = body.get("leads")
    emails = tuple(
        str(lead.get("email", "")).strip().lower()
        for lead in (leads if isinstance(leads, list) else [])
        if isinstance(lead, dict)
    )
    name = body.get("name")
    return emails, name if isinstance(name, str) else None


#: The body of a request that is not JSON (parsed once, before the answer and the log).
_MALFORMED = object()


def _json_answer(status: int, payload: object, retry_after: float | None = None) -> _Answer:
    return _Answer(status, orjson.dumps(payload), retry_after=retry_after)


def _fault_answer(fault: _Fault) -> _Answer:
    if fault.body is None:
        try:
            phrase = HTTPStatus(fault.status).phrase
        except ValueError:
            phrase = "Error"
        return _json_answer(fault.status, {"message": phrase}, retry_after=fault.retry_after)
    kind = "text/html; charset=utf-8" if fault.body.lstrip().startswith("<") else "application/json"
    return _Answer(fault.status, fault.body.encode(), kind, fault.retry_after)


class _Handler(BaseHTTPRequestHandler):
    """Turns one HTTP request into a call of ``bison._answer``; one connection per request."""

    bison: LocalEmailBison
    server_version = "LocalEmailBison/1.0"

    def _serve(self) -> None:
        arrival = self.bison._arrived()
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        answer, record = self.bison._answer(
            self.command,
            self.path,
            raw,
            self.headers.get("Authorization"),
            self.headers.get("X-Orchestrator-Run"),
            arrival=arrival,
        )
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            if answer.retry_after is not None:
                self.send_header("Retry-After", _format_seconds(answer.retry_after))
            self.end_headers()
            self.wfile.write(answer.body)
        except (BrokenPipeError, ConnectionResetError):
            # the client gave up (e.g. its timeout fired while we were slow)
            with self.bison._lock:
                self.bison._cut.append(record)
        callback = self.bison.on_answered
        if callback is not None:
            callback(record)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        # The request line only: never headers (Authorization).
        logger.debug("local EmailBison: " + format, *args)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve a stand-in workspace until SIGTERM/SIGINT; prints the base URL first."""
    parser = argparse.ArgumentParser(
        prog="python -m workflows.standins.emailbison_server",
        description="LOCAL STAND-IN EmailBison server for tests and the demo (127.0.0.1 only).",
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = any free)")
    parser.add_argument("--api-key", required=True, help="the made-up key of the demo workspace")
    parser.add_argument("--campaign", action="append", default=[], help="campaign to create")
    parser.add_argument(
        "--custom-variable", action="append", default=[], help="custom variable to create"
    )
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds before every answer (e.g. 0.3)"
    )
    parser.add_argument(
        "--rate-limit", type=float, default=None, help="answer 429 above this many requests/s"
    )
    args = parser.parse_args(argv)
    bison = LocalEmailBison(
        port=args.port, latency=args.latency, rate_limit_per_second=args.rate_limit
    )
    bison.add_workspace(args.api_key)
    for name in args.campaign:
        bison.add_campaign(args.api_key, name)
    for name in args.custom_variable:
        bison.add_custom_variable(args.api_key, name)
    done = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    with bison:
        print(bison.base_url, flush=True)
        while not done.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
