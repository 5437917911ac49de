"""Cells that cannot become code: PT2's rules for text sent on to EmailBison and Clay.

Cole cells are typed by strangers and pass through spreadsheets (Clay tables, CSV exports of
EmailBison lists) and HTML emails. A cell starting with ``=``, ``+``, ``-`` or ``@`` (or a
tab or CR, which some spreadsheets skip before looking) is run as a formula when a sheet opens
it — ``=HYPERLINK(...)`` leaks data, ``+cmd|' /C calc'!A0`` runs a command — and markup such
as ``<script>`` may be rendered by a mail template. PT2 therefore:

* **removes markup** (``<...>`` tags, stray ``<``/``>``) and surrounding whitespace (a
  leading tab or CR included) from names, address and city (:func:`strip_markup`):
  ``<b>Ann</b>`` is Ann, ``"\\tAnn"`` is Ann;
* then **rejects the row** when a name, the street address or the city starts with one of
  ``= + - @`` (full-width forms such as U+FF1D included) or still holds a control character:
  a real name or address never does, so such a row is tampered or corrupt
  (:func:`unsafe_text_reason`, which also refuses a leading tab or CR in untrimmed text);
* **rejects the email** (the row counts as an invalid email) when its local part starts
  with one of those characters (:func:`unsafe_email_reason`);
* **drops an optional cell** it cannot make safe (date of birth) rather than the row
  (:func:`safe_optional_text`); the phone is reduced to digits first
  (:func:`workflows.formatting.normalize_phone`), so ``+1 (512) 555-0100`` stays and
  ``=HYPERLINK(...)`` goes.

Numbers are never at risk: home values, dates, ZIPs and states are parsed and re-written
by PT2, so a negative or formula-like value there was already refused as unparseable.

>>> unsafe_text_reason("first_name", "=HYPERLINK(\\"http://x\\")")
"first_name starts with '=' (spreadsheet formula)"
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from workflows.formatting import HouseholdName

FORMULA_STARTS: Final = frozenset("=+-@")
"""A cell starting with one of these is a formula to a spreadsheet."""
LEADING_CONTROLS: Final = frozenset("\t\r\n")
"""Skipped by some spreadsheets before they look for :data:`FORMULA_STARTS`."""

MAX_REJECTED_LISTED: Final = 100
"""Rejected rows listed one by one in a report (all are counted)."""

_TAG_RE: Final = re.compile(r"<[^<>]*>")
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # Unicode category Cc
_NAMES: Final = {"\t": "tab", "\r": "carriage return", "\n": "line feed"}


def formula_trigger(value: str) -> str | None:
    """The character that would make a spreadsheet read ``value`` as a formula, or ``None``.

    A leading tab, CR or LF counts by itself; otherwise the first character after spaces
    is compared in its compatibility form (U+FF1D FULLWIDTH EQUALS SIGN is ``=``).

    >>> formula_trigger("  @SUM(A1)"), formula_trigger("O'Brien")
    ('@', None)
    """
    if not value:
        return None
    if value[0] in LEADING_CONTROLS:
        return value[0]
    rest = value.lstrip()
    if not rest:
        return None
    first = rest[0] if rest[0].isascii() else unicodedata.normalize("NFKC", rest[0])[:1]
    return first if first in FORMULA_STARTS else None


def has_control_character(value: str) -> bool:
    """Whether ``value`` holds a control character (tab, CR, LF, NUL, ESC, ...)."""
    return _CONTROL_RE.search(value) is not None


def strip_markup(value: str | None) -> str | None:
    """``value`` without HTML/XML tags or stray angle brackets, stripped; ``None`` stays.

    >>> strip_markup("<b>Ann</b> <script>alert(1)</script>Lee")
    'Ann alert(1)Lee'
    """
    if value is None:
        return None
    if "<" not in value and ">" not in value:
        return value.strip()
    previous = None
    while previous != value:
        previous, value = value, _TAG_RE.sub("", value)
    return value.replace("<", "").replace(">", "").strip()


def unsafe_text_reason(field: str, value: str | None) -> str | None:
    """Why a name or address cell must not be sent on, or ``None`` when it may.

    >>> unsafe_text_reason("city", "Dallas\\tTX")
    'city contains a control character (tab)'
    """
    if not value:
        return None
    trigger = formula_trigger(value)
    if trigger is not None and trigger in LEADING_CONTROLS:
        return f"{field} starts with a {_NAMES[trigger]} (spreadsheet formula)"
    if trigger is not None:
        return f"{field} starts with {trigger!r} (spreadsheet formula)"
    found = _CONTROL_RE.search(value)
    if found is not None:
        name = _NAMES.get(found[0], f"U+{ord(found[0]):04X}")
        return f"{field} contains a control character ({name})"
    return None


def unsafe_email_reason(email: str) -> str | None:
    """Why a (normalised, syntax-checked) email must not be sent on, or ``None``.

    >>> unsafe_email_reason("+cmd@example.com")
    "email local part starts with '+' (spreadsheet formula)"
    """
    trigger = formula_trigger(email)
    if trigger is not None:
        return f"email local part starts with {trigger!r} (spreadsheet formula)"
    return None


def safe_optional_text(value: str | None) -> str | None:
    """An optional cell fit to send (stripped), or ``None`` when blank or unsafe (formula
    start, control character or markup): the cell is dropped, the row kept.

    >>> safe_optional_text(" 01/02/1970 "), safe_optional_text("=1+2")
    ('01/02/1970', None)
    """
    if value is None:
        return None
    if formula_trigger(value) or has_control_character(value) or "<" in value or ">" in value:
        return None
    return value.strip() or None


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A raw row PT2 refused for a cell that could become code (see
    :mod:`workflows.cell_safety`); ``reason`` names the field, never its content."""

    raw_lead_id: int
    reason: str


def unsafe_row_reason(
    names: HouseholdName, last_name: str, address: str | None, city: str | None
) -> str | None:
    """Why a row's names or address must not be sent on (first reason found), or ``None``."""
    return (
        unsafe_text_reason("first_name", names.original)
        or unsafe_text_reason("first_name", names.greeting)
        or unsafe_text_reason("last_name", last_name)
        or unsafe_text_reason("address_1", address)
        or unsafe_text_reason("city", city)
    )


def rejection_report(
    rejected: Sequence[RejectedRow], where: Mapping[int, tuple[str, int]]
) -> dict[str, Any]:
    """A run's record of rejected rows: how many, a count per reason, and the first
    :data:`MAX_REJECTED_LISTED` rows with their file and line (``where``, by raw lead id),
    as PT1 lists its bad rows.

    >>> rejection_report([RejectedRow(7, "city starts with '='")], {7: ("a.csv", 12)})["examples"]
    [{'raw_lead_id': 7, 'file': 'a.csv', 'row': 12, 'reason': "city starts with '='"}]
    """
    examples = []
    for row in rejected[:MAX_REJECTED_LISTED]:
        file, line = where.get(row.raw_lead_id, (None, None))
        examples.append(
            {"raw_lead_id": row.raw_lead_id, "file": file, "row": line, "reason": row.reason}
        )
    return {
        "rows": len(rejected),
        "by_reason": dict(Counter(row.reason for row in rejected).most_common()),
        "examples": examples,
    }
