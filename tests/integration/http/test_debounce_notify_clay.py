"""DebounceClient, SlackNotifier and ClayWebhook against tiny local HTTP servers."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

import pytest
from pydantic import SecretStr

from orchestrator._context import WorkflowContext
from orchestrator._errors import PermanentError, RetryableError
from workflows.clay import (
    MAX_ROWS_PER_WEBHOOK,
    ClayPermanentError,
    ClayRetryableError,
    ClayWebhook,
)
from workflows.debounce import DebounceClient, DebouncePermanentError, DebounceRetryableError
from workflows.notify import SlackNotifier, notify

DEBOUNCE_KEY = "debounce-key-5e1f0a77"
SLACK_PATH = "/services/T0001/B0002/slack-hook-secret-9d8c"
CLAY_PATH = "/hooks/clay-source-secret-4b2a"
CLAY_TOKEN = "clay-token-1a2b3c"


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int = 200
    body: str = "{}"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


Responder = Callable[[Seen, int], Reply]


class StubServer:
    """A ThreadingHTTPServer on 127.0.0.1 whose answers come from ``responder(request, n)``
    (``n`` counts requests from 0); records requests and the peak number in flight."""

    def __init__(self) -> None:
        self.responder: Responder = lambda seen, n: Reply()
        self.seen: list[Seen] = []
        self.peak_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                split = urlsplit(self.path)
                seen = Seen(
                    self.command,
                    split.path,
                    dict(parse_qsl(split.query)),
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length) if length else b"",
                )
                reply = stub.enter(seen)
                try:
                    if reply.delay:
                        stub._stopping.wait(reply.delay)
                    payload = reply.body.encode()
                    self.send_response(reply.status)
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    stub.leave()

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def enter(self, seen: Seen) -> Reply:
        with self._lock:
            number = len(self.seen)
            self.seen.append(seen)
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        return self.responder(seen, number)

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = StubServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def closed_port_url() -> str:
    server = StubServer()  # bound, never started: closing frees a port nobody listens on
    url = server.url
    server._server.server_close()
    return url


# -- Debounce -----------------------------------------------------------------------------


def debounce_answer(seen: Seen, _n: int) -> Reply:
    email = seen.query.get("email", "")
    local = email.split("@")[0]
    result, transactional = {
        "safe": ("Safe to Send", "1"),
        "risky": ("Risky", "1"),
        "bad": ("Invalid", "0"),
    }.get(local, ("Unknown", "0"))
    body = {
        "debounce": {"email": email, "result": result, "send_transactional": transactional},
        "success": "1",
    }
    return Reply(body=json.dumps(body), delay=0.05)


def debounce(stub: StubServer, **options: Any) -> DebounceClient:
    return DebounceClient(DEBOUNCE_KEY, base_url=f"{stub.url}/v1/", **options)


async def test_debounce_verdicts_and_request_shape(stub: StubServer) -> None:
    stub.responder = debounce_answer
    async with debounce(stub) as client:
        assert await client.validate("safe@example.com") is True
        assert await client.validate("risky@example.com") is True  # send_transactional == "1"
        assert await client.validate("bad@example.com") is False
        assert await client.validate("who@example.com") is False
    first = stub.seen[0]
    assert (first.method, first.path) == ("GET", "/v1/")
    assert first.query == {"api": DEBOUNCE_KEY, "email": "safe@example.com"}
    assert DEBOUNCE_KEY not in repr(client)


async def test_debounce_checks_each_email_once(stub: StubServer) -> None:
    stub.responder = debounce_answer
    emails = ["safe@example.com", " SAFE@example.com", "bad@example.com", "safe@example.com"]
    async with debounce(stub) as client:
        verdicts = await client.validate_many(emails)
        assert await client.validate("Safe@Example.com") is True
        again = await client.validate_many(["bad@example.com"])
    assert verdicts == {
        "safe@example.com": True,
        " SAFE@example.com": True,
        "bad@example.com": False,
    }
    assert again == {"bad@example.com": False}
    assert len(stub.seen) == 2


async def test_debounce_concurrency_is_bounded(stub: StubServer) -> None:
    stub.responder = debounce_answer
    emails = [f"safe{i}@example.com" for i in range(12)]
    async with debounce(stub) as client:
        verdicts = await client.validate_many(emails, concurrency=3)
    assert len(verdicts) == 12
    assert 2 <= stub.peak_in_flight <= 3
    with pytest.raises(ValueError, match="concurrency"):
        await client.validate_many(emails, concurrency=0)


async def test_debounce_retries_429_honouring_retry_after(stub: StubServer) -> None:
    def answer(seen: Seen, n: int) -> Reply:
        if n < 2:
            return Reply(429, '{"error": "slow down"}', {"Retry-After": "0.2"})
        return debounce_answer(seen, n)

    stub.responder = answer
    async with debounce(stub) as client:
        started = time.monotonic()
        assert await client.validate("safe@example.com") is True
    assert time.monotonic() - started >= 2 * 0.2 * 0.9
    assert len(stub.seen) == 3


async def test_debounce_gives_up_as_retryable(stub: StubServer) -> None:
    stub.responder = lambda seen, n: Reply(503, "<html>down</html>", {"Retry-After": "0"})
    async with debounce(stub, max_retries=2) as client:
        with pytest.raises(DebounceRetryableError) as caught:
            await client.validate_many(["a@example.com", "b@example.com"], concurrency=1)
    assert caught.value.status_code == 503
    assert isinstance(caught.value, RetryableError)
    assert len(stub.seen) == 3  # first email: 1 + 2 retries, then the batch stops


async def test_debounce_broken_body_and_failure_flag(stub: StubServer) -> None:
    stub.responder = lambda seen, n: Reply(200, '{"debounce": {"result": "Safe')
    async with debounce(stub, max_retries=0) as client:
        with pytest.raises(DebounceRetryableError, match="not JSON"):
            await client.validate("safe@example.com")
    stub.responder = lambda seen, n: Reply(
        200, '{"debounce": {"error": "Wrong API"}, "success": "0"}'
    )
    async with debounce(stub) as client:
        with pytest.raises(DebouncePermanentError, match="Wrong API"):
            await client.validate("safe@example.com")
    stub.responder = lambda seen, n: Reply(401, '{"error": "Unauthorized"}')
    async with debounce(stub) as client:
        with pytest.raises(DebouncePermanentError) as caught:
            await client.validate("safe@example.com")
    assert caught.value.status_code == 401
    assert isinstance(caught.value, PermanentError)


async def test_debounce_key_never_leaks(stub: StubServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    # a server that echoes the request line, key included
    stub.responder = lambda seen, n: Reply(500, f"failed: {seen.query}")
    async with debounce(stub, max_retries=1, backoff_base=0.01) as client:
        with pytest.raises(DebounceRetryableError) as failed:
            await client.validate("safe@example.com")
    async with DebounceClient(DEBOUNCE_KEY, base_url=closed_port_url(), max_retries=0) as client:
        with pytest.raises(DebounceRetryableError) as refused:
            await client.validate("safe@example.com")
    for error in (failed.value, refused.value):
        logging.getLogger("test").error("failure", exc_info=error)
        assert DEBOUNCE_KEY not in str(error)
        assert DEBOUNCE_KEY not in repr(error)
    assert "api=REDACTED" in caplog.text  # httpx logged the URL, redacted
    assert DEBOUNCE_KEY not in caplog.text


# -- Slack --------------------------------------------------------------------------------


async def test_slack_posts_text(stub: StubServer) -> None:
    stub.responder = lambda seen, n: Reply(200, "ok")
    notifier = SlackNotifier(stub.url + SLACK_PATH, logging.getLogger("test.slack"))
    assert await notifier.post("PT4 Acme: March 1st - 7th renewals, 120 leads") is True
    [seen] = stub.seen
    assert (seen.method, seen.path) == ("POST", SLACK_PATH)
    assert json.loads(seen.body) == {"text": "PT4 Acme: March 1st - 7th renewals, 120 leads"}
    assert SLACK_PATH not in repr(notifier)


async def test_slack_without_webhook_logs_instead(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    notifier = SlackNotifier(None, logging.getLogger("test.slack"))
    assert await notifier.post("PT1 done: 12,000 rows") is False
    assert "PT1 done: 12,000 rows" in caplog.text


async def test_slack_failures_are_swallowed_without_the_url(
    stub: StubServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    log = logging.getLogger("test.slack")
    stub.responder = lambda seen, n: Reply(500, f"no such hook {seen.path}")
    assert await SlackNotifier(stub.url + SLACK_PATH, log).post("hello") is False
    stub.responder = lambda seen, n: Reply(200, "ok", delay=1.0)
    assert await SlackNotifier(stub.url + SLACK_PATH, log, timeout=0.2).post("hello") is False
    assert await SlackNotifier(closed_port_url() + SLACK_PATH, log).post("hello") is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert "slack-hook-secret" not in caplog.text


async def test_notify_uses_the_run_settings_and_logger(
    stub: StubServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    adapter = logging.LoggerAdapter(logging.getLogger("test.run"), {"run_id": 7})

    def context(url: str | None) -> WorkflowContext:
        settings = SimpleNamespace(slack_webhook_url=SecretStr(url) if url else None)
        return cast(
            WorkflowContext, SimpleNamespace(settings=settings, logger=adapter, http_hooks={})
        )

    assert await notify(context(stub.url + SLACK_PATH), "PT5 done") is True
    assert json.loads(stub.seen[0].body) == {"text": "PT5 done"}
    assert await notify(context(None), "PT3 done") is False
    assert "PT3 done" in caplog.text


# -- Clay ---------------------------------------------------------------------------------


async def test_clay_pushes_one_json_row_per_request(stub: StubServer) -> None:
    rows: list[dict[str, object]] = [
        {"First_Name": "Ann", "Home_Value": Decimal("450000"), "Purchase": date(2023, 8, 3)},
        {"First_Name": "Bob", "Home_Value": 910000, "Purchase": None},
        {"First_Name": "Zoë", "Home_Value": 1, "Purchase": "08/03/2023"},
    ]
    webhook = ClayWebhook(stub.url + CLAY_PATH, auth_token=CLAY_TOKEN)
    started = time.monotonic()
    assert await webhook.push_rows(rows, rows_per_second=20.0) == 3
    assert time.monotonic() - started >= 2 / 20 * 0.9
    assert [json.loads(seen.body) for seen in stub.seen] == [
        {"First_Name": "Ann", "Home_Value": "450000", "Purchase": "2023-08-03"},
        {"First_Name": "Bob", "Home_Value": 910000, "Purchase": None},
        {"First_Name": "Zoë", "Home_Value": 1, "Purchase": "08/03/2023"},
    ]
    assert all(seen.headers["x-clay-webhook-auth"] == CLAY_TOKEN for seen in stub.seen)
    assert all(seen.headers["content-type"] == "application/json" for seen in stub.seen)
    assert CLAY_TOKEN not in repr(webhook) and CLAY_PATH not in repr(webhook)


async def test_clay_without_token_sends_no_auth_header(stub: StubServer) -> None:
    assert await ClayWebhook(stub.url + CLAY_PATH).push_rows([{"a": 1}]) == 1
    assert "x-clay-webhook-auth" not in stub.seen[0].headers


async def test_clay_refuses_more_than_the_webhook_limit(stub: StubServer) -> None:
    with pytest.raises(ValueError, match="50000"):
        await ClayWebhook(stub.url + CLAY_PATH).push_rows([{}] * (MAX_ROWS_PER_WEBHOOK + 1))
    with pytest.raises(ValueError):
        await ClayWebhook(stub.url + CLAY_PATH).push_rows([{}], rows_per_second=0)
    assert stub.seen == []


async def test_clay_retries_429_then_continues(stub: StubServer) -> None:
    stub.responder = lambda seen, n: Reply(429, "", {"Retry-After": "0.2"}) if n == 1 else Reply()
    started = time.monotonic()
    assert await ClayWebhook(stub.url + CLAY_PATH).push_rows([{"n": i} for i in range(3)]) == 3
    assert time.monotonic() - started >= 0.2 * 0.9
    assert [json.loads(seen.body)["n"] for seen in stub.seen] == [0, 1, 1, 2]


async def test_clay_errors_say_how_far_it_got(
    stub: StubServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    rows = [{"n": i} for i in range(5)]
    url = stub.url + CLAY_PATH
    stub.responder = lambda seen, n: Reply(502, f"<html>{CLAY_PATH}</html>") if n == 2 else Reply()
    with pytest.raises(ClayRetryableError) as retryable:
        await ClayWebhook(url, CLAY_TOKEN).push_rows(rows, rows_per_second=100)
    assert (retryable.value.rows_sent, retryable.value.status_code) == (2, 502)

    stub.responder = lambda seen, n: Reply(400, f'{{"error": "bad token {CLAY_TOKEN}"}}')
    with pytest.raises(ClayPermanentError) as permanent:
        await ClayWebhook(url, CLAY_TOKEN).push_rows(rows, rows_per_second=100)
    assert (permanent.value.rows_sent, permanent.value.status_code) == (0, 400)

    stub.responder = lambda seen, n: Reply(200, delay=1.0)
    with pytest.raises(ClayRetryableError, match="no answer in time") as slow:
        await ClayWebhook(url, CLAY_TOKEN, timeout=0.2).push_rows(rows)
    assert slow.value.status_code is None

    for error in (retryable.value, permanent.value, slow.value):
        logging.getLogger("test").error("failure", exc_info=error)
        assert CLAY_TOKEN not in str(error) and CLAY_PATH not in str(error)
    assert "HTTP Request" in caplog.text
    assert CLAY_TOKEN not in caplog.text
    assert "clay-source-secret" not in caplog.text
