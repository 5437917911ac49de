"""Named SQL blocks from the ``sql/`` files (``queries.sql``, ``roles.sql``), loaded by name.

A block starts with a ``-- name --`` line; the comment lines right after it document it.

>>> "start_attempt" in QUERIES
True
"""

from __future__ import annotations

import re
from importlib import resources
from typing import LiteralString, cast

_BLOCK_RE = re.compile(r"^-- ([a-z_]+) --$", re.MULTILINE)


def load_queries(text: str) -> dict[str, LiteralString]:
    """Named blocks of a ``.sql`` text (``-- name --`` lines), by name; for plugins' SQL too."""
    return _load(text)


def _load(text: str) -> dict[str, LiteralString]:
    parts = _BLOCK_RE.split(text)
    queries: dict[str, LiteralString] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        queries[name] = cast(LiteralString, body.strip())
    return queries


def named_blocks(file_name: str) -> dict[str, LiteralString]:
    """The named blocks of ``sql/<file_name>``."""
    path = resources.files("orchestrator").joinpath("sql", file_name)
    return _load(path.read_text(encoding="utf-8"))


QUERIES: dict[str, LiteralString] = named_blocks("queries.sql")
