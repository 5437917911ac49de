"""Table-driven tests of the PT2 row rules in ``workflows.formatting``."""

from __future__ import annotations

import calendar
import re
from datetime import date
from decimal import Decimal

import pytest

from workflows.formatting import (
    HOME_VALUE_CAP,
    RELAXED_HOME_VALUE_CAP,
    STATES,
    HouseholdName,
    Segment,
    dedupe_key,
    is_head_of_household,
    is_valid_email_syntax,
    normalize_email,
    normalize_state,
    normalize_zip,
    ordinal,
    parse_money,
    parse_purchase_date,
    readable_date,
    renewal_date,
    segment_for,
    split_household_names,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$1,234,567", Decimal("1234567")),
        ("$1,234", Decimal("1234")),
        ("450000", Decimal("450000")),
        ("  $900,000.00 ", Decimal("900000")),
        ("$ 450,000", Decimal("450000")),
        ("450000.5", Decimal("450000.5")),
        ("0", Decimal("0")),
        ("1.2M", Decimal("1200000")),
        ("950k", Decimal("950000")),
        ("$1.5m", Decimal("1500000")),
        ("", None),
        ("   ", None),
        (None, None),
        ("N/A", None),
        ("unknown", None),
        ("-450000", None),
        ("($450,000)", None),
        ("$400,000 - $499,999", None),
        ("4,50,000", None),
        ("1,2345", None),
        ("$", None),
        ("1.2.3", None),
        ("12e5", None),
        ("1.2B", None),
    ],
)
def test_parse_money(text: str | None, expected: Decimal | None) -> None:
    assert parse_money(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Y", True),
        ("Yes", True),
        (" y ", True),
        ("N", True),
        ("0", True),
        ("No", True),
        ("", False),
        ("   ", False),
        ("\t\n", False),
        (None, False),
    ],
)
def test_is_head_of_household_is_literal(value: str | None, expected: bool) -> None:
    assert is_head_of_household(value) is expected


@pytest.mark.parametrize(
    ("state", "value", "expected"),
    [
        ("CA", "$450,000", "standard"),
        ("CA", "$900,000", "standard"),
        ("CA", "$900,000.00", "standard"),
        ("CA", "$900,000.01", None),
        ("CA", "$900,001", None),
        ("TX", "$900,000", "standard"),
        ("TX", "$900,001", "texas_hnw"),
        ("tx", "2,500,000", "texas_hnw"),
        ("Texas", "1.2M", "texas_hnw"),
        ("OK", "1.2M", None),
        (None, "$900,001", None),
        ("TX", "", None),
        ("CA", "N/A", None),
        ("TX", "0", None),
        ("CA", "1", "standard"),
    ],
)
def test_segment_for(state: str | None, value: str, expected: Segment | None) -> None:
    assert segment_for(state, parse_money(value)) == expected


@pytest.mark.parametrize(
    ("state", "value", "expected"),
    [
        ("CA", Decimal("950000"), "standard"),
        ("CA", RELAXED_HOME_VALUE_CAP, "standard"),
        ("CA", RELAXED_HOME_VALUE_CAP + 1, None),
        ("TX", RELAXED_HOME_VALUE_CAP + 1, "texas_hnw"),
    ],
)
def test_segment_for_relaxed_cap(state: str, value: Decimal, expected: Segment | None) -> None:
    assert segment_for(state, value, cap=RELAXED_HOME_VALUE_CAP) == expected
    assert HOME_VALUE_CAP < RELAXED_HOME_VALUE_CAP


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (9, "9th"), (10, "10th"), (11, "11th"),
        (12, "12th"), (13, "13th"), (14, "14th"), (20, "20th"), (21, "21st"), (22, "22nd"),
        (23, "23rd"), (24, "24th"), (30, "30th"), (31, "31st"), (101, "101st"), (111, "111th"),
        (112, "112th"), (113, "113th"),
    ],
)  # fmt: skip
def test_ordinal(day: int, expected: str) -> None:
    assert ordinal(day) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (date(2023, 8, 3), "August 3rd"),
        (date(2023, 8, 1), "August 1st"),
        (date(2024, 2, 29), "February 29th"),
        (date(2023, 12, 31), "December 31st"),
        (date(2023, 1, 11), "January 11th"),
        (date(2023, 5, 22), "May 22nd"),
    ],
)
def test_readable_date(value: date, expected: str) -> None:
    assert readable_date(value) == expected


