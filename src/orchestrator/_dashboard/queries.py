"""Named SQL blocks of ``sql/dashboard.sql``, loaded once like ``orchestrator._queries``."""

from __future__ import annotations

from importlib import resources
from typing import LiteralString

from orchestrator._queries import _load

QUERIES: dict[str, LiteralString] = _load(
    resources.files("orchestrator._dashboard").joinpath("sql/dashboard.sql").read_text("utf-8")
)
