"""The Cole row rules as SQL expressions, for PT1 and PT2 to run set-based in PostgreSQL.

Each builder takes SQL expressions (column names, usually) and returns the SQL expression of
one rule of :mod:`workflows.formatting` or :mod:`workflows.cell_safety`, which stay the
specification: ``tests/integration/workflows/test_sql_rules.py`` runs both on generated messy
cells and requires the same answers. Why builders and not SQL functions: a SQL function is
fast only when the planner inlines it, and it refuses as soon as an argument is itself a
costly expression used twice, after which every call costs tens of microseconds; composing
the text here gives the same inlined expression every time. Arguments may appear several
times in a result, so callers pass columns (or compute costly parts in an inner query) rather
than big expressions.

The expressions are exact for ASCII text only (``lead_is_ascii``): Python's Unicode case
folding, accent stripping, ``\\d`` and ``\\s`` have no exact PostgreSQL counterpart, so the
workflows give rows holding non-ASCII text to the Python rules. They use string functions
(``btrim``, ``translate``, ``split_part``) rather than regular expressions, which cost
microseconds a call, except on the rare cells that need one (a household name with a
separator, a control character to name).
"""

from __future__ import annotations

import json

from workflows.formatting import STATES


def literal(chars: str) -> str:
    """A PostgreSQL ``E''`` string literal holding exactly ``chars`` (no NUL)."""
    return "E'" + "".join(f"\\u{ord(c):04x}" for c in chars) + "'"


def quoted(text: str) -> str:
    """A PostgreSQL ``''`` string literal of printable text."""
    return "'" + text.replace("'", "''") + "'"


PY_SPACE = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())
"""Python's ``str.isspace()`` characters: what ``str.strip()``, ``split()`` and ``\\s`` take."""
ASCII_SPACE = "".join(c for c in PY_SPACE if c.isascii())
ALL_SPACE_SQL = literal(PY_SPACE)
SPACE_SQL = literal(ASCII_SPACE)
_SPACES_SQL = quoted(" " * len(ASCII_SPACE))
_DIGITS = "'0123456789'"
_HIDDEN_DIGITS = literal("".join(chr(c) for c in range(1, 11)))
_STATE_CODES = quoted("{" + ",".join(STATES) + "}")
_STATE_NAMES = quoted(json.dumps({name.lower(): code for code, name in STATES.items()}))
_ABBREVIATIONS = {
    "street": "st", "avenue": "ave", "road": "rd", "drive": "dr", "lane": "ln",
    "boulevard": "blvd", "court": "ct", "place": "pl", "terrace": "ter", "circle": "cir",
    "highway": "hwy", "parkway": "pkwy", "north": "n", "south": "s", "east": "e", "west": "w",
    "apartment": "apt", "suite": "ste",
}  # fmt: skip
_SEP = f"[{ASCII_SPACE}]*(?:&|\\+|/|,|\\mand\\M)[{ASCII_SPACE}]*"
_ATOM = "[a-z0-9!#$%&'*+/=?^_`{|}~-]+"
# unbounded repetitions: PostgreSQL's regex engine is slow with {2,63}; lengths are checked apart
_EMAIL_RE = f"^{_ATOM}([.]{_ATOM})*@([a-z0-9]([a-z0-9-]*[a-z0-9])?[.])+([a-z]+|xn--[a-z0-9-]+)$"
_CONTROL_RE = "'[\\x01-\\x1f\\x7f]'"


def is_ascii(value: str) -> str:
    """Whether ``value`` is ASCII (NULL for NULL): the rules below are exact for it."""
    return f"(octet_length({value}) = char_length({value}))"


def cell(value: str) -> str:
    """``NULL`` for a cell empty or only whitespace (:func:`workflows.cole.copy_records`);
    any text."""
    return (
        f"(CASE WHEN ascii({value}) BETWEEN 33 AND 126 THEN {value}"  # the usual: no look
        f" WHEN btrim({value}, {ALL_SPACE_SQL}) = '' THEN NULL ELSE {value} END)"
    )


def only(value: str, allowed: str) -> str:
    """Whether ``value`` holds only characters of ``allowed`` (``ltrim`` is several times
    cheaper than ``translate`` for this)."""
    return f"(ltrim({value}, {allowed}) = '')"


def trim(value: str) -> str:
    """``str.strip()``."""
    return f"btrim({value}, {SPACE_SQL})"


