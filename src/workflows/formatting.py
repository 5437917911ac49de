"""PT2 row rules: turn one messy Cole X Dates export row into clean, typed values.

These rules replaced a manual Clay table, so they must be deterministic and free of I/O: the
PT2 workflow applies them row by row, and the same inputs always give the same outputs (which
makes re-runs after a crash safe). Every parser returns ``None`` for unusable input instead of
raising, because blank and garbage cells are normal in real exports; the caller decides
whether ``None`` drops the row.

Decisions where the domain brief is silent:

* money accepts ``$``, thousands commas (correctly grouped), cents, and a ``K``/``M`` suffix
  (``"1.2M"`` -> 1,200,000); negatives, ranges and words give ``None``;
* a missing or non-positive home value drops the row (``segment_for`` returns ``None``);
* head of household is literal: any non-blank cell counts, including ``"N"`` or ``"0"``;
* a renewal needs at least one full year since purchase (same-year "anniversary" -> ``None``);
* ZIPs of 3 or 4 digits regain their leading zeros (spreadsheets strip them); ZIP+4 is cut.
"""

from __future__ import annotations

import calendar
import functools
import hashlib
import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Final, Literal

Segment = Literal["standard", "texas_hnw"]

HOME_VALUE_CAP: Final = Decimal("900000")
"""Rows above this value are dropped (or, in Texas, go to the HNW segment)."""
RELAXED_HOME_VALUE_CAP: Final = Decimal("1000000")
"""The cap PT3 may suggest when a client is below target."""
CLAY_TABLE_MAX_ROWS: Final = 40_000
"""Never put more rows than this in one Clay table."""

STATES: Final[dict[str, str]] = {
    "AL": "Alabama", "AK": "Alaska", "AZ": "Arizona", "AR": "Arkansas", "CA": "California",
    "CO": "Colorado", "CT": "Connecticut", "DE": "Delaware", "DC": "District of Columbia",
    "FL": "Florida", "GA": "Georgia", "HI": "Hawaii", "ID": "Idaho", "IL": "Illinois",
    "IN": "Indiana", "IA": "Iowa", "KS": "Kansas", "KY": "Kentucky", "LA": "Louisiana",
    "ME": "Maine", "MD": "Maryland", "MA": "Massachusetts", "MI": "Michigan", "MN": "Minnesota",
    "MS": "Mississippi", "MO": "Missouri", "MT": "Montana", "NE": "Nebraska", "NV": "Nevada",
    "NH": "New Hampshire", "NJ": "New Jersey", "NM": "New Mexico", "NY": "New York",
    "NC": "North Carolina", "ND": "North Dakota", "OH": "Ohio", "OK": "Oklahoma", "OR": "Oregon",
    "PA": "Pennsylvania", "RI": "Rhode Island", "SC": "South Carolina", "SD": "South Dakota",
    "TN": "Tennessee", "TX": "Texas", "UT": "Utah", "VT": "Vermont", "VA": "Virginia",
    "WA": "Washington", "WV": "West Virginia", "WI": "Wisconsin", "WY": "Wyoming",
}  # fmt: skip
"""The 50 states plus DC, by USPS code."""

_STATE_BY_NAME: Final = {name.casefold(): code for code, name in STATES.items()}

_MONEY_RE: Final = re.compile(
    r"""\$?\s*
    (?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)
    \s*(?P<suffix>[kKmM])?""",
    re.VERBOSE,
)
_ORDINAL_SUFFIX: Final = {1: "st", 2: "nd", 3: "rd"}
_SUFFIX_FACTOR: Final = {"k": Decimal(1_000), "m": Decimal(1_000_000)}
_PURCHASE_DATE_RE: Final = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
_ZIP_RE: Final = re.compile(r"(\d{3,5})(?:\.0+|[-\s]\d{4})?")
_ZIP9_RE: Final = re.compile(r"\d{9}")
_HOUSEHOLD_SPLIT_RE: Final = re.compile(r"\s*(?:&|\+|/|,|\band\b)\s*", re.IGNORECASE)
_LOCAL_ATOM_RE: Final = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")
_DOMAIN_LABEL_RE: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_TLD_RE: Final = re.compile(r"[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59}")
_KEY_ABBREVIATIONS: Final = {
    "street": "st", "avenue": "ave", "road": "rd", "drive": "dr", "lane": "ln",
    "boulevard": "blvd", "court": "ct", "place": "pl", "terrace": "ter", "circle": "cir",
    "highway": "hwy", "parkway": "pkwy", "north": "n", "south": "s", "east": "e", "west": "w",
    "apartment": "apt", "suite": "ste",
}  # fmt: skip


