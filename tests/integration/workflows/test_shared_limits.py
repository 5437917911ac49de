"""Shared provider limits in the workflows: PT4 chunks in flight within the instance's rate,
clients side by side on one instance, a 429 holding every request back, Debounce checks
under the account's limit. Real PostgreSQL, real HTTP to the loopback stand-ins.

No assertion needs anything to be fast: counts, orders, and lower bounds on waits.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter

import pytest

from orchestrator import Orchestrator
from tests.fix_db import registry_for_tests, settings_for_tests
from tests.fix_pipeline import (
    DEFAULT_ZIPS,
    Bison,
    ClientFactory,
    PipelineFactory,
    fetch,
    job_result,
    make_leads,
    run_until,
    seed_leads,
)
from workflows.clients import ClientSpec, add_client
from workflows.debounce import DebounceClient
from workflows.limits import emailbison_key
from workflows.pt4_emailbison_upload import UPSERT_CALL
from workflows.standins.debounce_server import LocalDebounce

MONTH = "2026-09"
UPSERT = "/api/leads/create-or-update/multiple"
FINISHED = ("succeeded", "failed", "cancelled", "aborted")


async def _finished(orch: Orchestrator, *job_ids: int) -> bool:
    rows = await fetch(
        orch, "SELECT status::text AS s FROM procrastinate_jobs WHERE id = ANY(%s)", [list(job_ids)]
    )
    return all(r["s"] in FINISHED for r in rows)


async def test_two_clients_on_one_instance_upload_side_by_side(
    make_pipeline: PipelineFactory,
    make_client: ClientFactory,
    bison: Bison,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two clients' PT4s against one rate-limited instance: both progress at once (neither
    waits for the other to finish), and the instance never answers 429."""
    rate = 8.0
    bison.server.rate_limit_per_second = rate
    bison.server.slow_seconds = 0.05
    orch = await make_pipeline(
        emailbison_rate_limit=rate, emailbison_rate_burst=1, emailbison_concurrency=3
    )
    first = await make_client("First Agency")
    other_key, other_env = f"eb-{secrets.token_hex(12)}", "EMAILBISON_KEY_SECOND_TEST"
    bison.server.add_workspace(other_key)
    monkeypatch.setenv(other_env, other_key)
    async with orch.pool.connection() as conn:
        second = await add_client(
            conn,
            ClientSpec(
                name="Second Agency",
                tier=100,
                licensed_states=["TX", "OK"],
                approved_zips=list(DEFAULT_ZIPS),
                emailbison_url=bison.url,
                emailbison_key_env=other_env,
            ),
        )
    per_window = (1_000, 500, 500, 500)  # 5 chunks each
    await seed_leads(orch, first, MONTH, make_leads(per_window, prefix="first"))
    await seed_leads(orch, second, MONTH, make_leads(per_window, prefix="second"))

    jobs = [
        await orch.enqueue_workflow("pt4", {"client": c.name, "month": MONTH})
        for c in (first, second)
    ]
    await run_until(orch, lambda: _finished(orch, *jobs), timeout=120)

    for job in jobs:
        result = await job_result(orch, job)
        assert result.status == "succeeded", result.runs
    upserts = [r for r in bison.server.requests if r.path == UPSERT]
    assert all(r.status == 200 for r in upserts)
    assert bison.server.throttled == 0
    owners = ["first" if r.emails[0].startswith("first") else "second" for r in upserts]
    assert Counter(owners) == {"first": 5, "second": 5}
    # Side by side: each client's first request came before the other's last one.
    for name in ("first", "second"):
        other = "second" if name == "first" else "first"
        first_of = owners.index(name)
        last_of_other = len(owners) - 1 - owners[::-1].index(other)
        assert first_of < last_of_other, owners
    [limit] = await orch.rate_limits()
    assert limit.key == emailbison_key(bison.url) and limit.rate == rate
    assert limit.granted >= len(bison.server.requests) - 2  # custom-variable calls included
    # Every request went through the worker's request hook to be spaced as it left.
    handle = orch.rate_limit(limit.key, rate=rate)
    assert handle.sent == handle.grants == len(bison.server.requests)