def squash(value: str) -> str:
    """``" ".join(value.split())``."""
    return (
        f"array_to_string(array_remove(string_to_array("
        f"translate({value}, {SPACE_SQL}, {_SPACES_SQL}), ' '), ''), ' ')"
    )


# -- PT1 ---------------------------------------------------------------------------------


def zip5(value: str) -> str:
    """:func:`~workflows.formatting.normalize_zip` (five plain digits, the usual cell, are
    recognised first)."""
    return (
        f"(CASE WHEN length({value}) = 5 AND ltrim({value}, {_DIGITS}) = ''"
        f" THEN nullif({value}, '00000') ELSE {_zip5(value)} END)"
    )


def _zip5(value: str) -> str:
    cleaned = trim(value)
    rest = f"ltrim({cleaned}, {_DIGITS})"
    digits = f"(length({cleaned}) - length({rest}))"
    return f"""(CASE
        WHEN {digits} = 9 AND {rest} = '' THEN left({cleaned}, 5)
        WHEN {digits} NOT BETWEEN 3 AND 5 THEN NULL
        WHEN {rest} = ''
          OR (left({rest}, 1) = '.' AND length({rest}) > 1 AND ltrim(substr({rest}, 2), '0') = '')
          OR (length({rest}) = 5 AND strpos({SPACE_SQL} || '-', left({rest}, 1)) > 0
              AND {only(f"substr({rest}, 2)", _DIGITS)})
        THEN nullif(lpad(left({cleaned}, {digits}), 5, '0'), '00000') END)"""


def key_words(first_name: str, last_name: str, address_1: str) -> str:
    """The three dedupe key parts lower-cased, ``'`` dropped and ``&`` spelled out, joined
    by ``|`` (a ``|`` in a cell is a separator to Python, so it becomes a space first): the
    first half of ``workflows.formatting._key_part``, done once for the three parts."""
    parts = " || '|' || ".join(
        f"replace(coalesce({v}, ''), '|', ' ')" for v in (first_name, last_name, address_1)
    )
    return f"replace(replace(lower({parts}), '''', ''), '&', ' and ')"


def key_material(words: str) -> str:
    """The rest of ``_key_part`` for the three parts of :func:`key_words` (a column: it is
    used three times): runs of anything but letters and digits become one space, parts are
    trimmed, and whole words are abbreviated (each word padded by its own spaces, so adjacent
    words are replaced too). The regular expression runs only when a cell needs it."""
    spaced = (
        f"(CASE WHEN {words} ~ '[^a-z0-9| ]|  |(^|\\|) | ($|\\|)'"
        f" THEN replace(replace(btrim(regexp_replace({words}, '[^a-z0-9|]+', ' ', 'g'), ' '),"
        f" ' |', '|'), '| ', '|') ELSE {words} END)"
    )
    expr = f"(' ' || replace(replace({spaced}, ' ', '  '), '|', ' | ') || ' ')"
    for long, short in _ABBREVIATIONS.items():
        expr = f"replace({expr}, ' {long} ', ' {short} ')"
    return f"btrim(replace(replace({expr}, ' | ', '|'), '  ', ' '))"


def zip_digits(value: str) -> str:
    """The digits of a ZIP cell (the dedupe key's ZIP when :func:`zip5` finds none)."""
    kept = f"coalesce({value}, '')"
    return f"translate({kept}, translate({kept}, {_DIGITS}, ''), '')"


def hashed_key(material: str) -> str:
    """The key of a dedupe material: the first 40 hex digits of its SHA-256."""
    return f"left(encode(sha256(convert_to({material}, 'UTF8')), 'hex'), 40)"


def key_of(words: str, zip_5: str, zip_code: str) -> str:
    """The dedupe key of a row's :func:`key_words`, its :func:`zip5` and its ZIP cell (the
    key's ZIP is the digits of the cell when there is no ZIP5)."""
    return hashed_key(f"{key_material(words)} || '|' || coalesce({zip_5}, {zip_digits(zip_code)})")


def dedupe_key(first_name: str, last_name: str, address_1: str, zip_code: str) -> str:
    """:func:`~workflows.formatting.dedupe_key` in one expression (it repeats its
    arguments: PT1 computes the words and the ZIP5 in an inner query and calls
    :func:`key_of` on them)."""
    return key_of(key_words(first_name, last_name, address_1), zip5(zip_code), zip_code)


