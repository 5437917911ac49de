"""Named SQL blocks of ``sql/dashboard.sql``, loaded once like ``orchestrator.queries``."""

from __future__ import annotations

from importlib import resources
from typing import LiteralString

from orchestrator.queries import _load

QUERIES: dict[str, LiteralString] = _load(
    resources.files("orchestrator.dashboard").joinpath("sql/dashboard.sql").read_text("utf-8")
)
