"""Reading one Cole export file within limits: the untrusted-input half of PT1.

A file in the inbox is whatever someone dropped there, so reading it is bounded: at most
:data:`MAX_EXPORT_BYTES` bytes, no line longer than :data:`MAX_LINE_CHARS` characters, at most
:data:`MAX_EXPORT_RECORDS` records (Cole's own export limit), read line by line (only the
current record's lines are held besides the parsed rows). Beyond a limit, or when the text is
neither UTF-8 nor Windows-1252, :class:`~workflows.cole.ColeFormatError` is raised; its
message gives numbers and Cole's own column names, never the file's text (see
:func:`~workflows.cole.validate_header` for the one short, sanitised exception).

Usage::

    read_export_header(path, display_name="Acme/2027-01/tx.csv")  # cheap: stops at the header
    export = read_export(path, display_name="Acme/2027-01/tx.csv")
    export.rows, export.bad_rows, export.sha256
"""

from __future__ import annotations

import codecs
import csv
import hashlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from workflows.bounded_text import (
    LineTooLong,
    NotText,
    TextLimitError,
    TextLimits,
    TextRead,
    TextTooLarge,
    iter_text_lines,
    read_text,
)
from workflows.cole import (
    COLE_COLUMNS,
    MAX_RAW_CHARS,
    BadRow,
    ColeExport,
    ColeFormatError,
    ColeRow,
    validate_header,
)

T = TypeVar("T")

MAX_EXPORT_RECORDS = 10_000
"""Cole's own limit on records per export; a file with more is not one export."""
MAX_EXPORT_BYTES = 50 * 1024 * 1024
"""50 MiB per file: 10,000 records are a few MB, so this leaves room for odd exports while a
stray huge file is refused before it is read."""
MAX_LINE_CHARS = 1024 * 1024
"""A physical line longer than this (1 Mi characters) means the file is not a Cole export;
reading stops there instead of holding the line."""
EXPORT_LIMITS = TextLimits(max_bytes=MAX_EXPORT_BYTES, max_line_chars=MAX_LINE_CHARS)

_NCOLS = len(COLE_COLUMNS)


def parse_export_lines(
    lines: Iterable[str], file: str, *, max_records: int | None = None
) -> Iterator[ColeRow | BadRow]:
    """Yield the rows of an export's text lines in file order, validating the header first.

    This is the streaming core of :func:`read_export`; the header check runs on the first
    ``next()``. Lines must keep their ends and be split only at CR/LF (``newline=""``), never
    at other Unicode line breaks, so quoted cells may span lines and line numbers match what
    an editor shows. Only the lines of the current record are held. More than
    ``max_records`` records (good and bad rows) raise :class:`ColeFormatError`.
    """
    pending: list[str] = []  # the lines of the record being read, for a BadRow's raw text
    nul = [False]

    def feed() -> Iterator[str]:
        for line in lines:
            pending.append(line)
            if "\x00" in line:
                nul[0] = True
            yield line

    reader = csv.reader(feed())
    consumed = 0  # lines consumed by the csv reader before the current record
    records = 0
    order: list[int] | None = None
    canonical = False
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. a cell above the csv module's 128 KiB field limit
            start, consumed = consumed + 1, reader.line_num
            if order is None:
                raise ColeFormatError(file, f"unreadable header: {exc}", row=start) from None
            records += 1
            _check_records(records, max_records, file, start)
            yield BadRow(file, start, f"unreadable row: {exc}", _raw(pending))
            pending.clear()
            nul[0] = False
            continue
        start, consumed = consumed + 1, reader.line_num
        if not cells or not "".join(cells).strip():
            pending.clear()
            nul[0] = False
            continue  # blank line, or an all-empty spreadsheet row
        if order is None:
            order = validate_header(cells, file, row=start)
            canonical = order == list(range(_NCOLS))
            pending.clear()
            nul[0] = False
            continue
        records += 1
        _check_records(records, max_records, file, start)
        if len(cells) != _NCOLS:
            reason = f"expected {_NCOLS} cells, got {len(cells)}"
            yield BadRow(file, start, reason, _raw(pending))
        elif nul[0] and "\x00" in "".join(cells):
            yield BadRow(file, start, "contains NUL byte", _raw(pending))
        else:
            c = cells if canonical else [cells[i] for i in order]
            yield ColeRow(
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11], c[12],
                start, file,
            )  # fmt: skip
        pending.clear()
        nul[0] = False
    if order is None:
        raise ColeFormatError(file, "file is empty")


def read_export(
    path: Path, *, display_name: str | None = None, max_records: int = MAX_EXPORT_RECORDS
) -> ColeExport:
    """Read and parse one export file, within :data:`EXPORT_LIMITS` and ``max_records``.

    ``display_name`` is how the file is named in rows, bad rows and errors (default: the file
    name); pass the inbox-relative path, e.g. ``"tx/march.csv"``, so it is stable across hosts.
    The file is read line by line: UTF-8 (with or without BOM) first; bytes that are not
    UTF-8 are almost always an Excel re-save in Windows-1252 (``José`` as ``4A 6F 73 E9``),
    which is the fallback, read again from the start. Only the parsed rows are kept.
    """
    name = display_name or path.name

    def parse(lines: Iterator[str]) -> tuple[list[ColeRow], list[BadRow]]:
        rows: list[ColeRow] = []
        bad_rows: list[BadRow] = []
        good, bad = rows.append, bad_rows.append
        for item in parse_export_lines(lines, name, max_records=max_records):
            if isinstance(item, ColeRow):
                good(item)
            else:
                bad(item)
        return rows, bad_rows

    result = _read_text(path, name, parse)
    rows, bad_rows = result.value
    return ColeExport(name, result.sha256, result.encoding, rows, bad_rows)


