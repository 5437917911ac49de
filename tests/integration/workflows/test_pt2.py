"""PT2 Clay formatting against PostgreSQL, with Debounce and a Clay webhook on local HTTP."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from orchestrator import Orchestrator
from tests.fix_pipeline import (
    FINISHED,
    ClientFactory,
    PipelineFactory,
    StubRequest,
    execute,
    fetch,
    job_result,
    job_status,
    person,
    run_job,
    run_until,
    scalar,
    stub_server,
)
from workflows import pt2_clay_format
from workflows.cole import export_dir

MONTH = "2026-08"
DEBOUNCE_KEY = "debounce-test-key-5b1e0c"
RowWriter = Callable[..., Path]

ROWS = [
    # 1: standard, "John & Mary" greeted as John
    person("John & Mary", "Smith", "1 Main St", "75001", email="john.smith@example.com"),
    # 2: no head of household
    person("Nora", "Nohead", "2 Main St", "75001", head=""),
    # 3: Texas above $900k -> HNW segment
    person("Tex", "Rich", "3 Ranch Rd", "75002", value="$1,250,000", purchase="08/15/2019"),
    # 4: Oklahoma above the cap, inside the ($900k, $1M] band -> dropped
    person("Okie", "Band", "4 Elm", "73003", state="OK", value="950,000"),
    # 5: Oklahoma far above the cap -> dropped
    person("Okie", "Mansion", "5 Elm", "73003", state="OK", value="$1,500,000"),
    # 6: exactly $900,000 is kept; unpadded date
    person("Cap", "Exact", "6 Elm", "73008", state="OK", value="900000", purchase="8/9/2010"),
    # 7: invalid email syntax
    person("Bad", "Mail", "7 Elm", "75001", email="bad@@example.com"),
    # 8: bought in July: no renewal in August
    person("July", "Buyer", "8 Elm", "75001", purchase="07/04/2020"),
    # 9: New Jersey, 4-digit ZIP, purchased on the 31st -> last window
    person("Zip", "Lost", "9 Elm", "7001", state="NJ", purchase="08/31/2012"),
    # 10: a different person with John's email: leads are unique by email
    person("Other", "Person", "10 Elm", "75006", email="JOHN.SMITH@example.com"),
]
EXPECTED_COUNTS = {
    "raw_rows": 10,
    "head_of_household": 9,
    "no_head_household": 1,
    "bad_fields": 2,
    "over_value_cap": 2,
    "relaxed_band": 1,
    "texas_hnw": 1,
    "email_invalid": 1,
    "email_undeliverable": 0,
    "cleaned": 4,
    "cleaned_standard": 3,
}


async def load(orch: Orchestrator, client: str) -> None:
    result = await run_job(orch, "pt1", {"client": client, "month": MONTH})
    assert result.status == "succeeded", result.runs


async def counts(orch: Orchestrator) -> dict[str, Any]:
    rows = await fetch(orch, "SELECT * FROM monthly_counts")
    assert len(rows) == 1
    return {k: v for k, v in rows[0].items() if k not in ("client_id", "month", "computed_at")}


async def test_rules_applied_and_stored(
    pipeline: Orchestrator, make_client: ClientFactory, write_rows: RowWriter
) -> None:
    client = await make_client()
    write_rows(client.name, MONTH, "tx.csv", ROWS)
    await load(pipeline, client.name)

    result = await run_job(pipeline, "pt2", {"client": client.name, "month": MONTH})

    assert result.status == "succeeded", result.runs
    assert result.output["counts"] == EXPECTED_COUNTS
    assert result.output["email_check"] == "syntax"
    assert result.output["pushed_to_clay"] == 0
    assert await counts(pipeline) == EXPECTED_COUNTS
    leads = {
        r["last_name"]: r for r in await fetch(pipeline, "SELECT * FROM cleaned_leads ORDER BY id")
    }
    assert set(leads) == {"Smith", "Rich", "Exact", "Lost"}

    john = leads["Smith"]
    assert (john["first_name"], john["greeting_name"]) == ("John & Mary", "John")
    assert john["email"] == "john.smith@example.com"
    assert john["purchase_date"] == date(2015, 8, 3)
    assert john["readable_purchase_date"] == "August 3rd"
    assert john["purchase_day"] == 3
    assert john["renewal_date"] == date(2026, 8, 3)
    assert john["window_index"] == 1
    assert (john["segment"], john["home_value"]) == ("standard", Decimal("450000.00"))
    assert john["email_check"] == "syntax"
    assert john["selected"] is True

    rich = leads["Rich"]
    assert (rich["segment"], rich["state"], rich["home_value"]) == (
        "texas_hnw",
        "TX",
        Decimal("1250000.00"),
    )
    assert (rich["readable_purchase_date"], rich["purchase_day"], rich["window_index"]) == (
        "August 15th",
        15,
        3,
    )

    exact = leads["Exact"]
    assert (exact["segment"], exact["home_value"]) == ("standard", Decimal("900000.00"))
    assert (exact["readable_purchase_date"], exact["renewal_date"]) == (
        "August 9th",
        date(2026, 8, 9),
    )
    assert exact["window_index"] == 2

    lost = leads["Lost"]
    assert (lost["zip"], lost["state"]) == ("07001", "NJ")
    assert (lost["readable_purchase_date"], lost["purchase_day"]) == ("August 31st", 31)
    assert (lost["renewal_date"], lost["window_index"]) == (date(2026, 8, 31), 4)


async def test_counts_are_recomputed_not_incremented(
    pipeline: Orchestrator, make_client: ClientFactory, write_rows: RowWriter
) -> None:
    client = await make_client()
    write_rows(client.name, MONTH, "tx.csv", ROWS)
    await load(pipeline, client.name)

    first = await run_job(pipeline, "pt2", {"client": client.name, "month": MONTH})
    ids_before = await fetch(pipeline, "SELECT email FROM cleaned_leads ORDER BY email")
    second = await run_job(pipeline, "pt2", {"client": client.name, "month": MONTH})

    assert first.status == second.status == "succeeded"
    assert second.output["counts"] == first.output["counts"] == EXPECTED_COUNTS
    assert await counts(pipeline) == EXPECTED_COUNTS
    assert await fetch(pipeline, "SELECT email FROM cleaned_leads ORDER BY email") == ids_before

    # a new export arrives: the counts follow it instead of adding to the old ones
    write_rows(
        client.name,
        MONTH,
        "late.csv",
        [person("Late", "Comer", "11 Elm", "75001", email="late@example.com")],
    )
    await load(pipeline, client.name)
    third = await run_job(pipeline, "pt2", {"client": client.name, "month": MONTH})
    expected = {
        **EXPECTED_COUNTS,
        "raw_rows": 11,
        "head_of_household": 10,
        "cleaned": 5,
        "cleaned_standard": 4,
    }
    assert third.output["counts"] == expected
    assert await counts(pipeline) == expected
    assert await scalar(pipeline, "SELECT count(*) FROM cleaned_leads") == 5


async def test_running_again_drops_the_months_window_rows_with_its_cleaned_leads(
    pipeline: Orchestrator, make_client: ClientFactory, write_rows: RowWriter
) -> None:
    # (window rows pointed at cleaned leads with a cascading foreign key until migration
    # 0018; PT2 deletes them itself now)
    client = await make_client()
    write_rows(client.name, MONTH, "tx.csv", ROWS)
    await load(pipeline, client.name)
    await run_job(pipeline, "pt2", {"client": client.name, "month": MONTH})
    for window_id, month in ((1, f"{MONTH}-01"), (2, "2026-09-01")):
        await execute(
            pipeline,
            "INSERT INTO renewal_windows (id, client_id, month, window_index, start_date,"
            " end_date, upload_date, list_name) VALUES (%s, %s, %s, 1, %s, %s, %s, 'w')",
            [window_id, client.id, month, month, month, month],
        )
        await execute(
            pipeline,
            "INSERT INTO window_leads (window_id, cleaned_lead_id, email, segment)"
            " SELECT %s, id, email, segment FROM cleaned_leads",
            [window_id],
        )
    in_windows = await scalar(pipeline, "SELECT count(*) FROM window_leads WHERE window_id = 2")
    assert in_windows == await scalar(pipeline, "SELECT count(*) FROM cleaned_leads") > 0

    again = await run_job(pipeline, "pt2", {"client": client.name, "month": MONTH})

    assert again.status == "succeeded"
    # this month's window rows went with the cleaned leads they named; another month's stay
    assert await fetch(
        pipeline, "SELECT window_id, count(*) FROM window_leads GROUP BY window_id"
    ) == [{"window_id": 2, "count": in_windows}]


async def test_synthetic_month_invariants(
    pipeline: Orchestrator,
    make_client: ClientFactory,
    write_exports: Callable[..., list[Path]],
) -> None:
    client = await make_client()
    write_exports(client.name, MONTH, rows=3_000, states=("TX", "OK", "NJ"))
    await load(pipeline, client.name)

    result = await run_job(pipeline, "pt2", {"client": client.name, "month": MONTH})

    assert result.status == "succeeded", result.runs
    c = result.output["counts"]
    raw = await scalar(pipeline, "SELECT count(*) FROM raw_leads")
    assert c["raw_rows"] == raw
    assert c["head_of_household"] + c["no_head_household"] == raw
    # roughly half the synthetic rows have a head of household
    assert 0.35 * raw < c["head_of_household"] < 0.65 * raw
    dropped = c["bad_fields"] + c["over_value_cap"] + c["email_invalid"] + c["email_undeliverable"]
    assert c["head_of_household"] == dropped + c["cleaned"]
    assert c["cleaned"] == await scalar(pipeline, "SELECT count(*) FROM cleaned_leads")
    assert c["texas_hnw"] > 0 and c["over_value_cap"] > 0
    assert c["texas_hnw"] + c["cleaned_standard"] == c["cleaned"]
    violations = await fetch(
        pipeline,
        """
        SELECT c.id FROM cleaned_leads c JOIN raw_leads r ON r.id = c.raw_lead_id
         WHERE r.head_household IS NULL
            OR (c.home_value > 900000 AND NOT (c.segment = 'texas_hnw' AND c.state = 'TX'))
            OR (c.segment = 'texas_hnw' AND (c.state <> 'TX' OR c.home_value <= 900000))
            OR c.purchase_day <> extract(day FROM c.purchase_date)
            OR date_trunc('month', c.renewal_date) <> DATE '2026-08-01'
            OR extract(day FROM c.renewal_date) <> c.purchase_day
            OR c.readable_purchase_date <> trim(to_char(c.purchase_date, 'FMMonth'))
                                            || ' ' || c.purchase_day
                                            || CASE WHEN c.purchase_day IN (1, 21, 31) THEN 'st'
                                                    WHEN c.purchase_day IN (2, 22) THEN 'nd'
                                                    WHEN c.purchase_day IN (3, 23) THEN 'rd'
                                                    ELSE 'th' END
            OR c.window_index <> LEAST((c.purchase_day - 1) / 7 + 1, 4)
            OR c.zip !~ '^[0-9]{5}$'
        """,
    )
    assert violations == []
    assert await scalar(pipeline, "SELECT count(*) = count(DISTINCT email) FROM cleaned_leads")


def debounce_answer(request: StubRequest) -> tuple[int, Any]:
    """Debounce's single-validation answer: ``risky*`` addresses are not safe to send."""
    if request.query.get("api") != DEBOUNCE_KEY:
        return 200, {"success": "0", "debounce": {"error": "Wrong API key"}}
    email = request.query.get("email", "")
    safe = not email.startswith("risky")
    return 200, {
        "success": "1",
        "debounce": {
            "email": email,
            "code": "5" if safe else "8",
            "result": "Safe to Send" if safe else "Risky",
            "send_transactional": "1" if safe else "0",
        },
    }


