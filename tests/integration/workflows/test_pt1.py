"""PT1 Cole pull against PostgreSQL: COPY loading, dedupe, re-runs, bad rows, bad headers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from orchestrator import Orchestrator
from orchestrator._errors import PermanentError
from tests.fix_pipeline import ClientFactory, fetch, person, run_job, scalar
from workflows.cole import COLE_COLUMNS, ColeFormatError, export_dir

MONTH = "2026-08"
RowWriter = Callable[..., Path]


FILE_A = [
    person("John & Mary", "Smith", "12 Main Street", "07001", state="NJ"),
    person("Ann", "Lee", "4 Oak Ave", "75001"),
    ["Broken", "Row", "only three cells"],
    person("Bob", "Stone", "9 Elm Dr", "75002"),
    person("Cara", "Diaz", "77 Pine Ln", "75006", head=""),
    person("Dan", "Wu", "5 Lake Rd", "75001"),
]
FILE_B = [
    # the same John & Mary, typed differently and with the ZIP's leading zero lost
    person("JOHN AND MARY", "SMITH", "12 main st.", "7001", state="NJ"),
    person("Ann", "Lee", "4 Oak Ave", "75001"),  # exact duplicate of file A
    person("Eve", "Park", "3 Hill Ct", "75002"),  # new
]


async def raw_count(orch: Orchestrator) -> int:
    return int(await scalar(orch, "SELECT count(*) FROM raw_leads"))


async def test_loads_files_counts_and_dedupes_across_overlapping_exports(
    pipeline: Orchestrator,
    make_client: ClientFactory,
    write_rows: RowWriter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = await make_client()
    write_rows(client.name, MONTH, "a_tx.csv", FILE_A)
    write_rows(client.name, MONTH, "b_tx.csv", FILE_B)
    copies: list[str] = []
    original_copy = psycopg.AsyncCursor.copy

    def spy_copy(self: psycopg.AsyncCursor[Any], statement: Any, *args: Any, **kw: Any) -> Any:
        copies.append(str(statement))
        return original_copy(self, statement, *args, **kw)

    monkeypatch.setattr(psycopg.AsyncCursor, "copy", spy_copy)

    result = await run_job(pipeline, "pt1", {"client": client.name, "month": MONTH})

    assert result.status == "succeeded", result.runs
    # rows travel with COPY, not INSERT: PostgreSQL parses each CSV; file A has a ragged
    # row, so its CSV COPY is refused and rolled back, and the Python reader stages it
    # (plus one COPY for its bad row); file B goes through the CSV COPY alone
    assert [c.split(")", 1)[-1].strip() or c.split("(")[0].strip() for c in copies] == [
        "FROM STDIN (FORMAT csv)",
        "FROM STDIN",
        "FROM STDIN",
        "FROM STDIN (FORMAT csv)",
    ]
    assert [c.split("(")[0].strip() for c in copies] == [
        "COPY pt1_stage",
        "COPY pt1_stage",
        "COPY cole_bad_rows",
        "COPY pt1_stage",
    ]
    assert result.run_statuses == ["succeeded"]
    out = result.output
    assert out["people"] == 6  # 5 good rows of A + Eve
    assert out["bad_rows"] == 1
    assert out["files_skipped"] == []
    loaded = {f["file"]: f for f in out["files_loaded"]}
    prefix = f"{export_dir(Path(), client.name, MONTH).as_posix()}/"
    assert loaded[prefix + "a_tx.csv"] == {
        "file": prefix + "a_tx.csv",
        "rows": 5,
        "bad_rows": 1,
        "new_people": 5,
        "duplicates": 0,
    }
    assert loaded[prefix + "b_tx.csv"]["new_people"] == 1
    assert loaded[prefix + "b_tx.csv"]["duplicates"] == 2

    files = await fetch(
        pipeline,
        "SELECT file_name, row_count, bad_row_count, new_people, length(sha256) AS hash_len"
        " FROM cole_files ORDER BY file_name",
    )
    assert [(f["row_count"], f["bad_row_count"], f["new_people"]) for f in files] == [
        (5, 1, 5),
        (3, 0, 1),
    ]
    assert all(f["hash_len"] == 64 for f in files)
    rows = await fetch(
        pipeline,
        "SELECT first_name, zip, zip5, row_number, f.file_name FROM raw_leads r"
        " JOIN cole_files f ON f.id = r.file_id ORDER BY r.id",
    )
    assert len(rows) == 6
    john = [r for r in rows if r["first_name"].lower().startswith("john")]
    assert len(john) == 1 and john[0]["zip5"] == "07001"  # first seen wins: file A's cells
    assert john[0]["file_name"].endswith("a_tx.csv") and john[0]["row_number"] == 2
    assert {r["first_name"] for r in rows} == {"John & Mary", "Ann", "Bob", "Cara", "Dan", "Eve"}
    # the blank Head_Household cell is stored as NULL (cleaning is PT2's job)
    assert (
        await scalar(pipeline, "SELECT count(*) FROM raw_leads WHERE head_household IS NULL") == 1
    )

    zips = await fetch(pipeline, "SELECT zip, rows FROM pulled_zips ORDER BY zip")
    assert [(z["zip"], z["rows"]) for z in zips] == [
        ("07001", 1),
        ("75001", 2),
        ("75002", 2),
        ("75006", 1),
    ]
    assert out["zips"] == 4


async def test_bad_rows_are_kept_with_row_number_and_reason(
    pipeline: Orchestrator, make_client: ClientFactory, write_rows: RowWriter
) -> None:
    client = await make_client()
    write_rows(client.name, MONTH, "a_tx.csv", FILE_A)

    result = await run_job(pipeline, "pt1", {"client": client.name, "month": MONTH})

    assert result.status == "succeeded"
    bad = await fetch(
        pipeline,
        "SELECT b.row_number, b.reason, b.raw, f.file_name FROM cole_bad_rows b"
        " JOIN cole_files f ON f.id = b.file_id",
    )
    assert len(bad) == 1
    assert bad[0]["row_number"] == 4  # header is line 1, the broken row is the 3rd data line
    assert bad[0]["reason"] == "expected 13 cells, got 3"
    assert bad[0]["raw"] == "Broken,Row,only three cells"
    assert bad[0]["file_name"].endswith("a_tx.csv")


async def test_rerun_skips_files_already_loaded_by_content_hash(
    pipeline: Orchestrator, make_client: ClientFactory, write_rows: RowWriter
) -> None:
    client = await make_client()
    first_file = write_rows(client.name, MONTH, "a_tx.csv", FILE_A)
    write_rows(client.name, MONTH, "b_tx.csv", FILE_B)
    first = await run_job(pipeline, "pt1", {"client": client.name, "month": MONTH})
    assert first.status == "succeeded"
    before = await fetch(pipeline, "SELECT id, dedupe_key FROM raw_leads ORDER BY id")

    # the same bytes under another name count as the same file
    first_file.rename(first_file.with_name("a_tx_downloaded_again.csv"))
    second = await run_job(pipeline, "pt1", {"client": client.name, "month": MONTH})

    assert second.status == "succeeded"
    assert second.output["files_loaded"] == []
    assert len(second.output["files_skipped"]) == 2
    assert second.output["people"] == 6
    assert await fetch(pipeline, "SELECT id, dedupe_key FROM raw_leads ORDER BY id") == before
    assert await scalar(pipeline, "SELECT count(*) FROM cole_files") == 2
    assert await scalar(pipeline, "SELECT count(*) FROM cole_bad_rows") == 1


async def test_synthetic_exports_load_completely(
    pipeline: Orchestrator,
    make_client: ClientFactory,
    write_exports: Callable[..., list[Path]],
) -> None:
    client = await make_client()
    paths = write_exports(client.name, MONTH, rows=3_000)

    result = await run_job(pipeline, "pt1", {"client": client.name, "month": MONTH})

    assert result.status == "succeeded", result.runs
    files = await fetch(pipeline, "SELECT row_count, bad_row_count, new_people FROM cole_files")
    assert len(files) == len(paths)
    # every data line is either a row or a bad row; duplicates are not stored twice
    assert sum(f["row_count"] + f["bad_row_count"] for f in files) == 3_000
    people = await raw_count(pipeline)
    assert people == sum(f["new_people"] for f in files) == result.output["people"]
    assert people < sum(f["row_count"] for f in files)
    assert await scalar(pipeline, "SELECT count(DISTINCT dedupe_key) FROM raw_leads") == people
    assert await scalar(pipeline, "SELECT sum(rows) FROM pulled_zips") == people


@pytest.mark.parametrize(
    ("header", "column", "problem"),
    [
        (tuple(c for c in COLE_COLUMNS if c != "Zip"), "Zip", "missing column 'Zip'"),
        ((*COLE_COLUMNS, "Mortgage_Amount"), "Mortgage_Amount", "unknown column"),
    ],
    ids=["missing", "unknown"],
)
async def test_wrong_header_fails_permanently_and_loads_nothing(
    pipeline: Orchestrator,
    make_client: ClientFactory,
    write_rows: RowWriter,
    header: tuple[str, ...],
    column: str,
    problem: str,
) -> None:
    client = await make_client()
    write_rows(client.name, MONTH, "a_good.csv", FILE_A)
    bad_rows = [["x"] * len(header) for _ in range(3)]
    write_rows(client.name, MONTH, "b_bad.csv", bad_rows, header=header)

    result = await run_job(pipeline, "pt1", {"client": client.name, "month": MONTH})

    assert result.status == "failed"
    assert result.run_statuses == ["failed"]
    error = result.error
    assert error["type"] == ColeFormatError.__name__
    assert issubclass(ColeFormatError, PermanentError)
    assert "b_bad.csv" in error["message"]
    assert repr(column) in error["message"]
    assert problem in error["message"]
    for table in ("cole_files", "raw_leads", "cole_bad_rows", "pulled_zips"):
        assert await scalar(pipeline, f"SELECT count(*) FROM {table}") == 0, table  # noqa: S608


async def test_no_files_is_a_permanent_failure_naming_the_directory(
    pipeline: Orchestrator, make_client: ClientFactory, inbox: Path
) -> None:
    client = await make_client()

    result = await run_job(pipeline, "pt1", {"client": client.name, "month": MONTH})

    assert result.status == "failed"
    assert result.run_statuses == ["failed"]
    assert result.error["type"] == "PermanentError"
    assert str(export_dir(inbox, client.name, MONTH)) in result.error["message"]
    assert "no Cole exports" in result.error["message"]


async def test_unknown_client_fails_permanently(pipeline: Orchestrator) -> None:
    result = await run_job(pipeline, "pt1", {"client": "Nobody Agency", "month": MONTH})

    assert result.status == "failed"
    assert result.run_statuses == ["failed"]
    assert "Nobody Agency" in result.error["message"]


async def test_hostile_client_name_is_stored_verbatim(
    pipeline: Orchestrator, make_client: ClientFactory, write_rows: RowWriter
) -> None:
    name = 'O\'Brien & "Sons"; DROP TABLE clients; -- Agency'
    client = await make_client(name)
    path = write_rows(client.name, MONTH, "tx.csv", FILE_B)
    assert ";" not in path.parent.parent.name and "'" not in path.parent.parent.name

    result = await run_job(pipeline, "pt1", {"client": name, "month": MONTH})

    assert result.status == "succeeded", result.runs
    assert result.output["client"] == name
    assert result.runs[0]["input"]["client"] == name
    assert await scalar(pipeline, "SELECT name FROM clients") == name
    assert await scalar(
        pipeline,
        "SELECT count(*) FROM raw_leads r JOIN clients c ON c.id = r.client_id WHERE c.name = %s",
        [name],
    ) == len(FILE_B)


async def test_a_failed_step_does_not_start_the_next(
    pipeline: Orchestrator, make_client: ClientFactory
) -> None:
    client = await make_client()

    result = await run_job(pipeline, "pt1", {"client": client.name, "month": MONTH, "chain": True})

    assert result.status == "failed"
    assert await scalar(
        pipeline,
        "SELECT array_agg(task_name) FROM procrastinate_jobs"
        " WHERE task_name NOT LIKE 'orchestrator.%%'",
    ) == ["pt1"]


async def test_listed_files_only_are_loaded(
    pipeline: Orchestrator, make_client: ClientFactory, write_rows: RowWriter, inbox: Path
) -> None:
    client = await make_client()
    write_rows(client.name, MONTH, "a_tx.csv", FILE_A)
    chosen = write_rows(client.name, MONTH, "b_tx.csv", FILE_B)
    relative = chosen.relative_to(inbox).as_posix()  # how rows and results name the file

    result = await run_job(
        pipeline, "pt1", {"client": client.name, "month": MONTH, "files": ["b_tx.csv"]}
    )

    assert result.status == "succeeded", result.runs
    assert [f["file"] for f in result.output["files_loaded"]] == [relative]
    assert result.output["people"] == len(FILE_B)

    missing = await run_job(
        pipeline, "pt1", {"client": client.name, "month": MONTH, "files": ["nowhere.csv"]}
    )
    assert missing.status == "failed"
    assert missing.run_statuses == ["failed"]
    assert "'nowhere.csv' not found" in missing.error["message"]