def read_export_header(path: Path, *, display_name: str | None = None) -> None:
    """Check that a file is a readable Cole export by its header alone (cheap: reading
    stops at the first row), raising :class:`ColeFormatError` as :func:`read_export` would."""
    name = display_name or path.name
    _read_text(path, name, lambda lines: next(iter(parse_export_lines(lines, name)), None))


def iter_export_rows(
    path: Path, *, display_name: str | None = None, max_records: int = MAX_EXPORT_RECORDS
) -> Iterator[ColeRow | BadRow]:
    """Like :func:`read_export` but yields rows one at a time, without keeping them (the
    file is read once more first, to settle its encoding)."""
    name = display_name or path.name
    encoding = _read_text(path, name, lambda lines: deque(lines, maxlen=0)).encoding
    lines = iter_text_lines(path, encoding=encoding.removesuffix("-sig"), limits=EXPORT_LIMITS)
    return parse_export_lines(_translated(lines, name), name, max_records=max_records)


def _raw(lines: list[str]) -> str:
    """The text of a record's file lines for a :class:`BadRow`."""
    text = "".join(lines).rstrip("\r\n")
    return text.replace("\x00", "\ufffd")[:MAX_RAW_CHARS]


def _check_records(records: int, max_records: int | None, file: str, row: int) -> None:
    if max_records is not None and records > max_records:
        raise ColeFormatError(
            file,
            f"more than {max_records:,} records (at line {row}): a Cole export holds at most "
            f"{MAX_EXPORT_RECORDS:,}; split the search",
            row=row,
        )


def _read_text(path: Path, file: str, consume: Callable[[Iterator[str]], T]) -> TextRead[T]:
    """:func:`~workflows.bounded_text.read_text` within :data:`EXPORT_LIMITS`, its errors
    turned into :class:`ColeFormatError` (numbers only, never the file's text)."""
    try:
        return read_text(path, consume, limits=EXPORT_LIMITS)
    except TextLimitError as exc:
        raise _format_error(exc, file) from None


def _translated(lines: Iterator[str], file: str) -> Iterator[str]:
    try:
        yield from lines
    except (TextLimitError, UnicodeDecodeError) as exc:
        if isinstance(exc, UnicodeDecodeError):
            raise ColeFormatError(file, "file changed while being read") from None
        raise _format_error(exc, file) from None


def _format_error(exc: TextLimitError, file: str) -> ColeFormatError:
    if isinstance(exc, TextTooLarge):
        return ColeFormatError(
            file, f"file is larger than {exc.max_bytes:,} bytes, the limit for one Cole export"
        )
    if isinstance(exc, LineTooLong):
        return ColeFormatError(
            file,
            f"line {exc.line_number} is longer than {exc.max_line_chars:,} characters: "
            "not a Cole CSV export",
            row=exc.line_number,
        )
    return ColeFormatError(file, "not valid UTF-8 or Windows-1252 text")


@dataclass(frozen=True, slots=True)
class ExportBytes:
    """A whole export read within the limits, for PostgreSQL to parse (PT1's fast path).

    ``data`` is the file as UTF-8 without its byte order mark (a Windows-1252 file is
    re-encoded); ``sha256`` and ``encoding`` are those :func:`read_export` reports for the
    same file.
    """

    file: str
    sha256: str
    encoding: str
    data: bytes


def read_export_bytes(path: Path, *, display_name: str | None = None) -> ExportBytes:
    """Read a whole export (at most :data:`MAX_EXPORT_BYTES`) and settle its encoding as
    :func:`read_export` does, without parsing it. The line length limit is the caller's to
    check (see :mod:`workflows.cole_csv_copy`); errors are :class:`ColeFormatError`."""
    name = display_name or path.name
    with path.open("rb") as handle:
        raw = handle.read(MAX_EXPORT_BYTES + 1)
    if len(raw) > MAX_EXPORT_BYTES:
        raise _format_error(TextTooLarge(MAX_EXPORT_BYTES), name)
    digest = hashlib.sha256(raw).hexdigest()
    bom = raw.startswith(codecs.BOM_UTF8)
    data = raw[len(codecs.BOM_UTF8) :] if bom else raw
    try:
        data.decode("utf-8")
        encoding = "utf-8-sig" if bom else "utf-8"
    except UnicodeDecodeError:
        try:
            data = data.decode("cp1252").encode("utf-8")
        except UnicodeDecodeError:
            raise _format_error(NotText(("utf-8", "cp1252")), name) from None
        encoding = "cp1252-sig" if bom else "cp1252"
    return ExportBytes(name, digest, encoding, data)
