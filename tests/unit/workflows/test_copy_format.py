"""Bulk loads send rows in COPY text format: every special character must survive."""

from __future__ import annotations

from typing import Any

import pytest

from workflows.copy_format import copy_text_blocks, copy_text_line


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ((1, "John", None), "1\tJohn\t\\N\n"),
        (("a\tb",), "a\\tb\n"),
        (("line1\nline2\r",), "line1\\nline2\\r\n"),
        (("back\\slash",), "back\\\\slash\n"),
        (("'; DROP TABLE x; --",), "'; DROP TABLE x; --\n"),
        (("\\N",), "\\\\N\n"),
        (("",), "\n"),
    ],
)
def test_copy_text_line(record: tuple[Any, ...], expected: str) -> None:
    assert copy_text_line(record) == expected


def test_blocks_split_rows() -> None:
    rows = [(i, "x") for i in range(5)]
    blocks = copy_text_blocks(rows, block_rows=2)
    assert len(blocks) == 3
    assert "".join(blocks) == "".join(copy_text_line(r) for r in rows)