# -- PT2 ---------------------------------------------------------------------------------


def state(value: str) -> str:
    """:func:`~workflows.formatting.normalize_state` (a plain USPS code, the usual cell,
    is recognised first)."""
    squashed = squash(value)
    return (
        f"(CASE WHEN {value} = ANY ({_STATE_CODES}::text[]) THEN {value}"
        f" WHEN upper({squashed}) = ANY ({_STATE_CODES}::text[]) THEN upper({squashed})"
        f" ELSE {_STATE_NAMES}::jsonb ->> lower({squashed}) END)"
    )


def purchase_date(value: str) -> str:
    """:func:`~workflows.formatting.parse_purchase_date` (a ``date`` or NULL); a cell of
    the usual ``MM/DD/YYYY`` shape is checked by one regular expression, then by arithmetic
    (the first of the month plus the days must stay in that month)."""
    m, d, y = (f"split_part({value}, '/', {i})::integer" for i in (1, 2, 3))
    first = f"make_date({y}, {m}, 1)"
    return f"""(CASE WHEN {value} IS NULL THEN NULL
        WHEN {value} ~ '^[0-9]{{1,2}}/[0-9]{{1,2}}/[0-9]{{4}}$'
        THEN CASE WHEN {m} BETWEEN 1 AND 12 AND {y} >= 1 AND {d} BETWEEN 1 AND 31
                       AND extract(month FROM {first} + ({d} - 1)) = {m}
                  THEN {first} + ({d} - 1) END
        ELSE {_purchase_date(value)} END)"""


def _purchase_date(value: str) -> str:
    t = trim(value)
    m, d, y = (f"split_part({t}, '/', {i})" for i in (1, 2, 3))
    return f"""(CASE WHEN length({t}) - length(replace({t}, '/', '')) = 2
             AND length({m}) BETWEEN 1 AND 2 AND {only(m, _DIGITS)}
             AND length({d}) BETWEEN 1 AND 2 AND {only(d, _DIGITS)}
             AND length({y}) = 4 AND {only(y, _DIGITS)}
             AND {m}::integer BETWEEN 1 AND 12 AND {y}::integer >= 1
             AND {d}::integer BETWEEN 1 AND CASE
                 WHEN {m}::integer IN (4, 6, 9, 11) THEN 30
                 WHEN {m}::integer <> 2 THEN 31
                 WHEN {y}::integer % 4 = 0 AND ({y}::integer % 100 <> 0 OR {y}::integer % 400 = 0)
                 THEN 29 ELSE 28 END
        THEN make_date({y}::integer, {m}::integer, {d}::integer) END)"""


def _money_number(num: str) -> str:
    plain = f"replace({num}, ',', '')"
    int_part = f"split_part({num}, '.', 1)"
    commas = f"(length({int_part}) - length(replace({int_part}, ',', '')))"
    lead = f"(length({int_part}) - 4 * {commas})"
    grouped = (
        f"({lead} BETWEEN 1 AND 3 AND translate({int_part}, {_DIGITS}, 'dddddddddd')"
        f" = repeat('d', {lead}) || repeat(',ddd', {commas}))"
    )
    return f"""(CASE WHEN {only(plain, "'0123456789.'")}
             AND length({num}) - length(replace({num}, '.', '')) <= 1
             AND right({num}, 1) <> '.' AND {plain} NOT IN ('', '.')
             AND (strpos({num}, ',') = 0
                  OR (strpos(split_part({num}, '.', 2), ',') = 0 AND {grouped}))
        THEN {plain}::numeric END)"""


def _money_suffixed(body: str) -> str:
    before = f"rtrim(left({body}, -1), {SPACE_SQL})"
    return f"""(CASE WHEN right({body}, 1) IN ('k', 'K') THEN {_money_number(before)} * 1000
            WHEN right({body}, 1) IN ('m', 'M') THEN {_money_number(before)} * 1000000
            ELSE {_money_number(body)} END)"""


def money(value: str) -> str:
    """:func:`~workflows.formatting.parse_money` (``numeric`` or NULL). ``value`` should be
    a column: the result repeats it many times."""
    t = trim(value)
    after_dollar = f"ltrim(substr({t}, 2), {SPACE_SQL})"
    return (
        f"(CASE WHEN {value} IS NULL THEN NULL"
        f" WHEN {value} ~ '^[$]?([0-9]{{1,3}}(,[0-9]{{3}})+|[0-9]+)$'"
        f" THEN replace(replace({value}, '$', ''), ',', '')::numeric"
        f" WHEN left({t}, 1) = '$' THEN {_money_suffixed(after_dollar)}"
        f" ELSE {_money_suffixed(t)} END)"
    )