async def test_debounce_results_are_cached_per_email(
    make_pipeline: PipelineFactory, make_client: ClientFactory, write_rows: RowWriter
) -> None:
    rows = [
        *ROWS,
        person("Risky", "Domain", "12 Elm", "75001", email="risky.domain@example.com"),
    ]
    with stub_server(debounce_answer) as debounce:
        orch = await make_pipeline(
            debounce_api_key=DEBOUNCE_KEY, debounce_url=f"{debounce.url}/v1/"
        )
        client = await make_client()
        write_rows(client.name, MONTH, "tx.csv", rows)
        await load(orch, client.name)

        first = await run_job(orch, "pt2", {"client": client.name, "month": MONTH})
        calls_first = debounce.count()
        second = await run_job(orch, "pt2", {"client": client.name, "month": MONTH})
        calls_second = debounce.count() - calls_first

    assert first.status == second.status == "succeeded", first.runs
    assert first.output["email_check"] == "debounce"
    # the 4 cleanable rows and the risky one were checked, each once; not the bad syntax
    asked = sorted(r.query["email"] for r in debounce.requests)
    assert asked == sorted(
        [
            "john.smith@example.com",
            "tex.rich@example.com",
            "cap.exact@example.com",
            "zip.lost@example.com",
            "risky.domain@example.com",
        ]
    )
    assert calls_first == 5 and calls_second == 0
    assert all(r.path == "/v1/" and r.method == "GET" for r in debounce.requests)
    expected = {**EXPECTED_COUNTS, "raw_rows": 11, "head_of_household": 10}
    expected["email_undeliverable"] = 1
    assert first.output["counts"] == second.output["counts"] == expected
    checks = {
        r["email"]: r["safe"] for r in await fetch(orch, "SELECT email, safe FROM email_checks")
    }
    assert len(checks) == 5 and checks["risky.domain@example.com"] is False
    assert sum(checks.values()) == 4
    assert await fetch(orch, "SELECT DISTINCT email_check FROM cleaned_leads") == [
        {"email_check": "debounce"}
    ]
    # the key travels only in the query string, never into the stored run
    assert DEBOUNCE_KEY not in str(first.runs) + str(second.runs)


