"""Which Cole exports PostgreSQL may parse itself (PT1's fast path), checked cheaply.

Parsing a CSV in Python costs PT1 more than everything else together, while
``COPY ... FROM STDIN (FORMAT csv)`` parses the file's bytes at several hundred thousand rows a
second. The two parsers agree on every file a CSV writer produces (Cole's downloads, Excel's
"CSV UTF-8"), but not on hand-edited oddities, and ``COPY`` cannot keep going past a bad row.
So :func:`plan_csv_copy` looks at the bytes with a few whole-buffer scans (no per-row Python)
and sends to ``COPY`` only a file where nothing can differ; anything else goes to the Python
reader (:func:`workflows.cole_reader.read_export`), which keeps its bad rows, as before.
A file is sent to the Python reader when it has

* a NUL byte, or a line longer than the reader's limit (its errors and bad rows need it);
* a header that is not the first line, or holds a quote (a header is validated in Python
  either way; this only keeps the split simple);
* a quote with ordinary text on both sides (``ab"c``): Python's reader keeps it, PostgreSQL
  would start a quoted section there. (A quote at the very end of an unquoted cell is not
  caught by this scan; PostgreSQL then swallows the next delimiter and the row's cell count
  no longer matches, so ``COPY`` fails and the Python reader takes the file.)

Other differences show up when the file is loaded, and the caller then rolls the ``COPY``
back and uses the Python reader: a row with the wrong number of cells or a blank line make
``COPY`` fail, and a quoted cell spanning lines makes the staged row count differ from the
line count (row numbers are line numbers as Python's reader counts them, a lone carriage
return ending a line too, so every record must be one line).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass

from workflows.cole import validate_header
from workflows.cole_reader import MAX_LINE_CHARS, ExportBytes

_MID_CELL_QUOTE = re.compile(rb'[^,\n"]"[^,\r\n"]')


@dataclass(frozen=True, slots=True)
class CsvCopyPlan:
    """How to stage one export with ``COPY``: ``order[i]`` is the header position of
    Cole column ``i``, ``body`` the bytes after the header line, ``lines`` the number of
    lines in ``body`` (each must become one staged row; the first is file line 2)."""

    order: list[int]
    body: bytes
    lines: int


def plan_csv_copy(export: ExportBytes) -> CsvCopyPlan | None:
    """A plan for ``COPY``, or ``None`` when the file must be read in Python (see the
    module docstring). Raises :class:`~workflows.cole.ColeFormatError` for a bad header."""
    data = export.data
    if b"\x00" in data or _MID_CELL_QUOTE.search(data) is not None:
        return None
    if len(data) > MAX_LINE_CHARS and max(map(len, data.split(b"\n"))) > MAX_LINE_CHARS:
        return None
    end = data.find(b"\n")
    header_line = data if end < 0 else data[:end]
    if b'"' in header_line or not header_line.strip(b" \t\r,"):
        return None
    cells = next(csv.reader([header_line.decode("utf-8")]))
    order = validate_header(cells, export.file)
    body = b"" if end < 0 else data[end + 1 :]
    # lines as Python's reader counts them: CRLF, LF and a lone CR each end one
    ends = body.count(b"\n") + body.count(b"\r") - body.count(b"\r\n")
    lines = ends + (0 if body.endswith((b"\n", b"\r")) or not body else 1)
    return CsvCopyPlan(order, body, lines)