def strip_markup(value: str) -> str:
    """:func:`~workflows.cell_safety.strip_markup` (tags removed by ``lead_strip_tags``)."""
    return (
        f"btrim(CASE WHEN strpos({value}, '<') > 0 OR strpos({value}, '>') > 0"
        f" THEN lead_strip_tags({value}) ELSE {value} END, {SPACE_SQL})"
    )


def tidy_case(name: str) -> str:
    return (
        f"(CASE WHEN {name} <> upper({name}) AND {name} <> lower({name}) THEN {name}"
        f" WHEN {name} !~ '[0-9]' THEN initcap({name}) ELSE {_tidy_case(name)} END)"
    )


def _tidy_case(name: str) -> str:
    """``workflows.formatting._tidy_case``. ``initcap()`` also capitalises after a digit,
    Python only after a non-letter-non-digit: the digits hide as control characters
    meanwhile (a name holding those is refused anyway)."""
    return (
        f"(CASE WHEN {name} <> upper({name}) AND {name} <> lower({name}) THEN {name}"
        f" ELSE translate(initcap(translate({name}, {_DIGITS}, {_HIDDEN_DIGITS})),"
        f" {_HIDDEN_DIGITS}, {_DIGITS}) END)"
    )


def greeting_part(original: str) -> str:
    """The first name of :func:`~workflows.formatting.split_household_names` before
    :func:`tidy_case`, NULL when none is left; ``original`` is the stripped cell."""
    first = (
        f"(regexp_split_to_array(regexp_replace({original}, {quoted(f'^(?:{_SEP})+')}, '', 'i'),"
        f" {quoted(_SEP)}, 'i'))[1]"
    )
    return f"""nullif(CASE WHEN {original} ~ '^[A-Za-z.''-]+$'
              THEN CASE WHEN lower({original}) = 'and' THEN '' ELSE {original} END
         WHEN strpos(lower({original}), 'and') = 0
              AND strpos({original}, '&') = 0 AND strpos({original}, '+') = 0
              AND strpos({original}, '/') = 0 AND strpos({original}, ',') = 0
         THEN {squash(original)} ELSE {squash(first)} END, '')"""


def unsafe_reason(field: str, value: str) -> str:
    """:func:`~workflows.cell_safety.unsafe_text_reason` (``field`` is a plain name)."""
    first = f"left(ltrim({value}, {SPACE_SQL}), 1)"
    control = f"substring({value} FROM {_CONTROL_RE})"
    return f"""(CASE
    WHEN {value} IS NULL OR {value} = '' THEN NULL
    WHEN left({value}, 1) = E'\\t' THEN '{field} starts with a tab (spreadsheet formula)'
    WHEN left({value}, 1) = E'\\r'
    THEN '{field} starts with a carriage return (spreadsheet formula)'
    WHEN left({value}, 1) = E'\\n' THEN '{field} starts with a line feed (spreadsheet formula)'
    WHEN {first} IN ('=', '+', '-', '@')
    THEN '{field} starts with ''' || {first} || ''' (spreadsheet formula)'
    WHEN {value} ~ {_CONTROL_RE}
    THEN '{field} contains a control character (' || CASE {control}
        WHEN E'\\t' THEN 'tab' WHEN E'\\r' THEN 'carriage return' WHEN E'\\n' THEN 'line feed'
        ELSE 'U+' || lpad(upper(to_hex(ascii({control}))), 4, '0') END || ')'
END)"""


def email(value: str) -> str:
    """:func:`~workflows.formatting.normalize_email`."""
    return f"nullif(lower({trim(value)}), '')"


def email_valid(value: str) -> str:
    """:func:`~workflows.formatting.is_valid_email_syntax` of a normalised email column: one
    regular expression for the shape, string functions for the lengths."""
    at = f"strpos({value}, '@')"
    tld = f"split_part({value}, '.', -1)"
    return f"""({value} ~ {quoted(_EMAIL_RE)}
   AND length({value}) <= 254 AND {at} <= 65 AND length({value}) - {at} <= 253
   AND length({tld}) BETWEEN 2 AND 63 AND right({value}, 1) <> '-'
   AND (length({value}) - {at} <= 63 OR split_part({value}, '@', 2) !~ '[^.]{{64}}'))"""