def test_readable_date_every_day_of_a_leap_year() -> None:
    pattern = re.compile(r"([A-Z][a-z]+) (\d{1,2})(st|nd|rd|th)")
    for month in range(1, 13):
        for day in range(1, calendar.monthrange(2024, month)[1] + 1):
            match = pattern.fullmatch(readable_date(date(2024, month, day)))
            assert match is not None
            assert (match[1], int(match[2])) == (calendar.month_name[month], day)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("08/03/2023", date(2023, 8, 3)),
        ("8/3/2023", date(2023, 8, 3)),
        (" 12/31/2019 ", date(2019, 12, 31)),
        ("02/29/2024", date(2024, 2, 29)),
        ("02/29/2023", None),
        ("02/30/2023", None),
        ("04/31/2023", None),
        ("13/01/2023", None),
        ("00/10/2023", None),
        ("01/00/2023", None),
        ("2023-08-03", None),
        ("08/03/23", None),
        ("08-03-2023", None),
        ("08/03/2023 00:00", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_purchase_date(text: str | None, expected: date | None) -> None:
    assert parse_purchase_date(text) == expected


@pytest.mark.parametrize(
    ("purchase", "year", "month", "expected"),
    [
        (date(2023, 8, 3), 2025, 8, date(2025, 8, 3)),
        (date(2023, 8, 31), 2025, 8, date(2025, 8, 31)),
        (date(2024, 2, 29), 2025, 2, date(2025, 2, 28)),
        (date(2024, 2, 29), 2026, 2, date(2026, 2, 28)),
        (date(2024, 2, 29), 2028, 2, date(2028, 2, 29)),
        (date(2024, 2, 29), 2100, 2, date(2100, 2, 28)),
        (date(2023, 2, 28), 2024, 2, date(2024, 2, 28)),
        (date(2019, 1, 31), 2026, 1, date(2026, 1, 31)),
        (date(2023, 8, 3), 2025, 9, None),
        (date(2024, 2, 29), 2025, 3, None),
        (date(2025, 8, 3), 2025, 8, None),
        (date(2026, 8, 3), 2025, 8, None),
    ],
)
def test_renewal_date(purchase: date, year: int, month: int, expected: date | None) -> None:
    assert renewal_date(purchase, year, month) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("02134", "02134"),
        ("2134", "02134"),
        ("2134.0", "02134"),
        ("2134.00", "02134"),
        ("75001", "75001"),
        ("75001.0", "75001"),
        (" 75001 ", "75001"),
        ("02134-1234", "02134"),
        ("2134-1234", "02134"),
        ("02134 1234", "02134"),
        ("021341234", "02134"),
        ("501", "00501"),
        ("00000", None),
        ("0", None),
        ("12", None),
        ("123456", None),
        ("2134.5", None),
        ("02134-12", None),
        ("ABCDE", None),
        ("", None),
        (None, None),
    ],
)
def test_normalize_zip(text: str | None, expected: str | None) -> None:
    assert normalize_zip(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("TX", "TX"),
        ("tx", "TX"),
        (" ca ", "CA"),
        ("DC", "DC"),
        ("Texas", "TX"),
        ("new  york", "NY"),
        ("District of Columbia", "DC"),
        ("PR", None),
        ("XX", None),
        ("T", None),
        ("TEX", None),
        ("", None),
        (None, None),
    ],
)
def test_normalize_state(text: str | None, expected: str | None) -> None:
    assert normalize_state(text) == expected


def test_states_are_fifty_plus_dc() -> None:
    assert len(STATES) == 51
    assert all(normalize_state(code.lower()) == code for code in STATES)


@pytest.mark.parametrize(
    ("first_name", "greeting", "names"),
    [
        ("John", "John", ("John",)),
        ("John & Mary", "John", ("John", "Mary")),
        ("John and Mary", "John", ("John", "Mary")),
        ("JOHN AND MARY", "John", ("John", "Mary")),
        ("john+mary", "John", ("John", "Mary")),
        ("John / Mary", "John", ("John", "Mary")),
        ("Mary Ann & John", "Mary Ann", ("Mary Ann", "John")),
        ("  Mary   Ann  ", "Mary Ann", ("Mary Ann",)),
        ("Alexander", "Alexander", ("Alexander",)),
        ("Sandra", "Sandra", ("Sandra",)),
        ("DeShawn & Mary", "DeShawn", ("DeShawn", "Mary")),
        ("JEAN-LUC", "Jean-Luc", ("Jean-Luc",)),
        ("José & Ana", "José", ("José", "Ana")),
        ("JOSÉ & ANA", "José", ("José", "Ana")),
        ("o'brien", "O'Brien", ("O'Brien",)),
        ("& Mary", "Mary", ("Mary",)),
    ],
)
def test_split_household_names(first_name: str, greeting: str, names: tuple[str, ...]) -> None:
    result = split_household_names(first_name)
    assert result == HouseholdName(original=first_name.strip(), names=names)
    assert result is not None
    assert result.greeting == greeting


