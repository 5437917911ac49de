"""The SQL rules (workflows.sql_rules, as PT1 and PT2 run them) agree with the Python rules.

The Python functions of workflows.formatting and workflows.cell_safety are the specification;
PT1 computes ZIPs and dedupe keys, and PT2 every row's outcome, with SQL expressions on
ASCII rows and hands rows holding non-ASCII text to the Python rules. Hypothesis generates
messy rows (money, ZIPs, dates around month ends and leap days, household names, emails with
spaces and case, formulas, markup, control characters, Unicode), loads them into a real
``raw_leads`` and runs PT2's real rules query and PT1's real key expressions on them.
"""

from __future__ import annotations

import calendar
import datetime
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from workflows import pt1_cole_pull, pt2_clay_format, sql_rules
from workflows.formatting import dedupe_key, normalize_zip, readable_date
from workflows.windows import window_for_day

EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)

MESSY_TEXT = st.text(
    alphabet=st.sampled_from(
        [*list("aAzZ09 .,-'&+/@=$<>()kKmM|_"), "\t", "\r", "\n", "\x01", "\x7f", "é", "\xa0"]
    ),
    max_size=14,
)
MONEY = st.one_of(
    st.sampled_from(
        [
            "$1,234.50",
            "1234",
            "",
            "N/A",
            "-5",
            "$900,000",
            "900,000.01",
            "$900,001",
            "1.2M",
            "5k",
            "$ 12",
            "1,23",
            "12,345,678.9",
            ".5",
            "5.",
            "$$5",
            "1 k",
            " $850,000 ",
            "1,000,000",
            "1,0000",
            "0",
            "$0.00",
            "1e5",
            "1.2.3",
            "$1,000,001",
            "950K",
            "١٢٣",
        ]
    ),
    st.integers(min_value=-10, max_value=3_000_000).map(str),
    st.integers(min_value=0, max_value=3_000_000).map(lambda v: f"${v:,}"),
    MESSY_TEXT,
)
ZIP = st.one_of(
    st.sampled_from(
        [
            "2134",
            "02134",
            "02134-1234",
            "021341234",
            "2134.0",
            "2134.00",
            "00000",
            "12",
            " 75001 ",
            "7500a",
            "75001 1234",
            "75001-12",
            "123456",
            "",
            "75001.5",
            "7501\t",
        ]
    ),
    st.integers(min_value=0, max_value=999_999_999).map(str),
    MESSY_TEXT,
)
DAY = st.integers(min_value=0, max_value=32)


@st.composite
def purchase_dates(draw: st.DrawFn) -> str:
    month, day = draw(st.integers(min_value=0, max_value=13)), draw(DAY)
    year = draw(st.sampled_from([0, 1, 1900, 2000, 2019, 2020, 2021, 2023, 2024, 2025, 2100]))
    style = draw(st.sampled_from(["{m:02d}/{d:02d}/{y:04d}", "{m}/{d}/{y}", " {m}/{d}/{y} "]))
    return style.format(m=month, d=day, y=year)


