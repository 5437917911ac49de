"""The named SQL blocks of ``sql/queries.sql`` (no database)."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from orchestrator._queries import QUERIES, _load

SOURCE = resources.files("orchestrator").joinpath("sql/queries.sql").read_text(encoding="utf-8")
DECLARED = re.findall(r"^-- ([a-z_]+) --$", SOURCE, flags=re.MULTILINE)

#: Every block the orchestrator's modules load by name.
USED = {
    name
    for module in resources.files("orchestrator").iterdir()
    if module.name.endswith(".py")
    for name in re.findall(r'QUERIES\["([a-z_]+)"\]', module.read_text(encoding="utf-8"))
}


def test_block_names_are_unique() -> None:
    assert len(DECLARED) == len(set(DECLARED))
    assert sorted(QUERIES) == sorted(DECLARED)


def test_every_block_used_by_the_code_is_there() -> None:
    assert {"start_attempt", "finish_success", "queue_status"} <= USED
    assert set(QUERIES) >= USED


@pytest.mark.parametrize("name", DECLARED)
def test_every_block_loads_as_sql(name: str) -> None:
    query = QUERIES[name]
    assert query.strip() == query
    assert re.search(r"^\s*(WITH|SELECT|UPDATE|INSERT|DELETE)\b", _without_comments(query))
    assert "-- " + name not in query  # the next block's header is not swallowed


def test_parameters_are_named_placeholders_only() -> None:
    for name, query in QUERIES.items():
        body = _without_comments(query)
        assert "%s" not in body, name
        assert not re.search(r"%\((?![a-z_]+\)s)", body), name


def test_loader_splits_on_header_lines() -> None:
    text = "-- preamble\n\n-- one --\n-- doc\nSELECT 1;\n\n-- two --\nSELECT 2;\n"
    assert _load(text) == {"one": "-- doc\nSELECT 1;", "two": "SELECT 2;"}


def _without_comments(query: str) -> str:
    return "\n".join(line for line in query.splitlines() if not line.lstrip().startswith("--"))