def email_unsafe_reason(value: str) -> str:
    """:func:`~workflows.cell_safety.unsafe_email_reason` of a valid email column."""
    return (
        f"(CASE WHEN left({value}, 1) IN ('=', '+', '-', '@') THEN 'email local part starts"
        f" with ''' || left({value}, 1) || ''' (spreadsheet formula)' END)"
    )


def phone(value: str) -> str:
    """:func:`~workflows.formatting.normalize_phone` (US shapes without a country code,
    the usual cells, are recognised first)."""
    return (
        f"(CASE WHEN {value} IS NULL THEN NULL"
        f" WHEN {value} ~ '^[(]?[0-9]{{3}}[)]?[ .-]?[0-9]{{3}}[ .-]?[0-9]{{4}}$'"
        f" THEN replace(replace(replace(replace(replace({value}, '(', ''), ')', ''), ' ', ''),"
        f" '-', ''), '.', '') ELSE {_phone(value)} END)"
    )


def _phone(value: str) -> str:
    t = trim(value)
    body = f"(CASE WHEN left({t}, 1) = '+' THEN substr({t}, 2) ELSE {t} END)"
    digits = f"translate({t}, {SPACE_SQL} || '+().-', '')"
    return f"""(CASE WHEN {body} <> ''
             AND strpos('0123456789(', left({body}, 1)) > 0
             AND {only(body, f"{SPACE_SQL} || '0123456789().-'")}
        THEN CASE WHEN length({digits}) = 11 AND left({digits}, 1) = '1' THEN substr({digits}, 2)
                  WHEN length({digits}) BETWEEN 7 AND 15 THEN {digits} END END)"""


def optional_text(value: str) -> str:
    """:func:`~workflows.cell_safety.safe_optional_text` (a plain date, the usual cell, is
    kept as it is)."""
    return f"""(CASE WHEN {value} IS NULL THEN NULL WHEN {value} ~ '^[0-9/]+$' THEN {value}
            WHEN left({value}, 1) IN (E'\\t', E'\\r', E'\\n')
              OR left(ltrim({value}, {SPACE_SQL}), 1) IN ('=', '+', '-', '@')
              OR strpos({value}, '<') > 0 OR strpos({value}, '>') > 0
              OR {value} ~ {_CONTROL_RE}
            THEN NULL ELSE nullif({trim(value)}, '') END)"""


def unsafe_row_reason(original: str, greeting: str, last_name: str, address: str, city: str) -> str:
    """:func:`~workflows.cell_safety.unsafe_row_reason` of stripped columns; one regular
    expression decides whether any of them needs a closer look."""
    fields = (
        ("first_name", original),
        ("first_name", greeting),
        ("last_name", last_name),
        ("address_1", address),
        ("city", city),
    )
    reasons = ", ".join(unsafe_reason(f, v) for f, v in fields)
    # a formula start after a separator, or a control or whitespace character anywhere:
    # only then are the five reasons worked out (a '|' in a cell only costs that)
    joined = f"concat_ws('|', {', '.join(v for _, v in fields)})"
    suspect = f"'(^|[|])[{ASCII_SPACE}]*[=+@-]|[\\x01-\\x1f\\x7f]'"
    return f"(CASE WHEN {joined} ~ {suspect} THEN coalesce({reasons}) END)"


# -- PT4 ---------------------------------------------------------------------------------


def iso_date(value: str) -> str:
    """A ``date`` as ``datetime.date.isoformat()`` writes it, whatever the session's
    ``DateStyle``."""
    return f"to_char({value}, 'YYYY-MM-DD')"


def whole_dollars(value: str) -> str:
    """A ``numeric`` as ``f"{Decimal(value):.0f}"`` writes it: rounded half to even (SQL's
    ``round`` rounds halves away from zero), and ``-0`` for -0.5 to just under 0 (no ``%``
    signs: the result goes into queries with parameters)."""
    return (
        f"(CASE WHEN {value} < 0 AND {value} >= -0.5 THEN '-0'"
        f" WHEN abs(mod({value}, 1)) = 0.5 AND mod(trunc({value}), 2) = 0"
        f" THEN trunc({value})::text"
        f" ELSE round({value})::text END)"
    )