DATE = st.one_of(
    purchase_dates(),
    st.sampled_from(["02/29/2020", "2/29/2024", "02/29/2021", "", "1-2-2020", "01/02/20"]),
    MESSY_TEXT,
)
NAME = st.one_of(
    st.sampled_from(
        [
            "John & Mary",
            "JOHN AND MARY SMITH",
            "john",
            "O'BRIEN",
            "Mary-Jane",
            "Alexandra",
            "and Mary",
            "&",
            "ANN2LEE",
            "<b>Ann</b>",
            "=HYPERLINK(1)",
            "\tAnn",
            "Ann\x01Lee",
            "José",
            "  ",
            "a_b",
            "McDONALD",
            "ANDY",
            "John , Mary",
            "John+Mary",
            "ann / bob",
            "<<b>x>",
            "\uff1dcmd",
            "Anne AND",
            " -Bob",
            "Li\u00a0Na",
            "R2D2 and c3po",
        ]
    ),
    MESSY_TEXT,
)
EMAIL = st.one_of(
    st.sampled_from(
        [
            "John.Smith@Example.COM ",
            "a@b",
            "a@b.co",
            "a..b@x.com",
            ".a@x.com",
            "a.@x.com",
            "a@-x.com",
            "a@x-.com",
            "+cmd@x.com",
            "=x@y.com",
            "-max@y.org",
            "a b@x.com",
            "a@xn--p1ai",
            "a@xn--p1ai-",
            "ü@x.com",
            "",
            "x@" + "a" * 64 + ".com",
            "x@" + "a" * 63 + ".com",
            "A@B.C1",
            "a@b..com",
            "a@@b.com",
            "  MiXeD@Mail.Example.Org",
        ]
    ),
    st.builds(
        lambda a, b, c: f"{a}@{b}.{c}",
        st.text(alphabet="aZ.+-_=' ", min_size=0, max_size=6),
        st.text(alphabet="ab-.", min_size=0, max_size=5),
        st.sampled_from(["com", "c", "xn--p1ai", "c0m", "COM"]),
    ),
    MESSY_TEXT,
)
STATE = st.one_of(
    st.sampled_from(
        [
            "TX",
            "tx",
            " Texas ",
            "new  york",
            "District of Columbia",
            "XX",
            "",
            "ok",
            "N J",
            "\u017fc",  # long s: upper() makes it SC
            "Tx\t",
        ]
    ),
    MESSY_TEXT,
)
PHONE = st.one_of(
    st.sampled_from(
        [
            "(512) 555-0100",
            "+1 512 555 0100",
            "5125550100",
            "=HYPERLINK(0)",
            "-2+3",
            "+",
            "123",
            "1234567890123456",
            "12345678901",
            "+(512)555.0100",
            "512\t555 0100",
            "",
        ]
    ),
    MESSY_TEXT,
)
OPTIONAL = st.one_of(
    st.sampled_from(["01/02/1970", "=1+2", " x ", "<b>", "\t1", "", "  @x", "a\x01"]),
    MESSY_TEXT,
)


def maybe(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str | None]:
    """A cell as raw_leads holds it: PT1 stores a blank cell as NULL."""
    return st.one_of(st.none(), strategy.map(lambda s: s if s.strip() else None))


ROW_CELLS: dict[str, st.SearchStrategy[str | None]] = {
    "first_name": maybe(NAME),
    "last_name": maybe(NAME),
    "address_1": maybe(st.one_of(NAME, st.just("12 Main Street"))),
    "city": maybe(NAME),
    "state": maybe(STATE),
    "zip": maybe(ZIP),
    "cell_phone_number": maybe(PHONE),
    "email_address": maybe(EMAIL),
    "purchase_date": maybe(DATE),
    "home_value": maybe(MONEY),
    "head_household": maybe(st.sampled_from(["Y", "N", "0", " ", "x"])),
    "date_of_birth": maybe(OPTIONAL),
}
ROW = st.fixed_dictionaries(ROW_CELLS)
RENEWALS = st.sampled_from([(2025, 2), (2024, 2), (2026, 12), (2025, 4), (2026, 1)])


def plausible_rows(renewal_month: int) -> st.SearchStrategy[dict[str, Any]]:
    """Rows that pass the early rules but for at most two messy cells, so that the later
    rules (value cap, email, cell safety) are reached too."""
    good = st.fixed_dictionaries(
        {
            "first_name": st.sampled_from(["Ann"] * 6 + ["JOHN & MARY", "bob", "=HYPERLINK(1)"]),
            "last_name": st.sampled_from(["Lee"] * 8 + ["O'NEIL", "de la Cruz", "Sun\x1b[2J"]),
            "address_1": st.sampled_from(["12 Main Street"] * 8 + ["@SUM(1+1)", "<b>1 Oak</b>"]),
            "city": st.sampled_from(["Austin"] * 8 + ["-2+3", "Waco\tTX"]),
            "state": st.sampled_from(["TX", "OK", "OK", "texas", "nj"]),
            "zip": st.sampled_from(["75001", "7501", "75001-1234"]),
            "cell_phone_number": st.just("(512) 555-0100"),
            "email_address": st.sampled_from(
                ["ann@example.com"] * 3
                + [" Bob.Lee@Example.COM", "a b@x.com", "=cmd@example.com", "-x@y.org"]
            ),
            "purchase_date": st.builds(
                "{:02d}/{:02d}/{}".format,
                st.just(renewal_month),
                st.integers(min_value=1, max_value=31),
                st.sampled_from([2016, 2020, 2023]),
            ),
            "home_value": st.sampled_from(
                ["$412,000", "900000", "$900,001", "1.5M", "$999,999", "2M", "$1,000,000.01"]
            ),
            "head_household": st.just("Y"),
            "date_of_birth": st.just("01/02/1970"),
        }
    )
    messy = st.fixed_dictionaries(ROW_CELLS)

    @st.composite
    def rows(draw: st.DrawFn) -> dict[str, Any]:
        row: dict[str, Any] = dict(draw(good))
        other = draw(messy)
        for key in draw(st.lists(st.sampled_from(sorted(row)), max_size=2)):
            row[key] = other[key]
        return row

    return rows()


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    with psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as connection:
        connection.execute(
            "INSERT INTO clients (id, name, tier) VALUES (1, 'Property Test Agency', 100)"
        )
        connection.execute(
            "INSERT INTO cole_files (id, client_id, month, file_name, sha256, encoding,"
            " row_count, bad_row_count, new_people) VALUES (1, 1, '2025-02-01', 'x.csv',"
            " 'x', 'utf-8', 0, 0, 0)"
        )
        yield connection


