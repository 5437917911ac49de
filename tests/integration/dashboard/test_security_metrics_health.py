"""Authentication, headers, /metrics, /healthz, /readyz, the bind rule and live updates."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools

import httpx
import pytest

from orchestrator import Orchestrator
from orchestrator._dashboard.live import ChangeFeed
from orchestrator._dashboard.security import check_bind
from orchestrator._errors import ConfigurationError
from tests.fix_console import BASE, console, console_settings
from tests.fix_worker import running_worker, wait_for_status

TOKEN = "a-long-enough-dashboard-token"


async def test_security_headers_on_every_page(client: httpx.AsyncClient) -> None:
    for path in ("/", "/jobs", "/board", "/healthz", "/static/dashboard.css"):
        response = await client.get(path)
        assert response.status_code == 200, path
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
    assert (await client.get("/jobs")).headers["cache-control"] == "no-store"
    assert "no-store" not in (await client.get("/static/dashboard.js")).headers.get(
        "cache-control", ""
    )
    assert "<script>" not in (await client.get("/")).text.replace("<script src=", "")


async def test_token_is_required_when_configured(orch: Orchestrator) -> None:
    app = console(orch, token=TOKEN)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        assert (await http.get("/metrics")).status_code == 401
        browser = await http.get("/", headers={"Accept": "text/html"})
        assert browser.status_code == 303 and browser.headers["location"] == "/login"
        assert (await http.get("/healthz")).status_code == 200
        bearer = await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert bearer.status_code == 200
        wrong = await http.post("/login", data={"token": "nope"})
        assert wrong.status_code == 401
        login = await http.post("/login", data={"token": TOKEN})
        assert login.status_code == 303
        cookie = login.headers["set-cookie"]
        assert TOKEN not in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert (await http.get("/")).status_code == 200  # the session cookie is kept
        assert TOKEN not in (await http.get("/")).text


async def test_basic_auth(orch: Orchestrator) -> None:
    app = console(orch, basic_auth="ops:s3cret-pass")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        challenge = await http.get("/")
        assert challenge.status_code == 401
        assert challenge.headers["www-authenticate"].startswith("Basic")
        good = base64.b64encode(b"ops:s3cret-pass").decode()
        bad = base64.b64encode(b"ops:wrong").decode()
        assert (await http.get("/", headers={"Authorization": f"Basic {good}"})).status_code == 200
        assert (await http.get("/", headers={"Authorization": f"Basic {bad}"})).status_code == 401


def test_bind_beyond_loopback_needs_credentials() -> None:
    check_bind("127.0.0.1", console_settings())
    check_bind("::1", console_settings())
    with pytest.raises(ConfigurationError, match="ORCHESTRATOR_DASHBOARD_TOKEN"):
        check_bind("0.0.0.0", console_settings())
    check_bind("0.0.0.0", console_settings(token=TOKEN))


async def test_metrics_read_the_database(orch: Orchestrator, client: httpx.AsyncClient) -> None:
    ok = await orch.enqueue_workflow("write_row", {"key": "m"})
    bad = await orch.enqueue_workflow("crash", {"key": "m"}, attempts=1)
    await orch.enqueue_workflow("write_row", {"key": "later"}, delay=600)
    async with running_worker(orch):
        await wait_for_status(orch, ok, "succeeded")
        await wait_for_status(orch, bad, "failed")

    text = (await client.get("/metrics")).text

    assert "orchestrator_database_up 1.0" in text
    assert 'orchestrator_attempts_total{outcome="succeeded",workflow="write_row"} 1.0' in text
    assert 'orchestrator_attempts_total{outcome="failed",workflow="crash"} 1.0' in text
    assert 'orchestrator_jobs_enqueued_total{workflow="write_row"} 2.0' in text
    assert 'orchestrator_jobs{state="delayed",workflow="write_row"} 1.0' in text
    assert 'orchestrator_attempt_duration_seconds_count{workflow="write_row"} 1.0' in text
    assert 'orchestrator_attempt_duration_seconds_bucket{le="+Inf",workflow="crash"} 1.0' in text
    assert "orchestrator_queue_wait_seconds" in text
    assert "orchestrator_attempts_abandoned_total" in text


async def test_health_endpoints(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).text == "ok\n"
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.text.startswith("ok: database reachable")


async def test_change_feed_reports_changes_debounced(orch: Orchestrator, database_url: str) -> None:
    feed = ChangeFeed(database_url, min_interval=0.5)
    await feed.start()
    loop = asyncio.get_running_loop()
    received: list[float] = []

    async def read() -> None:
        async for item in feed.subscribe(keepalive=30):
            received.append(loop.time())
            assert item == "change"

    reader = asyncio.create_task(read())
    try:
        await asyncio.wait_for(feed.connected.wait(), timeout=10)
        await asyncio.sleep(0.05)
        for i in range(10):
            await orch.enqueue_workflow("write_row", {"key": f"live{i}"})
        await asyncio.sleep(1.5)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await feed.stop()
    # ten inserts: told at once, then at most once more per interval
    assert 1 <= len(received) <= 3, received
    assert all(b - a >= 0.45 for a, b in itertools.pairwise(received)), received
