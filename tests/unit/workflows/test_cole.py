"""Reading Cole exports: every robustness case from bytes written explicitly to ``tmp_path``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from orchestrator._errors import PermanentError
from workflows.cole import (
    COLE_COLUMNS,
    COPY_COLUMNS,
    FIELD_NAMES,
    MAX_RAW_CHARS,
    BadRow,
    ColeFormatError,
    ExportLocationError,
    client_dir_name,
    copy_records,
    discover_exports,
    export_dir,
    validate_header,
)
from workflows.cole_reader import iter_export_rows, read_export

HEADER = ",".join(COLE_COLUMNS)
CELLS = [
    "Jane",
    "Doe",
    "12 Oak St",
    "Austin",
    "TX",
    "78701",
    "(512) 555-0100",
    "jane@example.com",
    "03/14/2015",
    "$412,000",
    "Y",
    "$75,000 - $99,999",
    "01/02/1970",
]


def csv_line(cells: list[str]) -> str:
    return ",".join(f'"{c}"' if "," in c else c for c in cells)


ROW = csv_line(CELLS)
UNQUOTED_ROW = ",".join(c.replace(",", "") for c in CELLS)


def write(tmp_path: Path, data: bytes, name: str = "march.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def lines(*parts: str, end: str = "\r\n") -> bytes:
    return "".join(p + end for p in parts).encode("utf-8")


# --- files that read -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "encoding", "good", "bad_reasons"),
    [
        pytest.param(lines(HEADER, ROW), "utf-8", 1, [], id="plain-crlf"),
        pytest.param(lines(HEADER, ROW, end="\n"), "utf-8", 1, [], id="lf"),
        pytest.param(lines(HEADER, ROW, end="\r"), "utf-8", 1, [], id="lone-cr"),
        pytest.param(lines(HEADER, ROW)[:-2], "utf-8", 1, [], id="no-final-newline"),
        pytest.param(b"\xef\xbb\xbf" + lines(HEADER, ROW), "utf-8-sig", 1, [], id="utf8-bom"),
        pytest.param(lines(HEADER), "utf-8", 0, [], id="header-only"),
        pytest.param(
            lines("", HEADER, "", ROW, "  ", ",,,,", ROW, ""), "utf-8", 2, [], id="blanks"
        ),
        pytest.param(
            lines(HEADER, ROW.rsplit(",", 1)[0], ROW + ",x", ROW),
            "utf-8",
            1,
            ["expected 13 cells, got 12", "expected 13 cells, got 14"],
            id="ragged",
        ),
        pytest.param(
            lines(HEADER, ROW.replace("Jane", "Ja\x00ne"), ROW),
            "utf-8",
            1,
            ["contains NUL byte"],
            id="nul-byte",
        ),
        pytest.param(
            lines(HEADER, ROW.replace("12 Oak St", '"' + "x" * 200_000 + '"'), ROW),
            "utf-8",
            1,
            ["unreadable row: field larger than field limit (131072)"],
            id="oversized-cell",
        ),
    ],
)
def test_read_export_cases(
    tmp_path: Path, data: bytes, encoding: str, good: int, bad_reasons: list[str]
) -> None:
    export = read_export(write(tmp_path, data))
    assert export.encoding == encoding
    assert len(export.rows) == good
    assert [b.reason for b in export.bad_rows] == bad_reasons
    for row in export.rows:
        assert [getattr(row, f) for f in FIELD_NAMES] == CELLS
    for bad in export.bad_rows:
        assert "\x00" not in bad.raw
        assert len(bad.raw) <= MAX_RAW_CHARS


def test_cp1252_fallback_keeps_accents(tmp_path: Path) -> None:
    data = (HEADER + "\r\n" + ROW.replace("Jane", "José") + "\r\n").encode("cp1252")
    assert b"Jos\xe9" in data
    export = read_export(write(tmp_path, data))
    assert export.encoding == "cp1252"
    assert export.rows[0].first_name == "José"


def test_nul_row_raw_text_is_kept_readable(tmp_path: Path) -> None:
    export = read_export(write(tmp_path, lines(HEADER, "a\x00b," + ROW)))
    (bad,) = export.bad_rows
    assert bad == BadRow("march.csv", 2, "expected 13 cells, got 14", "a\ufffdb," + ROW)


def test_quoted_commas_newlines_and_sql_kept_verbatim(tmp_path: Path) -> None:
    tricky = ["O'Brien", "12 Oak St, Apt 4\r\nBuilding B", "'; DROP TABLE x; --", ' "q" ']
    cells = [tricky[0], "Doe", tricky[1], tricky[2], "TX", "78701", "", "", "", "", "", "", "x"]
    cells[6] = tricky[3]
    quoted = ",".join('"' + c.replace('"', '""') + '"' for c in cells)
    export = read_export(write(tmp_path, lines(HEADER, quoted, ROW)))
    first, second = export.rows
    assert first.last_name == "Doe" and first.first_name == "O'Brien"
    assert first.address_1 == tricky[1]
    assert first.city == "'; DROP TABLE x; --"
    assert first.cell_phone_number == ' "q" '
    assert (first.row_number, second.row_number) == (2, 4)  # the quoted newline spans 2 lines


def test_row_numbers_are_file_lines(tmp_path: Path) -> None:
    export = read_export(write(tmp_path, lines("", HEADER, ROW, "", "x,y", ROW)))
    assert [r.row_number for r in export.rows] == [3, 6]
    assert [(b.row_number, b.raw) for b in export.bad_rows] == [(5, "x,y")]


def test_runaway_quote_is_one_truncated_bad_row(tmp_path: Path) -> None:
    broken = '"' + UNQUOTED_ROW  # the quote never closes: the rest of the file is one cell
    export = read_export(write(tmp_path, lines(HEADER, ROW, broken, *[UNQUOTED_ROW] * 200)))
    assert len(export.rows) == 1
    (bad,) = export.bad_rows
    assert bad.row_number == 3 and bad.reason == "expected 13 cells, got 1"
    assert len(bad.raw) == MAX_RAW_CHARS


def test_columns_in_another_order_are_mapped(tmp_path: Path) -> None:
    order = list(reversed(range(13)))
    header = ",".join(COLE_COLUMNS[i] for i in order)
    row = ",".join(f'"{CELLS[i]}"' for i in order)
    export = read_export(write(tmp_path, lines(header, row)))
    (mapped,) = export.rows
    assert [getattr(mapped, f) for f in FIELD_NAMES] == CELLS
    assert (mapped.row_number, mapped.source_file) == (2, "march.csv")


def test_display_name_and_content_hash(tmp_path: Path) -> None:
    data = lines(HEADER, ROW)
    one = read_export(write(tmp_path, data, "a.csv"), display_name="tx/march.csv")
    two = read_export(write(tmp_path, data, "b.csv"))
    other = read_export(write(tmp_path, lines(HEADER, ROW, ROW), "c.csv"))
    assert one.file == one.rows[0].source_file == "tx/march.csv"
    assert two.file == "b.csv"
    assert one.sha256 == two.sha256 == hashlib.sha256(data).hexdigest()
    assert other.sha256 != one.sha256


def test_iter_export_rows_streams_the_same_rows(tmp_path: Path) -> None:
    path = write(tmp_path, lines(HEADER, ROW, "bad", ROW))
    export = read_export(path)
    streamed = list(iter_export_rows(path))
    assert streamed == [export.rows[0], export.bad_rows[0], export.rows[1]]


def test_copy_records_order_and_nulls(tmp_path: Path) -> None:
    blanked = csv_line(["Jane", "", "  ", *CELLS[3:]])
    export = read_export(write(tmp_path, lines(HEADER, blanked)), display_name="f.csv")
    (record,) = list(copy_records(export))
    assert len(record) == len(COPY_COLUMNS) == 15
    assert record[:4] == ("Jane", None, None, "Austin")
    assert record[9] == "$412,000"
    assert record[-2:] == (2, "f.csv")


# --- files that are refused --------------------------------------------------------------------


def header_without(column: str) -> str:
    return ",".join(c for c in COLE_COLUMNS if c != column)


@pytest.mark.parametrize(
    ("data", "problem", "column"),
    [
        pytest.param(b"", "file is empty", None, id="empty"),
        pytest.param(b"\xef\xbb\xbf\r\n \r\n", "file is empty", None, id="bom-and-blanks"),
        pytest.param(b",,,\r\n", "file is empty", None, id="commas-only"),
        pytest.param(b"\x81\x8d" + lines(HEADER), "not valid UTF-8 or Windows-1252 text", None),
        pytest.param(
            lines(header_without("Zip"), ROW), "missing column 'Zip'", "Zip", id="missing"
        ),
        pytest.param(
            lines(HEADER.replace("Zip", "Zipcode")),
            "unknown column 'Zipcode' (missing 'Zip')",
            "Zipcode",
            id="unknown",
        ),
        pytest.param(
            lines(HEADER.replace("Zip", "zip")),
            "unknown column 'zip' (did you mean 'Zip'?)",
            "zip",
            id="case",
        ),
        pytest.param(
            lines(HEADER.replace("Zip", "City")), "duplicated column 'City'", "City", id="dup"
        ),
        pytest.param(
            lines(HEADER + ","), "empty column name at position 14", None, id="trailing-comma"
        ),
        pytest.param(
            lines(header_without("Zip").replace("City,", "")),
            "missing columns 'City', 'Zip'",
            "City",
            id="two-missing",
        ),
    ],
)
def test_bad_files_raise_naming_file_and_column(
    tmp_path: Path, data: bytes, problem: str, column: str | None
) -> None:
    path = write(tmp_path, data)
    with pytest.raises(ColeFormatError) as info:
        read_export(path, display_name="tx/march.csv")
    error = info.value
    assert isinstance(error, PermanentError)
    assert str(error) == f"cole export 'tx/march.csv': {problem}"
    assert (error.file, error.column) == ("tx/march.csv", column)


def test_header_error_reports_its_line(tmp_path: Path) -> None:
    with pytest.raises(ColeFormatError) as info:
        read_export(write(tmp_path, lines("", "", header_without("State"))))
    assert info.value.row == 3


@pytest.mark.parametrize(
    "header",
    [
        list(COLE_COLUMNS),
        ["\ufeffFirst_Name", *COLE_COLUMNS[1:]],
        [f"  {c}\t" for c in COLE_COLUMNS],
    ],
)
def test_validate_header_tolerates_bom_and_whitespace(header: list[str]) -> None:
    assert validate_header(header, "x.csv") == list(range(13))


# --- discovery and client directory names ------------------------------------------------------


@pytest.mark.parametrize(
    ("client", "expected"),
    [
        ("Acme", "Acme"),
        ("Smith & Jones Insurance", "Smith_Jones_Insurance"),
        ("José's Agency", "Jose_s_Agency"),
        ('The "Best" Agents, LLC.', "The_Best_Agents_LLC."),
        ("a/b\\c", "a_b_c"),
        ("  padded  ", "padded"),
        ("under_score-dash.dot", "under_score-dash.dot"),
    ],
)
def test_client_dir_name(client: str, expected: str) -> None:
    assert client_dir_name(client) == expected


@pytest.mark.parametrize(
    "client", ["", "   ", "..", "../etc", "a/../b", ".hidden", "&&", "x" * 300]
)
def test_client_dir_name_refuses_unsafe(client: str) -> None:
    with pytest.raises(ExportLocationError):
        client_dir_name(client)


@pytest.mark.parametrize("month", ["2025-3", "2025-13", "../2025-03", "2025-03/..", "", "March"])
def test_export_dir_refuses_bad_month(tmp_path: Path, month: str) -> None:
    with pytest.raises(ExportLocationError):
        export_dir(tmp_path, "Acme", month)


def test_discover_exports(tmp_path: Path) -> None:
    base = tmp_path / "Smith_Co" / "2025-03"
    (base / "tx").mkdir(parents=True)
    (base / ".git").mkdir()
    for name in ["b.CSV", "a.csv", "tx/march.csv", "notes.txt", ".x.csv", "~$a.csv", ".git/y.csv"]:
        (base / name).write_bytes(b"")
    (base / "folder.csv").mkdir()
    outside = tmp_path / "secret.csv"
    outside.write_bytes(b"")
    (base / "link.csv").symlink_to(outside)
    found = discover_exports(tmp_path, "Smith & Co", "2025-03")
    assert found == [base / "a.csv", base / "b.CSV", base / "tx" / "march.csv"]


def test_discover_exports_missing_directory(tmp_path: Path) -> None:
    assert discover_exports(tmp_path, "Nobody", "2025-03") == []
    assert discover_exports(tmp_path / "no-inbox", "Nobody", "2025-03") == []