@pytest.mark.parametrize("first_name", ["", "   ", "&", " and ", None])
def test_split_household_names_blank(first_name: str | None) -> None:
    assert split_household_names(first_name) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (" John.Smith@Example.COM ", "john.smith@example.com"),
        ("a@b.co", "a@b.co"),
        ("", None),
        ("  ", None),
        (None, None),
    ],
)
def test_normalize_email(text: str | None, expected: str | None) -> None:
    assert normalize_email(text) == expected


_LOCAL_64 = "a" * 64
_LONG_DOMAIN = ".".join(["d" * 63] * 3) + ".com"  # 195 characters


@pytest.mark.parametrize(
    ("email", "expected"),
    [
        ("john.smith@example.com", True),
        ("john+renewals@example.co.uk", True),
        ("o'brien@example.org", True),
        ("j_smith-1@sub-domain.example.io", True),
        ("x@example.xn--p1ai", True),
        (f"{_LOCAL_64}@example.com", True),
        (f"{'a' * 65}@example.com", False),
        (f"{_LOCAL_64}@{_LONG_DOMAIN}", False),  # 260 characters
        (f"a@{_LONG_DOMAIN}", True),
        ("john.smith@", False),
        ("@example.com", False),
        ("john.smith.example.com", False),
        ("john@@example.com", False),
        ("john@doe@example.com", False),
        ("john smith@example.com", False),
        (" john@example.com", False),
        (".john@example.com", False),
        ("john.@example.com", False),
        ("jo..hn@example.com", False),
        ('"john"@example.com', False),
        ("john@example", False),
        ("john@example.c", False),
        ("john@example.c0m", False),
        ("john@-example.com", False),
        ("john@example-.com", False),
        ("john@exa_mple.com", False),
        ("john@example..com", False),
        ("john@.example.com", False),
        ("john@example.com.", False),
        ("john@[192.168.0.1]", False),
        ("jöhn@example.com", False),
        (f"john@{'d' * 64}.com", False),
        ("", False),
    ],
)
def test_is_valid_email_syntax(email: str, expected: bool) -> None:
    assert is_valid_email_syntax(email) is expected


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (("John", "Smith", "12 Main St", "75001"), ("john", "SMITH", "12  main st", "75001")),
        (("John", "Smith", "12 Main St", "2134"), ("John", "Smith", "12 Main St", "02134-1234")),
        (("John", "Smith", "12 Main St", "2134.0"), ("John", "Smith", "12 Main St", "02134")),
        (("John", "O'Neil", "12 Main St.", "75001"), ("John", "ONeil", "12 Main St", "75001")),
        (("John", "Smith", "12 Main Street", "75001"), ("John", "Smith", "12 MAIN ST", "75001")),
        (("J", "S", "12 North Oak Avenue", "75001"), ("j", "s", "12 N. Oak Ave", "75001")),
        (("John & Mary", "Smith", "1 Elm", "75001"), ("John and Mary", "Smith", "1 Elm", "75001")),
        ((" John ", "Smith-Jones", "1 Elm", "75001"), ("John", "Smith Jones", "1 Elm", "75001")),
        (("John&Mary", "Smith", "1 Elm", "75001"), ("John and Mary", "Smith", "1 Elm", "75001")),
        (("José", "Peña", "1 Elm", "75001"), ("JOSE", "PENA", "1 Elm", "75001")),
        (("Ann", "Lee", "1 Elm St", "75001"), ("Ann", "Lee", "1_Elm_St", "75001")),
    ],
)
def test_dedupe_key_equal(
    left: tuple[str, str, str, str], right: tuple[str, str, str, str]
) -> None:
    assert dedupe_key(*left) == dedupe_key(*right)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (("John", "Smith", "12 Main St", "75001"), ("Mary", "Smith", "12 Main St", "75001")),
        (("John", "Smith", "12 Main St", "75001"), ("John", "Smyth", "12 Main St", "75001")),
        (("John", "Smith", "12 Main St", "75001"), ("John", "Smith", "21 Main St", "75001")),
        (("John", "Smith", "12 Main St", "75001"), ("John", "Smith", "12 Main St", "75002")),
        (("John", "Smith", "12 Main St", "75001"), ("John Smith", "", "12 Main St", "75001")),
        (("John", "Smith", "1 Main St", "75001"), ("John", "Smith", "1", "Main St 75001")),
        (("Wei", "Li", "1 Elm", "75001"), ("伟", "Li", "1 Elm", "75001")),
    ],
)
def test_dedupe_key_distinct(
    left: tuple[str, str, str, str], right: tuple[str, str, str, str]
) -> None:
    assert dedupe_key(*left) != dedupe_key(*right)


def test_dedupe_key_is_stable_hex() -> None:
    key = dedupe_key("John", "Smith", "12 Main St", "75001")
    assert re.fullmatch(r"[0-9a-f]{40}", key)
    assert key == dedupe_key("John", "Smith", "12 Main St", "75001")
    assert dedupe_key(None, None, None, None) == dedupe_key("", " ", "", "")