async def test_debounce_bad_key_fails_permanently(
    make_pipeline: PipelineFactory, make_client: ClientFactory, write_rows: RowWriter
) -> None:
    with stub_server(debounce_answer) as debounce:
        orch = await make_pipeline(
            debounce_api_key="wrong-debounce-key", debounce_url=f"{debounce.url}/v1/"
        )
        client = await make_client()
        write_rows(client.name, MONTH, "tx.csv", ROWS)
        await load(orch, client.name)
        result = await run_job(orch, "pt2", {"client": client.name, "month": MONTH})

    assert result.status == "failed"
    assert result.run_statuses == ["failed"]
    assert result.error["type"] == "DebouncePermanentError"
    assert "wrong-debounce-key" not in str(result.runs)
    assert await scalar(orch, "SELECT count(*) FROM cleaned_leads") == 0


async def test_clay_push_is_off_by_default_and_sends_rows_when_asked(
    make_pipeline: PipelineFactory, make_client: ClientFactory, write_rows: RowWriter
) -> None:
    with stub_server(lambda request: (200, {"ok": True})) as clay:
        orch = await make_pipeline(
            clay_webhook_url=f"{clay.url}/hooks/table-1", clay_webhook_auth="clay-secret-token"
        )
        client = await make_client()
        write_rows(client.name, MONTH, "tx.csv", ROWS)
        await load(orch, client.name)

        default = await run_job(orch, "pt2", {"client": client.name, "month": MONTH})
        assert default.status == "succeeded"
        assert default.output["pushed_to_clay"] == 0
        assert clay.count() == 0

        pushed = await run_job(
            orch, "pt2", {"client": client.name, "month": MONTH, "push_to_clay": True}
        )

    assert pushed.status == "succeeded", pushed.runs
    assert pushed.output["pushed_to_clay"] == 4
    assert len(clay.requests) == 4
    assert all(r.path == "/hooks/table-1" and r.method == "POST" for r in clay.requests)
    assert all(r.headers.get("x-clay-webhook-auth") == "clay-secret-token" for r in clay.requests)
    by_email = {r.body["email"]: r.body for r in clay.requests}
    assert by_email["john.smith@example.com"]["first_name"] == "John"
    assert by_email["john.smith@example.com"]["purchase_date"] == "August 3rd"
    assert by_email["john.smith@example.com"]["renewal_date"] == "2026-08-03"
    assert by_email["tex.rich@example.com"]["segment"] == "texas_hnw"
    assert "clay-secret-token" not in str(pushed.runs)


