"""Synthetic Cole exports: deterministic, within Cole's limits, readable, and messy on purpose."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest

from workflows.cole import FIELD_NAMES, ColeExport, ColeRow, discover_exports
from workflows.cole_reader import read_export
from workflows.standins.synthetic import (
    MAX_ROWS_PER_FILE,
    generate_exports,
    generate_rows,
    plan_exports,
    write_export,
)

STATES = ["TX", "MA"]
ZIPS = ["75001", "02108", "75002", "01720", "77001", "02139"]


def make(
    out: Path,
    *,
    rows: int = 4_000,
    seed: int = 0,
    month: str = "2025-03",
    messiness: bool = True,
    states: Sequence[str] = STATES,
) -> list[Path]:
    return generate_exports(
        out, client="Acme & Sons", month=month, states=states, zips=ZIPS, rows=rows, seed=seed,
        messiness=messiness,
    )  # fmt: skip


def read_all(paths: list[Path]) -> list[ColeExport]:
    return [read_export(p) for p in paths]


def good_rows(exports: list[ColeExport]) -> list[ColeRow]:
    return [r for e in exports for r in e.rows]


def money(text: str) -> int:
    return int(text.replace("$", "").replace(",", ""))


@pytest.mark.parametrize(("seed_a", "seed_b", "same"), [(0, 0, True), (7, 7, True), (0, 1, False)])
def test_determinism(tmp_path: Path, seed_a: int, seed_b: int, same: bool) -> None:
    first = make(tmp_path / "a", seed=seed_a)
    second = make(tmp_path / "b", seed=seed_b)
    assert [p.name for p in first] == [p.name for p in second]
    contents_equal = [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    assert contents_equal is same


@pytest.mark.parametrize(
    ("rows", "states", "files"),
    [
        (0, ["TX"], 1),
        (10, ["TX"], 1),
        (10_000, ["TX"], 1),
        (25_000, ["TX"], 3),
        (30_001, STATES, 4),
    ],
)
def test_file_split_and_row_total(tmp_path: Path, rows: int, states: list[str], files: int) -> None:
    paths = make(tmp_path, rows=rows, states=states)
    exports = read_all(paths)
    assert len(paths) == files
    assert paths == discover_exports(tmp_path, "Acme & Sons", "2025-03")
    counts = [len(e.rows) + len(e.bad_rows) for e in exports]
    assert all(n <= MAX_ROWS_PER_FILE for n in counts)
    assert sum(counts) == rows


@pytest.mark.parametrize("messiness", [True, False])
def test_files_read_cleanly(tmp_path: Path, messiness: bool) -> None:
    exports = read_all(make(tmp_path, rows=6_000, messiness=messiness))
    reasons = {b.reason for e in exports for b in e.bad_rows}
    if messiness:
        assert reasons and all(r.startswith("expected 13 cells, got ") for r in reasons)
        assert any(e.encoding == "utf-8-sig" for e in exports)
    else:
        assert reasons == set()
        assert {e.encoding for e in exports} == {"utf-8"}


def test_messiness_is_present(tmp_path: Path) -> None:
    rows = good_rows(read_all(make(tmp_path, rows=6_000)))
    values = [money(r.home_value) for r in rows if r.home_value]
    texas_values = [money(r.home_value) for r in rows if r.home_value and r.state == "TX"]
    checks = {
        "blank Head_Household": sum(not r.head_household for r in rows),
        "4-digit ZIP": sum(len(r.zip) == 4 for r in rows),
        "& name": sum("&" in r.first_name for r in rows),
        "> $900k": sum(v > 900_000 for v in values),
        "Texas > $900k": sum(v > 900_000 for v in texas_values),
        "$ format": sum(r.home_value.startswith("$") for r in rows),
        "plain format": sum(r.home_value.isdigit() for r in rows),
        "blank value": sum(not r.home_value for r in rows),
        "blank email": sum(not r.email_address for r in rows),
        "invalid email": sum(
            bool(r.email_address) and r.email_address.count("@") != 1 for r in rows
        ),
        "$1,250,000": sum(r.home_value == "$1,250,000" for r in rows),
    }
    assert all(checks.values()), checks
    share = checks["blank Head_Household"] / len(rows)
    assert 0.4 < share < 0.6


def test_duplicates_across_overlapping_files(tmp_path: Path) -> None:
    exports = read_all(make(tmp_path, rows=25_000, states=["TX"]))
    assert len(exports) == 3
    seen_in: Counter[tuple[str, str, str]] = Counter()
    for export in exports:
        seen_in.update({(r.first_name, r.last_name, r.address_1) for r in export.rows})
    assert any(n > 1 for n in seen_in.values())


@pytest.mark.parametrize(("month", "renewal"), [("2025-02", 2), ("2025-03", 3), ("2024-12", 12)])
def test_purchase_dates_fall_in_the_renewal_month(tmp_path: Path, month: str, renewal: int) -> None:
    rows = good_rows(read_all(make(tmp_path, rows=3_000, month=month)))
    dates = [r.purchase_date.split("/") for r in rows if r.purchase_date]
    assert {int(m) for m, _, _ in dates} == {renewal}
    assert {int(y) for _, _, y in dates} <= set(range(2005, 2025))
    leap_days = [d for d in dates if int(d[0]) == 2 and int(d[1]) == 29]
    assert bool(leap_days) is (renewal == 2)
    assert all(int(y) % 4 == 0 for _, _, y in leap_days)


def test_renewal_month_argument_overrides_month() -> None:
    lines = generate_rows(
        client="A", month="2025-03", states=["FL"], zips=["33101"], rows=200, renewal_month=7,
        messiness=False,
    )  # fmt: skip
    assert {line[8][:2] for line in lines if line[8]} == {"07"}


def test_generate_rows_matches_written_files(tmp_path: Path) -> None:
    lines = generate_rows(
        client="Acme & Sons", month="2025-03", states=STATES, zips=ZIPS, rows=3_000,
        messiness=False,
    )  # fmt: skip
    planned = plan_exports(
        client="Acme & Sons", month="2025-03", states=STATES, zips=ZIPS, rows=3_000,
        messiness=False,
    )  # fmt: skip
    by_name = {p.name: read_export(p) for p in make(tmp_path, rows=3_000, messiness=False)}
    assert sorted(by_name) == sorted(e.name for e in planned)
    read_back = [
        [getattr(r, f) for f in FIELD_NAMES] for e in planned for r in by_name[e.name].rows
    ]
    assert read_back == lines


def test_write_export_round_trip(tmp_path: Path) -> None:
    cells = ["John & Mary", "O'Brien", "1 A St, Apt 2\nRear", "x", "TX", "7501", *[""] * 7]
    path = tmp_path / "one.csv"
    write_export(path, [cells], bom=True)
    assert path.read_bytes().startswith(b"\xef\xbb\xbfFirst_Name,")
    (row,) = read_export(path).rows
    assert (row.first_name, row.address_1, row.zip) == ("John & Mary", cells[2], "7501")


@pytest.mark.parametrize(
    ("month", "states", "zips", "rows", "renewal", "message"),
    [
        ("2025-03", ["TX"], ["75001"], -1, None, "rows"),
        ("2025-03", [], ["75001"], 10, None, "states"),
        ("2025-03", ["TX"], [], 10, None, "zips"),
        ("March", ["TX"], ["75001"], 10, None, "YYYY-MM"),
        ("2025-03", ["TX"], ["75001"], 10, 13, "renewal_month"),
    ],
)
def test_invalid_arguments(
    month: str, states: list[str], zips: list[str], rows: int, renewal: int | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        generate_rows(
            client="A", month=month, states=states, zips=zips, rows=rows, renewal_month=renewal
        )