def parse_money(text: str | None) -> Decimal | None:
    """Parse a money cell; ``None`` when blank or not a non-negative amount.

    >>> parse_money("  $900,000.00 "), parse_money("1.2M"), parse_money("N/A")
    (Decimal('900000.00'), Decimal('1200000.0'), None)
    """
    if text is None:
        return None
    match = _MONEY_RE.fullmatch(text.strip())
    if match is None:
        return None
    try:
        value = Decimal(match["num"].replace(",", ""))
    except InvalidOperation:  # pragma: no cover - the regex only admits valid decimals
        return None
    suffix = match["suffix"]
    if suffix is not None:
        value *= _SUFFIX_FACTOR[suffix.lower()]
    return value


def is_head_of_household(value: str | None) -> bool:
    """Rule 1: the ``Head_Household`` cell is not empty (any non-blank text, even ``"N"``)."""
    return value is not None and value.strip() != ""


def segment_for(
    state: str | None, home_value: Decimal | None, *, cap: Decimal = HOME_VALUE_CAP
) -> Segment | None:
    """Rule 3: which segment a row belongs to, or ``None`` when it is dropped.

    Up to and including ``cap`` -> ``"standard"``; above it, Texas rows go to ``"texas_hnw"``
    and all others are dropped. A missing or non-positive value is dropped ("no home value").

    >>> segment_for("TX", Decimal("900001")), segment_for("OK", Decimal("900001"))
    ('texas_hnw', None)
    """
    if home_value is None or home_value <= 0:
        return None
    if home_value <= cap:
        return "standard"
    return "texas_hnw" if normalize_state(state) == "TX" else None


def ordinal(day: int) -> str:
    """``1`` -> ``"1st"``, ``2`` -> ``"2nd"``, ``11`` -> ``"11th"``, ``23`` -> ``"23rd"``."""
    suffix = "th" if 10 <= day % 100 <= 20 else _ORDINAL_SUFFIX.get(day % 10, "th")
    return f"{day}{suffix}"


def readable_date(value: date) -> str:
    """Rule 4: ``date(2023, 8, 3)`` -> ``"August 3rd"`` (English month name, no year)."""
    return f"{calendar.month_name[value.month]} {ordinal(value.day)}"


def parse_purchase_date(text: str | None) -> date | None:
    """Parse ``MM/DD/YYYY`` (or ``M/D/YYYY``); ``None`` for blanks, other formats, bad dates.

    >>> parse_purchase_date("8/3/2023"), parse_purchase_date("02/30/2023")
    (datetime.date(2023, 8, 3), None)
    """
    if text is None:
        return None
    match = _PURCHASE_DATE_RE.fullmatch(text.strip())
    if match is None:
        return None
    month, day, year = (int(group) for group in match.groups())
    try:
        return date(year, month, day)
    except ValueError:
        return None


def renewal_date(purchase_date: date, renewal_year: int, renewal_month: int) -> date | None:
    """The purchase anniversary in ``renewal_year``/``renewal_month``, if there is one.

    ``None`` when the purchase month differs from the renewal month, or when ``renewal_year``
    is not after the purchase year (no policy has renewed yet). A 29 February purchase renews
    on 28 February in non-leap years.

    >>> renewal_date(date(2024, 2, 29), 2025, 2)
    datetime.date(2025, 2, 28)
    """
    if purchase_date.month != renewal_month or renewal_year <= purchase_date.year:
        return None
    last_day = calendar.monthrange(renewal_year, renewal_month)[1]
    return date(renewal_year, renewal_month, min(purchase_date.day, last_day))


def normalize_zip(text: str | None) -> str | None:
    """Five-digit ZIP from a messy cell, or ``None``.

    Accepts ``"02134"``, ``"2134"`` (lost leading zero), ``"2134.0"`` (spreadsheet float),
    ``"02134-1234"``/``"02134 1234"``/``"021341234"`` (ZIP+4, cut to five digits). ``"00000"``
    and anything with fewer than 3 or more than 5 digits before the +4 part is invalid.
    """
    if text is None:
        return None
    cleaned = text.strip()
    if _ZIP9_RE.fullmatch(cleaned):
        cleaned = cleaned[:5]
    match = _ZIP_RE.fullmatch(cleaned)
    if match is None:
        return None
    zip5 = match[1].zfill(5)
    return None if zip5 == "00000" else zip5


def normalize_state(text: str | None) -> str | None:
    """Two-letter upper-case USPS code of a state or DC, or ``None``.

    Full names are accepted too (``"texas"`` -> ``"TX"``); territories are not.
    """
    if text is None:
        return None
    cleaned = " ".join(text.split())
    if cleaned.upper() in STATES:
        return cleaned.upper()
    return _STATE_BY_NAME.get(cleaned.casefold())


@dataclass(frozen=True, slots=True)
class HouseholdName:
    """A ``First_Name`` cell split into people; ``greeting`` is what an email says."""

    original: str
    names: tuple[str, ...]

    @property
    def greeting(self) -> str:
        """The first person's first name(s), e.g. ``"John"`` for ``"John & Mary"``."""
        return self.names[0]