def _load(conn: psycopg.Connection[dict[str, Any]], rows: list[dict[str, Any]]) -> list[int]:
    conn.execute("DELETE FROM raw_leads")
    ids = []
    for number, row in enumerate(rows, start=2):
        zip5 = normalize_zip(row["zip"])
        cursor = conn.execute(
            """
            INSERT INTO raw_leads (client_id, month, file_id, row_number, first_name,
                last_name, address_1, city, state, zip, cell_phone_number, email_address,
                purchase_date, home_value, head_household, date_of_birth, zip5, dedupe_key)
            VALUES (1, '2025-02-01', 1, %(n)s, %(first_name)s, %(last_name)s, %(address_1)s,
                    %(city)s, %(state)s, %(zip)s, %(cell_phone_number)s, %(email_address)s,
                    %(purchase_date)s, %(home_value)s, %(head_household)s, %(date_of_birth)s,
                    %(zip5)s, %(key)s)
            RETURNING id
            """,
            {**row, "n": number, "zip5": zip5, "key": f"k{number}"},
        )
        found = cursor.fetchone()
        assert found is not None
        ids.append(found["id"])
    return ids


def _is_ascii(row: dict[str, Any]) -> bool:
    """Whether PT2 takes the row in SQL: every cell its rules read is ASCII."""
    read = set(pt2_clay_format.RAW_COLUMNS) - {"zip5"}
    return all(row[c] is None or row[c].isascii() for c in read)


def test_pt2_rules_query_agrees_with_the_python_rules(
    conn: psycopg.Connection[dict[str, Any]],
) -> None:
    conn.execute(
        "CREATE TEMP TABLE pt2_rows ({})".format(
            ", ".join(
                f"{c} {pt2_clay_format._OUTCOME_TYPES.get(c, 'text')}"
                for c in pt2_clay_format.OUTCOME_COLUMNS
            )
        )
    )
    seen_outcomes: set[str] = set()

    @EXAMPLES
    @given(data=st.data(), renewal=RENEWALS)
    def check(data: st.DataObject, renewal: tuple[int, int]) -> None:
        year, month = renewal
        row = st.one_of(ROW, plausible_rows(month), plausible_rows(month))
        rows = data.draw(st.lists(row, min_size=1, max_size=20))
        ids = _load(conn, rows)
        conn.execute("TRUNCATE pt2_rows")
        conn.execute(
            pt2_clay_format.RULES_QUERY,
            {
                "client": 1,
                "month": datetime.date(2025, 2, 1),
                "renewal_year": year,
                "renewal_month": month,
                "last_day": calendar.monthrange(year, month)[1],
            },
        )
        got = {
            r["raw_lead_id"]: r
            for r in conn.execute(
                "SELECT *, to_char(purchase_date, 'FMMonth FMDDth') AS readable,"
                " least((extract(day FROM purchase_date)::integer - 1) / 7 + 1, 4) AS window"
                " FROM pt2_rows"
            ).fetchall()
        }
        for raw_id, row in zip(ids, rows, strict=True):
            if not _is_ascii(row):
                assert raw_id not in got, row  # non-ASCII rows go to the Python rules
                continue
            raw = {**row, "id": raw_id, "zip5": normalize_zip(row["zip"]), "dedupe_key": "k"}
            expected = dict(
                zip(
                    pt2_clay_format.OUTCOME_COLUMNS,
                    pt2_clay_format.python_outcome(raw, year, month),
                    strict=True,
                )
            )
            actual = got[raw_id]
            seen_outcomes.add(expected["outcome"])
            assert (actual["outcome"], actual["reason"]) == (
                expected["outcome"],
                expected["reason"],
            ), row
            if expected["outcome"] == "over_cap":
                assert actual["relaxed"] == expected["relaxed"], row
            if expected["outcome"] != "candidate":
                continue
            for column in pt2_clay_format.OUTCOME_COLUMNS[5:]:
                assert actual[column] == expected[column], (column, row)
            assert str(actual["home_value"]) == str(expected["home_value"]), row
            assert actual["readable"] == readable_date(expected["purchase_date"])
            assert (
                actual["window"] == window_for_day(year, month, expected["purchase_date"].day).index
            )

    check()
    # the generated rows reached every rule, not just the first checks
    assert {
        "no_head",
        "bad_fields",
        "unsafe",
        "over_cap",
        "email_invalid",
        "email_unsafe",
        "candidate",
    } <= seen_outcomes


