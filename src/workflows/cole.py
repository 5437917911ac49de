"""Cole X Dates CSV exports: their format, rows and drop location (PT1, no database).

Cole has no API; an operator downloads one CSV per state search (at most 10,000 records each)
into the drop location ``<inbox>/<client dir>/<YYYY-MM>/``. Real exports are messy, so this
module (with :mod:`workflows.cole_reader`, which reads a file within limits) is strict about
what breaks the whole file and lenient about what breaks one row:

* a wrong header (missing, unknown, duplicated or empty column name), an empty file, text
  that is neither UTF-8 nor Windows-1252, or a file beyond the reader's limits raises
  :class:`ColeFormatError`, a :class:`~orchestrator.PermanentError`: no retry can fix
  the file, a person must. Its message never quotes the file beyond a short, sanitised
  excerpt of a recognisable Cole header;
* a row with the wrong number of cells, a NUL byte or an oversized cell becomes a
  :class:`BadRow` kept for the report, and reading goes on (a NUL is not stripped: it means a
  corrupt download, so the row's other cells are suspect too, and PostgreSQL text cannot hold
  one anyway);
* blank lines (and lines of nothing but commas, as spreadsheets leave them) are skipped;
* cell text is kept verbatim: cleaning is PT2's job and the raw row is the audit record.

Usage (``read_export`` is :func:`workflows.cole_reader.read_export`)::

    for path in discover_exports(inbox, "Acme & Sons", "2025-03"):
        export = read_export(path, display_name=path.relative_to(inbox).as_posix())
        for record in copy_records(export):
            copy.write_row(record)  # COPY cole_raw (<COPY_COLUMNS>) FROM STDIN
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator import PermanentError

COLE_COLUMNS: tuple[str, ...] = (
    "First_Name",
    "Last_Name",
    "Address_1",
    "City",
    "State",
    "Zip",
    "Cell Phone Number",
    "Email_Address",
    "Purchase_Date",
    "Home_Value",
    "Head_Household",
    "Income",
    "Date_of_Birth",
)
"""The 13 export headers, in the order Cole writes them."""

FIELD_NAMES: tuple[str, ...] = (
    "first_name",
    "last_name",
    "address_1",
    "city",
    "state",
    "zip",
    "cell_phone_number",
    "email_address",
    "purchase_date",
    "home_value",
    "head_household",
    "income",
    "date_of_birth",
)
"""The :class:`ColeRow` attribute for each entry of :data:`COLE_COLUMNS`, same order."""

COPY_COLUMNS: tuple[str, ...] = (*FIELD_NAMES, "row_number", "source_file")
"""Column order of the tuples from :func:`copy_records`; name them in the ``COPY`` statement."""

MAX_RAW_CHARS = 2_000
"""A :class:`BadRow` keeps at most this much of the offending text (a runaway quote can
swallow the rest of a file into one row)."""

MAX_QUOTED_NAME_CHARS = 40
"""An error quotes at most this much of an unknown column name."""

_BOM = "\ufeff"
_NCOLS = len(COLE_COLUMNS)
_MONTH_RE = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9._-]+")


class ColeFormatError(PermanentError):
    """A Cole export cannot be read at all; the message names the file and the column.

    >>> str(ColeFormatError("tx/march.csv", "missing column 'Zip'", column="Zip", row=1))
    "cole export 'tx/march.csv': missing column 'Zip'"
    """

    def __init__(
        self, file: str, problem: str, *, column: str | None = None, row: int | None = None
    ) -> None:
        super().__init__(f"cole export {file!r}: {problem}")
        self.file = file
        self.column = column
        self.row = row
        self.problem = problem


class ExportLocationError(PermanentError, ValueError):
    """A client name or month cannot be turned into a safe inbox directory."""


@dataclass(frozen=True, slots=True)
class ColeRow:
    """One well-formed export row, cells verbatim (not stripped, blanks kept as ``""``).

    ``row_number`` is the 1-based line of the file on which the record starts, the header
    being line 1, so an operator can open the file at that line.
    """

    first_name: str
    last_name: str
    address_1: str
    city: str
    state: str
    zip: str
    cell_phone_number: str
    email_address: str
    purchase_date: str
    home_value: str
    head_household: str
    income: str
    date_of_birth: str
    row_number: int
    source_file: str


@dataclass(frozen=True, slots=True)
class BadRow:
    """A row that could not be taken: why, where, and its text (NULs shown as U+FFFD,
    at most :data:`MAX_RAW_CHARS` characters, line ending removed)."""

    source_file: str
    row_number: int
    reason: str
    raw: str


@dataclass(frozen=True, slots=True)
class ColeExport:
    """A parsed export. ``sha256`` hashes the raw bytes, so a re-dropped identical file can be
    recognised as already loaded whatever its name."""

    file: str
    sha256: str
    encoding: str
    rows: list[ColeRow] = field(default_factory=list)
    bad_rows: list[BadRow] = field(default_factory=list)


def validate_header(header: Sequence[str], file: str, *, row: int = 1) -> list[int]:
    """Check a header row; return, for each of :data:`COLE_COLUMNS`, its index in ``header``.

    Surrounding whitespace and a leading UTF-8 BOM are tolerated; names are otherwise exact
    (case included): a near miss is reported with a hint rather than guessed. Column order
    may differ from Cole's. ``row`` is the header's line number, for the error.

    The file may be anything someone dropped (or named), so an error quotes a column name
    only when the header is recognisably Cole's (most of its names are Cole columns), and
    then at most :data:`MAX_QUOTED_NAME_CHARS` printable characters of it; any other first
    line is "not a Cole CSV export (header not recognised)", quoting nothing.

    >>> validate_header(["\\ufeffFirst_Name ", *COLE_COLUMNS[1:]], "x.csv")[:3]
    [0, 1, 2]
    """
    names = [cell.strip().removeprefix(_BOM).strip() for cell in header]
    if not any(names):
        raise ColeFormatError(file, "header row is blank", row=row)
    known = set(COLE_COLUMNS)
    by_lower = {c.lower(): c for c in COLE_COLUMNS}
    if not looks_like_cole_header(names):
        raise ColeFormatError(file, "not a Cole CSV export (header not recognised)", row=row)
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if not name:
            raise ColeFormatError(file, f"empty column name at position {index + 1}", row=row)
        if name in seen:
            quoted = quote_column_name(name)
            raise ColeFormatError(file, f"duplicated column {quoted}", column=name, row=row)
        if name not in known:
            missing = [c for c in COLE_COLUMNS if c not in names]
            hint = by_lower.get(name.lower())
            detail = f"unknown column {quote_column_name(name)}"
            if hint is not None:
                detail += f" (did you mean {hint!r}?)"
            elif missing:
                detail += f" (missing {', '.join(map(repr, missing))})"
            raise ColeFormatError(file, detail, column=name, row=row)
        seen[name] = index
    missing = [c for c in COLE_COLUMNS if c not in seen]
    if missing:
        label = "column" if len(missing) == 1 else "columns"
        detail = f"missing {label} {', '.join(map(repr, missing))}"
        raise ColeFormatError(file, detail, column=missing[0], row=row)
    return [seen[c] for c in COLE_COLUMNS]


def looks_like_cole_header(names: Sequence[str]) -> bool:
    """Whether a first line is recognisably a Cole header: more than half of Cole's 13 column
    names are among its cells (any case), and it has no more than 13 + 3 cells.

    >>> looks_like_cole_header(["root:x:0:0:root:/root:/bin/bash"])
    False
    """
    if len(names) > _NCOLS + 3:
        return False
    lowered = {c.lower() for c in COLE_COLUMNS}
    return sum(1 for name in set(names) if name.lower() in lowered) * 2 > _NCOLS


def quote_column_name(name: str) -> str:
    """A column name fit for an error message: ``repr`` of its first
    :data:`MAX_QUOTED_NAME_CHARS` characters, anything unprintable shown as ``?``.

    >>> quote_column_name("Zip\\x1b[2J")
    "'Zip?[2J'"
    """
    shown = "".join(ch if ch.isprintable() else "?" for ch in name[:MAX_QUOTED_NAME_CHARS])
    return repr(shown + ("..." if len(name) > MAX_QUOTED_NAME_CHARS else ""))


CopyRecord = tuple[
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    int,
    str,
]


def copy_records(export: ColeExport) -> Iterator[CopyRecord]:
    """Yield one tuple per good row in :data:`COPY_COLUMNS` order, for psycopg's
    ``copy.write_row``. A cell that is empty or only whitespace becomes ``None`` (SQL NULL);
    any other cell is passed verbatim, surrounding spaces and quotes included.
    """
    for r in export.rows:
        yield (
            r.first_name if r.first_name.strip() else None,
            r.last_name if r.last_name.strip() else None,
            r.address_1 if r.address_1.strip() else None,
            r.city if r.city.strip() else None,
            r.state if r.state.strip() else None,
            r.zip if r.zip.strip() else None,
            r.cell_phone_number if r.cell_phone_number.strip() else None,
            r.email_address if r.email_address.strip() else None,
            r.purchase_date if r.purchase_date.strip() else None,
            r.home_value if r.home_value.strip() else None,
            r.head_household if r.head_household.strip() else None,
            r.income if r.income.strip() else None,
            r.date_of_birth if r.date_of_birth.strip() else None,
            r.row_number,
            r.source_file,
        )


def client_dir_name(client: str) -> str:
    """Map a client's display name to its inbox directory name.

    Accents are dropped, every run of characters outside ``[A-Za-z0-9._-]`` becomes one
    ``_``, and names that could escape or hide in the inbox (containing ``..``, starting with
    ``.``, empty, longer than 255) are refused with :class:`ExportLocationError`. Distinct
    clients could map to the same directory (``"A&B"``, ``"A B"``); the client registry should
    keep these names unique.

    >>> client_dir_name("Smith & Jones Insurance")
    'Smith_Jones_Insurance'
    >>> client_dir_name("José's Agency")
    'Jose_s_Agency'
    """
    ascii_name = unicodedata.normalize("NFKD", client).encode("ascii", "ignore").decode("ascii")
    name = _UNSAFE_RUN.sub("_", ascii_name.strip())
    if not name.strip("_") or ".." in name or name.startswith(".") or len(name) > 255:
        raise ExportLocationError(f"client name {client!r} cannot be used as an inbox directory")
    return name


def export_dir(inbox: Path, client: str, month: str) -> Path:
    """The drop directory ``<inbox>/<client_dir_name(client)>/<month>`` (``month`` is
    ``YYYY-MM``, anything else raises :class:`ExportLocationError`)."""
    if not _MONTH_RE.fullmatch(month):
        raise ExportLocationError(f"month {month!r} is not YYYY-MM")
    return inbox / client_dir_name(client) / month


def discover_exports(inbox: Path, client: str, month: str) -> list[Path]:
    """Every ``*.csv`` (any case) in or below the client-month drop directory, sorted by
    relative path; ``[]`` if the directory does not exist.

    Hidden files and Office lock files (``.x.csv``, ``~$x.csv``, e.g. macOS ``._`` resource
    forks, which are binary) are ignored, as are symlinks that lead outside the directory.
    """
    base = export_dir(inbox, client, month)
    if not base.is_dir():
        return []
    root = base.resolve()
    found: list[tuple[str, Path]] = []
    for path in base.rglob("*"):
        rel = path.relative_to(base)
        if path.suffix.lower() != ".csv" or any(p.startswith((".", "~$")) for p in rel.parts):
            continue
        if path.is_file() and path.resolve().is_relative_to(root):
            found.append((rel.as_posix(), path))
    return [path for _, path in sorted(found)]