async def test_a_chunk_failing_while_others_are_in_flight_resumes_without_duplicates(
    make_pipeline: PipelineFactory,
    make_client: ClientFactory,
    bison: Bison,
) -> None:
    """Four chunks in flight; the second to arrive gets a 500 (nothing stored). The others
    finish and their answers are kept; the retry sends only the failed chunk, once."""
    bison.server.slow_seconds = 0.2  # every chunk is in flight before the first answer
    orch = await make_pipeline(emailbison_concurrency=4)
    client = await make_client()
    leads = make_leads((2_000, 0, 0, 0))
    await seed_leads(orch, client, MONTH, leads)
    bison.server.fail_next(500, path_contains=UPSERT)  # the first upsert to arrive
    job = await orch.enqueue_workflow("pt4", {"client": client.name, "month": MONTH})
    await run_until(orch, lambda: _finished(orch, job), timeout=120)

    result = await job_result(orch, job)
    assert result.status == "succeeded", result.runs
    assert result.run_statuses == ["retrying", "succeeded"]
    upserts = [r for r in bison.server.requests if r.path == UPSERT]
    assert [r.status for r in upserts].count(500) == 1
    stored = Counter(e for r in upserts if r.status == 200 for e in r.emails)
    assert set(stored) == {lead.email for lead in leads}
    assert set(stored.values()) == {1}  # no chunk answered in attempt 1 was sent again
    assert len(upserts) == 5  # 4 chunks + the failed one again
    calls = await fetch(
        orch,
        "SELECT run_id, state, outcome FROM external_calls WHERE kind = %s ORDER BY id",
        [UPSERT_CALL],
    )
    first_run = result.runs[0]["id"]
    in_first = [c for c in calls if c["run_id"] == first_run]
    assert len(in_first) == 4
    answered = [c for c in in_first if "resolved_by_run" not in (c["outcome"] or {})]
    assert len(answered) == 3 and all(c["state"] == "done" for c in answered)
    # The failed chunk (in doubt: a 500 may have stored it) was resolved by the retry.
    [resolved] = [c for c in in_first if "resolved_by_run" in (c["outcome"] or {})]
    assert resolved["outcome"]["resent_as_upsert"] == 500
    rows = await fetch(orch, "SELECT count(*) AS n FROM uploaded_leads WHERE status = 'uploaded'")
    assert rows[0]["n"] == 2_000


async def test_a_429_holds_back_every_request_to_the_instance(
    make_pipeline: PipelineFactory, make_client: ClientFactory, bison: Bison
) -> None:
    """A 429 with Retry-After blocks the instance's key: no request of any chunk reaches the
    instance before it ends, and the block is on the shared row."""
    bison.server.slow_seconds = 0.05
    orch = await make_pipeline(emailbison_rate_limit=50, emailbison_concurrency=4)
    client = await make_client()
    await seed_leads(orch, client, MONTH, make_leads((2_000, 0, 0, 0)))
    bison.server.fail_next(429, retry_after=1.0, path_contains=UPSERT)
    job = await orch.enqueue_workflow("pt4", {"client": client.name, "month": MONTH})
    await run_until(orch, lambda: _finished(orch, job), timeout=120)

    result = await job_result(orch, job)
    assert result.status == "succeeded", result.runs
    assert result.run_statuses == ["succeeded"]  # the client waited; no job retry
    log = [r for r in bison.server.requests if r.path == UPSERT]
    [throttled_at] = [r.received_at for r in log if r.status == 429]
    # Requests already on the wire when the 429 was answered may arrive just after it; after
    # them, nothing until the block's end.
    later = sorted(r.received_at - throttled_at for r in log if r.received_at > throttled_at)
    assert len(later) == 4
    assert sum(1 for gap in later if gap < 0.9) <= 3
    assert later[-1] >= 0.9
    [limit] = await orch.rate_limits()
    assert limit.throttled == 1


async def test_debounce_checks_share_the_account_limit(database_url: str) -> None:
    """Two processes' worth of Debounce clients (two pools) checking at once stay within the
    account's rate: the stand-in, limited to that rate, never answers 429."""
    rate, key = 20.0, "debounce-limit-key"
    orchs = [
        Orchestrator(
            settings_for_tests(), registry=registry_for_tests(), schedules=[], database_url=url
        )
        for url in (database_url, database_url)
    ]
    for orch in orchs:
        await orch.open()
    try:
        with LocalDebounce(key, latency=0.02, rate_limit_per_second=rate) as debounce:

            async def check(orch: Orchestrator, prefix: str) -> dict[str, bool]:
                limit = orch.rate_limit("debounce", rate=rate, burst=1)
                async with DebounceClient(
                    key, base_url=debounce.url, rate_limit=limit, max_retries=0
                ) as client:
                    emails = [f"{prefix}{i}@example.com" for i in range(30)]
                    emails += [f"risky.{prefix}@example.com"]
                    return await client.validate_many(emails, concurrency=6)

            verdicts = await asyncio.gather(check(orchs[0], "ann"), check(orchs[1], "bob"))
        assert debounce.throttled == 0
        assert len(debounce.checked) == 62
        for result in verdicts:
            assert sum(result.values()) == 30 and len(result) == 31
        states = {s.key: s for s in await orchs[0].rate_limits()}
        assert states["debounce"].granted >= 62
    finally:
        for orch in orchs:
            await orch.close()
