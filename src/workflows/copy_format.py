"""PostgreSQL COPY text format, built in Python for bulk loads (PT1 and PT2).

Sending pre-built text blocks with ``copy.write`` is several times faster than psycopg's
per-row ``copy.write_row`` for tens of thousands of rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
BLOCK_ROWS = 5_000


def copy_text_line(record: tuple[Any, ...]) -> str:
    """One row in PostgreSQL's COPY text format (``\\N`` for NULL, specials escaped).

    Building the text in Python and sending it in blocks is several times faster than
    psycopg's per-row ``write_row``. Cells rarely hold a tab, a line break or a backslash,
    so the row is joined first and escaped cell by cell only when it needs to be.
    """
    values = "".join(str(cell) for cell in record if cell is not None)
    if "\t" in values or "\n" in values or "\r" in values or "\\" in values:
        cells = ["\\N" if c is None else str(c).translate(COPY_ESCAPES) for c in record]
    else:
        cells = ["\\N" if c is None else str(c) for c in record]
    return "\t".join(cells) + "\n"


def copy_text_blocks(rows: Sequence[tuple[Any, ...]], block_rows: int = BLOCK_ROWS) -> list[str]:
    """The rows as COPY text, in blocks of ``block_rows`` rows."""
    return [
        "".join(copy_text_line(r) for r in rows[i : i + block_rows])
        for i in range(0, len(rows), block_rows)
    ]
