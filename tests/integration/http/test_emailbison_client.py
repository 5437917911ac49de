"""The real EmailBisonClient against the LocalEmailBison stand-in, over loopback HTTP."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import httpx
import pytest

import workflows.emailbison as emailbison
from orchestrator._errors import PermanentError, RetryableError
from workflows.emailbison import (
    CustomVariable,
    EmailBisonAuthError,
    EmailBisonClient,
    EmailBisonError,
    EmailBisonNotFound,
    EmailBisonPermanentError,
    EmailBisonRetryableError,
    EmailBisonValidationError,
    LeadIn,
    LeadValidationError,
)
from workflows.standins.emailbison_server import LocalEmailBison

API_KEY = "eb-test-key-7f3a9c51d2"
OTHER_KEY = "eb-other-workspace-key-1c2d"
HTML_502 = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


def lead(index: int, email: str | None = None, **extra: object) -> LeadIn:
    return LeadIn.model_validate(
        {
            "first_name": f"First{index}",
            "last_name": f"Last{index}",
            "email": email or f"owner{index}@example.com",
            **extra,
        }
    )


@pytest.fixture
def bison() -> Iterator[LocalEmailBison]:
    server = LocalEmailBison()
    server.start()
    server.add_workspace(API_KEY)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def client(bison: LocalEmailBison) -> AsyncIterator[EmailBisonClient]:
    async with EmailBisonClient(bison.base_url, API_KEY, timeout=5.0) as bison_client:
        yield bison_client


def test_public_api_is_explicit() -> None:
    assert sorted(emailbison.__all__) == sorted(set(emailbison.__all__))
    for name in emailbison.__all__:
        assert hasattr(emailbison, name), name
    assert issubclass(LeadValidationError, EmailBisonValidationError)
    assert issubclass(EmailBisonAuthError, PermanentError)
    assert issubclass(EmailBisonNotFound, EmailBisonError)
    assert issubclass(EmailBisonRetryableError, RetryableError)
    assert not issubclass(EmailBisonRetryableError, PermanentError)


async def test_repr_hides_the_key(bison: LocalEmailBison) -> None:
    async with EmailBisonClient(bison.base_url, API_KEY) as bison_client:
        assert API_KEY not in repr(bison_client)
        assert bison.base_url in repr(bison_client)


# -- authentication and routing -----------------------------------------------------------


async def test_unknown_key_is_a_permanent_auth_error(bison: LocalEmailBison) -> None:
    async with EmailBisonClient(bison.base_url, "not-a-known-key") as bad:
        with pytest.raises(EmailBisonAuthError) as caught:
            await bad.find_campaigns("Evergreen")
    assert caught.value.status_code == 401
    assert isinstance(caught.value, PermanentError)
    assert not isinstance(caught.value, RetryableError)
    assert bison.request_count(status=401) == 1  # permanent: not retried


async def test_server_routing_rules(bison: LocalEmailBison) -> None:
    async with httpx.AsyncClient(base_url=bison.base_url) as raw:
        assert (await raw.get("/api/campaigns")).status_code == 401
        wrong_method = await raw.delete("/api/campaigns", headers={"Authorization": "Bearer x"})
        assert wrong_method.status_code == 405
        unknown = await raw.get("/api/nothing-here")
        assert unknown.status_code == 404
        assert unknown.json() == {"message": "Record not found"}


async def test_other_workspaces_campaign_is_not_found(
    bison: LocalEmailBison, client: EmailBisonClient
) -> None:
    foreign = bison.add_campaign(OTHER_KEY, "Evergreen, Last Upload: March 1-7")
    with pytest.raises(EmailBisonNotFound) as caught:
        await client.get_campaign(foreign)
    assert caught.value.status_code == 404
    assert isinstance(caught.value, PermanentError)


# -- leads --------------------------------------------------------------------------------


async def test_more_than_500_leads_are_refused_before_sending(
    bison: LocalEmailBison, client: EmailBisonClient
) -> None:
    with pytest.raises(ValueError, match="500"):
        await client.upsert_leads([lead(i) for i in range(501)])
    assert bison.requests == []
    assert await client.upsert_leads([]) == []


async def test_server_refuses_more_than_500_leads(bison: LocalEmailBison) -> None:
    payload = {
        "leads": [lead(i).to_payload() for i in range(501)],
        "existing_lead_behavior": "patch",
    }
    async with httpx.AsyncClient(base_url=bison.base_url) as raw:
        answer = await raw.post(
            "/api/leads/create-or-update/multiple",
            json=payload,
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
    assert answer.status_code == 422
    assert "leads" in answer.json()["errors"]


async def test_upsert_is_idempotent_by_email(
    bison: LocalEmailBison, client: EmailBisonClient
) -> None:
    await client.ensure_custom_variables(["renewal date", "home value"])
    first = await client.upsert_leads(
        [
            lead(i, title="Owner", custom_variables=[{"name": "renewal date", "value": "May 3rd"}])
            for i in range(3)
        ]
    )
    again = await client.upsert_leads(
        [
            lead(0, email="OWNER0@example.com", custom_variables=[]),
            lead(1, custom_variables=[CustomVariable(name="home value", value="450000")]),
            lead(2),
        ]
    )
    assert [out.id for out in again] == [out.id for out in first]
    stored = {row["email"].lower(): row for row in bison.leads(API_KEY)}
    assert len(stored) == 3
    # patch: fields and variables not sent again are kept
    assert stored["owner1@example.com"]["title"] == "Owner"
    assert {v["name"] for v in stored["owner1@example.com"]["custom_variables"]} == {
        "renewal date",
        "home value",
    }


async def test_invalid_leads_are_named_by_index(
    bison: LocalEmailBison, client: EmailBisonClient
) -> None:
    batch = [lead(0), lead(1, email="not-an-email"), lead(2), lead(3, email="x@"), lead(4)]
    with pytest.raises(LeadValidationError) as caught:
        await client.upsert_leads(batch)
    error = caught.value
    assert error.status_code == 422
    assert isinstance(error, PermanentError)
    assert error.invalid_indices == {1, 3}
    assert "email" in error.errors_by_index[1]
    assert bison.leads(API_KEY) == []  # a 422 writes nothing

    good = [item for i, item in enumerate(batch) if i not in error.invalid_indices]
    assert len(await client.upsert_leads(good)) == 3


async def test_undefined_custom_variable_is_a_validation_error(client: EmailBisonClient) -> None:
    with pytest.raises(LeadValidationError) as caught:
        await client.upsert_leads(
            [lead(0), lead(1, custom_variables=[{"name": "never created", "value": "x"}])]
        )
    assert caught.value.invalid_indices == {1}
    assert list(caught.value.errors_by_index[1]) == ["custom_variables.0.name"]


async def test_create_custom_variable_is_idempotent(
    bison: LocalEmailBison, client: EmailBisonClient
) -> None:
    await client.create_custom_variable("renewal date")
    await client.create_custom_variable("renewal date")  # 422 "taken" counts as success
    assert await client.list_custom_variables() == ["renewal date"]
    assert bison.request_count("POST", "/api/custom-variables", status=422) == 1
    with pytest.raises(EmailBisonValidationError):
        await client.create_custom_variable("   ")


# -- campaigns ----------------------------------------------------------------------------


async def test_campaign_search_follows_pages(
    bison: LocalEmailBison, client: EmailBisonClient
) -> None:
    wanted = {bison.add_campaign(API_KEY, f"Evergreen #{i}") for i in range(37)}
    bison.add_campaign(API_KEY, "Spring promo")
    found = await client.find_campaigns("evergreen")
    assert {campaign.id for campaign in found} == wanted
    assert bison.request_count("GET", "/api/campaigns") == 3  # 15 + 15 + 7
    assert await client.find_campaigns("no such campaign") == []


async def test_attach_and_rename(bison: LocalEmailBison, client: EmailBisonClient) -> None:
    campaign_id = bison.add_campaign(API_KEY, "Evergreen, Last Upload: February 22-28")
    stored = await client.upsert_leads([lead(i) for i in range(4)])
    ids = [out.id for out in stored]
    await client.attach_leads(campaign_id, ids)
    await client.attach_leads(campaign_id, ids[:2])  # again: harmless
    assert bison.attached_lead_ids(API_KEY, campaign_id) == ids

    await client.rename_campaign(campaign_id, "Evergreen, Last Upload: March 1-7")
    campaign = await client.get_campaign(campaign_id)
    assert campaign.name == "Evergreen, Last Upload: March 1-7"
    assert campaign.status == "active"


async def test_attach_is_chunked_to_500_ids(
    bison: LocalEmailBison, client: EmailBisonClient
) -> None:
    campaign_id = bison.add_campaign(API_KEY, "Evergreen")
    ids: list[int] = []
    for start in range(0, 1200, 500):
        batch = [lead(i) for i in range(start, min(start + 500, 1200))]
        ids.extend(out.id for out in await client.upsert_leads(batch))
    await client.attach_leads(campaign_id, ids)
    assert bison.request_count("POST", "attach-leads") == 3
    assert len(bison.attached_lead_ids(API_KEY, campaign_id)) == 1200


async def test_attach_unknown_lead_is_a_validation_error(
    bison: LocalEmailBison, client: EmailBisonClient
) -> None:
    campaign_id = bison.add_campaign(API_KEY, "Evergreen")
    [stored] = await client.upsert_leads([lead(0)])
    with pytest.raises(EmailBisonValidationError) as caught:
        await client.attach_leads(campaign_id, [stored.id, 999_999])
    assert set(caught.value.errors) == {"lead_ids.1"}
    assert bison.attached_lead_ids(API_KEY, campaign_id) == []


async def test_success_false_in_a_200_is_permanent(
    bison: LocalEmailBison, client: EmailBisonClient
) -> None:
    campaign_id = bison.add_campaign(API_KEY, "Evergreen")
    bison.fail_next(200, body='{"data": {"success": false, "message": "Campaign is archived"}}')
    with pytest.raises(EmailBisonPermanentError, match="Campaign is archived") as caught:
        await client.rename_campaign(campaign_id, "Evergreen, Last Upload: March 1-7")
    assert caught.value.status_code == 200


# -- transient failures -------------------------------------------------------------------


async def test_429_waits_for_retry_after_then_succeeds(
    bison: LocalEmailBison, client: EmailBisonClient
) -> None:
    bison.add_campaign(API_KEY, "Evergreen")
    bison.fail_next(429, retry_after=0.5, path_contains="/api/campaigns")
    started = time.monotonic()
    assert len(await client.find_campaigns("Evergreen")) == 1
    assert time.monotonic() - started >= 0.5 * 0.9
    assert bison.request_count(status=429) == 1


async def test_429_beyond_the_retry_budget_is_retryable(bison: LocalEmailBison) -> None:
    bison.fail_next(429, count=5, retry_after=0.1)
    async with EmailBisonClient(bison.base_url, API_KEY, retries_on_429=2) as limited:
        with pytest.raises(EmailBisonRetryableError) as caught:
            await limited.list_custom_variables()
    assert caught.value.status_code == 429
    assert caught.value.retry_after == pytest.approx(0.1)
    assert bison.request_count(status=429) == 3


async def test_long_retry_after_is_not_slept_through(bison: LocalEmailBison) -> None:
    bison.fail_next(429, retry_after=120)
    async with EmailBisonClient(bison.base_url, API_KEY, max_retry_sleep=1.0) as impatient:
        started = time.monotonic()
        with pytest.raises(EmailBisonRetryableError) as caught:
            await impatient.list_custom_variables()
    assert time.monotonic() - started < 5
    assert caught.value.retry_after == 120


async def test_server_rate_limit_is_absorbed(bison: LocalEmailBison) -> None:
    campaign_id = bison.add_campaign(API_KEY, "Evergreen")
    bison.rate_limit_per_second = 10
    async with EmailBisonClient(bison.base_url, API_KEY, retries_on_429=10) as eager:
        for _ in range(14):
            await eager.get_campaign(campaign_id)
    assert bison.request_count(status=200) == 14
    assert bison.request_count(status=429) >= 1


async def test_client_rate_limit_keeps_under_the_server_limit(bison: LocalEmailBison) -> None:
    campaign_id = bison.add_campaign(API_KEY, "Evergreen")
    bison.rate_limit_per_second = 10
    bison.reset_log()
    async with EmailBisonClient(
        bison.base_url, API_KEY, max_requests_per_second=8, retries_on_429=0
    ) as polite:
        started = time.monotonic()
        for _ in range(9):
            await polite.get_campaign(campaign_id)
    assert time.monotonic() - started >= 8 / 8 * 0.9
    assert bison.request_count(status=429) == 0


@pytest.mark.parametrize("status", [500, 503])
async def test_5xx_is_retryable(
    bison: LocalEmailBison, client: EmailBisonClient, status: int
) -> None:
    bison.fail_next(status, retry_after=7)
    with pytest.raises(EmailBisonRetryableError) as caught:
        await client.list_custom_variables()
    assert caught.value.status_code == status
    assert caught.value.retry_after == 7
    assert bison.request_count() == 1  # 5xx is left to the job's retry


async def test_html_502_page_is_retryable(bison: LocalEmailBison, client: EmailBisonClient) -> None:
    bison.fail_next(502, body=HTML_502)
    with pytest.raises(EmailBisonRetryableError, match="502") as caught:
        await client.find_campaigns("Evergreen")
    assert caught.value.status_code == 502


async def test_broken_json_is_retryable(bison: LocalEmailBison, client: EmailBisonClient) -> None:
    bison.broken_json_next()
    with pytest.raises(EmailBisonRetryableError, match="not JSON") as caught:
        await client.upsert_leads([lead(0)])
    assert caught.value.status_code == 200


async def test_slow_answer_times_out_as_retryable(bison: LocalEmailBison) -> None:
    bison.slow_seconds = 2.0
    async with EmailBisonClient(bison.base_url, API_KEY, timeout=0.2) as hasty:
        with pytest.raises(EmailBisonRetryableError, match="no answer in time") as caught:
            await hasty.list_custom_variables()
    assert caught.value.status_code is None


async def test_connection_refused_is_retryable() -> None:
    with LocalEmailBison() as gone:
        base_url = gone.base_url
    async with EmailBisonClient(base_url, API_KEY, timeout=2.0) as orphan:
        with pytest.raises(EmailBisonRetryableError, match="connection failed"):
            await orphan.list_custom_variables()


# -- secrets ------------------------------------------------------------------------------


def _chain(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


async def test_api_key_never_leaks(
    bison: LocalEmailBison, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    campaign_id = bison.add_campaign(API_KEY, "Evergreen")
    errors: list[BaseException] = []
    async with EmailBisonClient(bison.base_url, API_KEY, timeout=0.3) as secret_client:
        bison.fail_next(500, body=f'{{"message": "bad token Bearer {API_KEY}"}}')
        bison.fail_next(502, body=f"<html>{API_KEY}</html>")
        bison.fail_next(422, body=f'{{"message": "x", "errors": {{"key": ["{API_KEY}"]}}}}')
        bison.fail_next(429, retry_after=0.05)
        bison.fail_next(401)
        for _ in range(4):
            try:
                await secret_client.get_campaign(campaign_id)
            except EmailBisonError as exc:
                errors.append(exc)
        bison.broken_json_next()
        with pytest.raises(EmailBisonRetryableError) as broken:
            await secret_client.list_custom_variables()
        errors.append(broken.value)
        bison.slow_seconds = 1.0
        with pytest.raises(EmailBisonRetryableError) as slow:
            await secret_client.list_custom_variables()
        errors.append(slow.value)
        bison.slow_seconds = 0.0
    async with EmailBisonClient(bison.base_url, "a-wrong-secret-key") as wrong:
        with pytest.raises(EmailBisonAuthError) as denied:
            await wrong.get_campaign(campaign_id)
        errors.append(denied.value)

    assert len(errors) == 7
    assert all(
        API_KEY not in str(e.errors) for e in errors if isinstance(e, EmailBisonValidationError)
    )
    for error in errors:
        logging.getLogger("test").exception("failure", exc_info=error)
        for linked in _chain(error):
            assert API_KEY not in str(linked)
            assert API_KEY not in repr(linked)
            assert "a-wrong-secret-key" not in str(linked)
    assert "HTTP Request" in caplog.text  # httpx did log, at INFO
    assert API_KEY not in caplog.text
    assert "a-wrong-secret-key" not in caplog.text
    assert API_KEY not in repr(bison.requests)


def test_the_stand_in_counts_a_request_as_it_arrives_not_once_its_body_is_read(
    bison: LocalEmailBison,
) -> None:
    """A provider counts a request when it arrives. The first request's headers are in, its
    body is still on the way when a second, complete request arrives: at one request a
    second, the first holds the token and the second is the one refused."""
    campaign_id = bison.add_campaign(API_KEY, "Evergreen")
    bison.rate_limit_per_second = 1
    body = b'{"leads": []}'
    answers: list[bytes] = []
    with socket.create_connection(_address(bison), timeout=10) as first:
        first.sendall(
            b"POST /api/leads/multiple HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer " + API_KEY.encode() + b"\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        deadline = time.monotonic() + 5
        while not _token_taken(bison) and time.monotonic() < deadline:
            time.sleep(0.01)
        second = httpx.get(
            f"{bison.base_url.rstrip('/')}/api/campaigns/{campaign_id}",
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
        reader = threading.Thread(target=lambda: answers.append(first.recv(65536)))
        reader.start()
        first.sendall(body)
        reader.join(10)
    assert second.status_code == 429
    assert answers and answers[0].split(b" ", 2)[1] != b"429"


def _address(bison: LocalEmailBison) -> tuple[str, int]:
    split = urlsplit(bison.base_url)
    assert split.hostname is not None and split.port is not None
    return split.hostname, split.port


def _token_taken(bison: LocalEmailBison) -> bool:
    bucket = bison._bucket
    return bucket is not None and bucket._tokens < 1.0


def test_a_stand_in_can_serve_at_another_priority() -> None:
    """Benchmarks raise a stand-in's priority. Lowering it (a positive niceness) is open to
    anyone, so this checks that the serving thread gets the niceness it was given."""
    server = LocalEmailBison()
    server.serve_nice = 5
    server.start()
    try:
        assert server.nice_applied is True
        thread = server._thread
        assert thread is not None and thread.native_id is not None
        assert os.getpriority(os.PRIO_PROCESS, thread.native_id) == 5
    finally:
        server.stop()