async def test_clay_push_without_webhook_is_a_permanent_error(
    pipeline: Orchestrator, make_client: ClientFactory, write_rows: RowWriter
) -> None:
    client = await make_client()
    write_rows(client.name, MONTH, "tx.csv", ROWS)
    await load(pipeline, client.name)

    result = await run_job(
        pipeline, "pt2", {"client": client.name, "month": MONTH, "push_to_clay": True}
    )

    assert result.status == "failed"
    assert "ORCHESTRATOR_CLAY_WEBHOOK_URL" in result.error["message"]


async def test_without_raw_leads_pt2_fails_permanently(
    pipeline: Orchestrator, make_client: ClientFactory
) -> None:
    client = await make_client()

    result = await run_job(pipeline, "pt2", {"client": client.name, "month": MONTH})

    assert result.status == "failed"
    assert result.run_statuses == ["failed"]
    assert "run PT1 first" in result.error["message"]


async def test_debounce_verdicts_survive_a_failure_part_way(
    make_pipeline: PipelineFactory,
    make_client: ClientFactory,
    write_exports: Callable[..., list[Path]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Debounce failure after many checks must not make the next run pay for them again."""
    batch = 50
    monkeypatch.setattr(pt2_clay_format, "DEBOUNCE_BATCH", batch)
    budget = {"left": 120}
    lock = threading.Lock()

    def flaky_debounce(request: StubRequest) -> tuple[int, Any]:
        with lock:
            budget["left"] -= 1
            out_of_credits = budget["left"] < 0
        if out_of_credits:
            return 200, {"success": "0", "debounce": {"error": "Credits exhausted"}}
        return debounce_answer(request)

    with stub_server(flaky_debounce) as debounce:
        orch = await make_pipeline(
            debounce_api_key=DEBOUNCE_KEY, debounce_url=f"{debounce.url}/v1/"
        )
        client = await make_client()
        write_exports(client.name, MONTH, rows=1_000, states=("TX", "OK"))
        await load(orch, client.name)

        failed = await run_job(orch, "pt2", {"client": client.name, "month": MONTH})
        first_calls = debounce.count()
        cached = await scalar(orch, "SELECT count(*) FROM email_checks")
        with lock:
            budget["left"] = 1_000_000
        succeeded = await run_job(orch, "pt2", {"client": client.name, "month": MONTH})
        second_calls = debounce.count() - first_calls

    assert failed.status == "failed" and failed.error["type"] == "DebouncePermanentError"
    assert succeeded.status == "succeeded", succeeded.runs
    checked = await scalar(orch, "SELECT count(*) FROM email_checks")
    assert checked > 200  # enough candidates to run out of credits
    assert cached == 100  # the two batches checked before the failure were kept...
    assert second_calls == checked - cached  # ...and not paid for again
    assert first_calls + second_calls < checked + batch


async def test_two_clients_sharing_homeowners_validate_concurrently(
    make_pipeline: PipelineFactory,
    make_client: ClientFactory,
    write_exports: Callable[..., list[Path]],
    inbox: Path,
) -> None:
    """Agents with overlapping territories get the same people; their PT2 runs overlap."""

    def slow_debounce(request: StubRequest) -> tuple[int, Any]:
        time.sleep(0.005)
        return debounce_answer(request)

    with stub_server(slow_debounce) as debounce:
        orch = await make_pipeline(
            debounce_api_key=DEBOUNCE_KEY, debounce_url=f"{debounce.url}/v1/"
        )
        first = await make_client("North Agency")
        second = await make_client("South Agency")
        for path in write_exports(first.name, MONTH, rows=400, messiness=False):
            target = export_dir(inbox, second.name, MONTH) / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        await load(orch, first.name)
        await load(orch, second.name)

        ids = [
            await orch.enqueue_workflow("pt2", {"client": c.name, "month": MONTH})
            for c in (first, second)
        ]

        async def both_finished() -> bool:
            return all([await job_status(orch, i) in FINISHED for i in ids])

        await run_until(orch, both_finished)

    results = [await job_result(orch, i) for i in ids]
    assert [r.run_statuses for r in results] == [["succeeded"], ["succeeded"]]
    assert results[0].output["counts"] == results[1].output["counts"]
    cleaned = results[0].output["counts"]["cleaned"]
    assert await scalar(orch, "SELECT count(*) FROM email_checks") == cleaned
