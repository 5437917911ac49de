"""PT4 builds each lead's JSON object as a plain dict; ``LeadIn`` is its specification.

The pending lead's query renders the renewal date and the home value as text
(``sql_rules.iso_date`` and ``sql_rules.whole_dollars``, held to ``isoformat`` and ``:.0f``
by ``tests/integration/workflows/test_sql_rules.py``); here they are rendered the same way.
"""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from workflows import sql_rules
from workflows.emailbison import CustomVariable, LeadIn
from workflows.pt4_emailbison_upload import (
    CUSTOM_VARIABLES,
    PENDING_COLUMNS,
    lead_for,
    pending_email,
)

NAMES = (
    ("date_of_birth", "date_of_birth"),
    ("street_address", "address_1"),
    ("city", "city"),
    ("state", "state"),
    ("zip", "zip"),
    ("cell_phone", "cell_phone"),
    ("purchase_date", "readable_purchase_date"),
    ("segment", "segment"),
)

maybe_text = st.one_of(st.none(), st.just(""), st.text(max_size=12))


def lead_in(row: dict[str, Any], list_name: str) -> LeadIn:
    """The lead as the model states it."""
    values: dict[str, object] = {name: row[column] for name, column in NAMES}
    values["renewal_date"] = row["renewal_date"].isoformat()
    values["home_value"] = f"{row['home_value']:.0f}"
    values["renewal_window"] = list_name
    return LeadIn(
        first_name=row["greeting_name"],
        last_name=row["last_name"],
        email=row["email"],
        custom_variables=[
            CustomVariable(name=name, value=str(values[name]))
            for name in CUSTOM_VARIABLES
            if values[name] not in (None, "")
        ],
    )


#: The cleaned_leads columns PT4's query reads, in ``PENDING_COLUMNS`` order.
COLUMNS = (
    "greeting_name",
    "last_name",
    "email",
    "date_of_birth",
    "address_1",
    "city",
    "state",
    "zip",
    "renewal_date",
    "cell_phone",
    "home_value",
    "readable_purchase_date",
    "segment",
)


def pending_row(row: dict[str, Any]) -> tuple[str | None, ...]:
    """The tuple PT4's query reads for ``row``, the date and the money rendered as text."""
    rendered = {
        **row,
        "renewal_date": row["renewal_date"].isoformat(),
        "home_value": f"{row['home_value']:.0f}",
    }
    return tuple(rendered[column] for column in COLUMNS)


def test_the_query_reads_these_columns_and_renders_the_date_and_the_money() -> None:
    rendered = {
        "renewal_date": sql_rules.iso_date("c.renewal_date"),
        "home_value": sql_rules.whole_dollars("c.home_value"),
    }
    assert tuple(rendered.get(c, f"c.{c}") for c in COLUMNS) == PENDING_COLUMNS


@given(
    columns=st.fixed_dictionaries({column: maybe_text for _, column in NAMES}),
    names=st.tuples(st.text(max_size=10), st.text(max_size=10), st.emails()),
    renewal=st.dates(min_value=datetime.date(2000, 1, 1), max_value=datetime.date(2100, 12, 31)),
    home_value=st.decimals(min_value=0, max_value=10**9, places=2),
    list_name=st.sampled_from(["", "Renewal Window 1 - March 2027"]),
)
def test_the_plain_payload_is_the_models(
    columns: dict[str, str | None],
    names: tuple[str, str, str],
    renewal: datetime.date,
    home_value: Decimal,
    list_name: str,
) -> None:
    row: dict[str, Any] = {
        **columns,
        "greeting_name": names[0],
        "last_name": names[1],
        "email": names[2],
        "renewal_date": renewal,
        "home_value": home_value,
    }
    assert lead_for(pending_row(row), list_name) == lead_in(row, list_name).to_payload()
    assert pending_email(pending_row(row)) == names[2].lower()


def test_a_lead_with_no_variable_sends_none() -> None:
    row: dict[str, Any] = {column: None for _, column in NAMES}
    row |= {"greeting_name": "Ann", "last_name": "Lee", "email": "ann@example.com"}
    row |= {"renewal_date": datetime.date(2027, 3, 3), "home_value": Decimal("0")}
    payload = lead_for(pending_row(row), "")
    assert [v["name"] for v in payload["custom_variables"]] == ["renewal_date", "home_value"]
    assert payload == lead_in(row, "").to_payload()