def test_pt1_zip_and_dedupe_key_agree_with_the_python_rules(
    conn: psycopg.Connection[dict[str, Any]],
) -> None:
    # The key's two layers as PT1's insert has them: ZIP and words first, then the key.
    query = f"""
        SELECT zip5, {pt1_cole_pull._KEY} AS key, python
          FROM (SELECT zip, {pt1_cole_pull._ZIP5} AS zip5, {pt1_cole_pull._WORDS} AS words,
                       {pt1_cole_pull._NON_ASCII} AS python
                  FROM (SELECT %s::text AS first_name, %s::text AS last_name,
                               %s::text AS address_1, %s::text AS zip) s
                OFFSET 0) layered
    """  # noqa: S608 - the module's constants

    @EXAMPLES
    @given(
        first=maybe(NAME),
        last=maybe(NAME),
        address=maybe(st.one_of(NAME, st.sampled_from(["12 Main Street", "4 North  Ave."]))),
        zip_code=maybe(ZIP),
    )
    def check(
        first: str | None, last: str | None, address: str | None, zip_code: str | None
    ) -> None:
        found = conn.execute(query, [first, last, address, zip_code]).fetchone()
        assert found is not None
        cells = [first, last, address, zip_code]
        if not all(c is None or c.isascii() for c in cells):
            assert found["python"], cells  # PT1 keys these rows in Python
            return
        assert not found["python"]
        assert found["zip5"] == normalize_zip(zip_code), cells
        zip5 = normalize_zip(zip_code)
        assert found["key"] == dedupe_key(first, last, address, zip5 or zip_code), cells

    check()


def test_pt4_renders_the_renewal_date_and_home_value_as_python_does(
    conn: psycopg.Connection[dict[str, Any]],
) -> None:
    # What LeadIn's specification sends: date.isoformat() and f"{Decimal:.0f}" (half to even).
    conn.execute("SET DateStyle = 'SQL, DMY'")  # the rendering must not follow the session's
    query = f"""
        SELECT {sql_rules.iso_date("d")} AS day, {sql_rules.whole_dollars("v")} AS dollars
          FROM (SELECT %s::date AS d, %s::numeric(14, 2) AS v) s
    """  # noqa: S608 - the module's expressions

    @EXAMPLES
    @given(
        day=st.dates(min_value=datetime.date(1, 1, 1)),
        value=st.one_of(
            st.decimals(min_value=-(10**12) + 1, max_value=10**12 - 1, places=2),
            st.sampled_from([Decimal(s) for s in ("0.5", "1.5", "2.5", "-0.5", "-1.5", "-0.4")]),
        ),
    )
    def check(day: datetime.date, value: Decimal) -> None:
        found = conn.execute(query, [day, value]).fetchone()
        assert found == {"day": day.isoformat(), "dollars": f"{value:.0f}"}, (day, value)

    check()