def _tidy_case(name: str) -> str:
    """Title-case names typed all upper or all lower; keep deliberate mixed case."""
    if name != name.upper() and name != name.lower():
        return name
    return re.sub(r"[^\W\d_]+", lambda word: word[0].capitalize(), name)


def split_household_names(first_name: str | None) -> HouseholdName | None:
    """Split ``"John & Mary"`` / ``"John and Mary"`` / ``"JOHN + MARY"`` into people.

    Separators: ``&``, ``+``, ``/``, ``,`` and the word ``and``. Whitespace is collapsed and
    all-caps or all-lower names are title-cased; ``original`` keeps the cell as it was
    (stripped). ``None`` when no name is left.

    >>> split_household_names("JOHN & mary").greeting
    'John'
    """
    if first_name is None:
        return None
    original = first_name.strip()
    parts = (" ".join(part.split()) for part in _HOUSEHOLD_SPLIT_RE.split(original))
    names = tuple(_tidy_case(part) for part in parts if part)
    if not names:
        return None
    return HouseholdName(original=original, names=names)


def normalize_email(text: str | None) -> str | None:
    """Strip and lower-case an email address; ``None`` when blank."""
    if text is None:
        return None
    cleaned = text.strip().lower()
    return cleaned or None


def is_valid_email_syntax(email: str) -> bool:
    """Pragmatic syntax check, used when no Debounce key is configured.

    One ``@``; a dot-atom local part of at most 64 characters (no leading, trailing or
    doubled dots, no quoting); a domain of at least two labels (letters, digits, inner
    hyphens, 1-63 characters each) whose last label is 2+ letters (or ``xn--`` punycode);
    at most 254 characters overall; ASCII only, no whitespace.
    """
    if len(email) > 254 or not email.isascii() or email.count("@") != 1:
        return False
    local, domain = email.split("@")
    if not 1 <= len(local) <= 64 or not all(_LOCAL_ATOM_RE.fullmatch(a) for a in local.split(".")):
        return False
    labels = domain.split(".")
    if len(domain) > 253 or len(labels) < 2:
        return False
    if not all(_DOMAIN_LABEL_RE.fullmatch(label) for label in labels):
        return False
    return _TLD_RE.fullmatch(labels[-1]) is not None


_NON_WORD_RE = re.compile(r"[\W_]+")


@functools.lru_cache(maxsize=1 << 16)
def _key_part(text: str) -> str:
    # Cached: names and street names repeat a lot across a month's exports (PT1 speed).
    folded = text.casefold().replace("'", "")
    if not folded.isascii():
        decomposed = unicodedata.normalize("NFKD", folded)
        folded = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    words = _NON_WORD_RE.sub(" ", folded.replace("&", " and ")).split()
    return " ".join(_KEY_ABBREVIATIONS.get(word, word) for word in words)


def dedupe_key(
    first_name: str | None, last_name: str | None, address_1: str | None, zip_code: str | None
) -> str:
    """Stable key (40 hex characters) identifying one person at one address.

    The key is the first 40 hex digits of the SHA-256 of the normalised parts, so PostgreSQL
    computes the same key with its built-in ``sha256()`` (``lead_dedupe_key`` in migration
    ``0013_ingest_functions``, which PT1 uses for ASCII rows).

    Case, accents, whitespace, punctuation and common street words (``Street``/``St``,
    ``North``/``N``, ``and``/``&``) do not matter; the ZIP is normalised with
    :func:`normalize_zip` (falling back to its digits). Overlapping exports of the same
    person therefore collapse to one key.

    >>> dedupe_key("John & Mary", "O'Neil", "12 Main Street", "2134") == dedupe_key(
    ...     "JOHN AND MARY", "ONeil", "12 main st.", "02134-0001")
    True
    """
    zip5 = normalize_zip(zip_code) or re.sub(r"\D", "", zip_code or "")
    material = "|".join(
        (_key_part(first_name or ""), _key_part(last_name or ""), _key_part(address_1 or ""), zip5)
    )
    return hashlib.sha256(material.encode()).hexdigest()[:40]


_PHONE_RE: Final = re.compile(r"\+?[\d(][\d\s().-]*")


def normalize_phone(text: str | None) -> str | None:
    """Digits of a phone cell, or ``None`` when it is not a phone number.

    Only digits, spaces, ``( ) . -`` and one leading ``+`` are accepted, with 7 to 15
    digits (E.164's maximum); a US number with its country code ``1`` loses the code. The
    result never starts with a character a spreadsheet would read as a formula, so a
    formula in this cell (``=HYPERLINK(...)``, ``-2+3``) simply yields ``None``.

    >>> normalize_phone("+1 (512) 555-0100"), normalize_phone("=HYPERLINK(0)")
    ('5125550100', None)
    """
    if text is None:
        return None
    cleaned = text.strip()
    if _PHONE_RE.fullmatch(cleaned) is None:
        return None
    digits = re.sub(r"\D", "", cleaned)
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    return digits if 7 <= len(digits) <= 15 else None
