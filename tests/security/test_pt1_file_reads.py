"""PT1 reads a client-month's inbox folder and nothing else, and never shows what it read.

Every way a PT1 job can name files is tried — the Python API, the CLI, and a job row written
with SQL (no validation at all) — with absolute paths, ``..``, links out of the folder and
files that are not Cole exports. A secret file outside the inbox carries a canary: it must
appear in no error, traceback or output. Limits (bytes, records, line length) and the
one-file-at-a-time load are checked too.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from orchestrator import InvalidPayload, Orchestrator, PermanentError
from tests.fix_cli import cli, rows
from tests.fix_pipeline import person, run_job, scalar
from tests.security._pipeline import everything_recorded, insert_job, open_pipeline, run_inserted
from workflows import cole_reader
from workflows.bounded_text import LineTooLong, NotText, TextLimits, TextTooLarge, read_text
from workflows.clients import ClientSpec, add_client
from workflows.cole import COLE_COLUMNS, ColeFormatError, export_dir, validate_header
from workflows.cole_inbox import (
    MAX_LISTED_FILES,
    check_export_name,
    check_export_names,
    resolve_exports,
)
from workflows.cole_reader import (
    MAX_EXPORT_BYTES,
    MAX_EXPORT_RECORDS,
    MAX_LINE_CHARS,
    read_export,
)
from workflows.standins.synthetic import write_export

CLIENT = "Acme Insurance"
MONTH = "2026-08"
HEADER = ",".join(COLE_COLUMNS)
PASSWD_LINE = "root:x:0:0:root:/root:/bin/bash"


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    path = tmp_path / "cole_inbox"
    path.mkdir()
    return path


@pytest.fixture
def folder(inbox: Path) -> Path:
    """The client-month folder PT1 may read."""
    path = export_dir(inbox, CLIENT, MONTH)
    path.mkdir(parents=True)
    return path


@pytest.fixture
def canary() -> str:
    return f"SECRET_CANARY_{secrets.token_hex(8)}"


@pytest.fixture
def secret_file(tmp_path: Path, canary: str) -> Path:
    """A file outside the inbox that nobody may read through PT1."""
    outside = tmp_path / "outside"
    outside.mkdir()
    path = outside / "secret.csv"
    path.write_text(
        f"{canary},password\n{PASSWD_LINE}\nDATABASE_URL=postgresql://x:{canary}@h/db\n"
    )
    return path


@pytest.fixture
async def pipeline(database_url: str, inbox: Path) -> AsyncIterator[Orchestrator]:
    async with open_pipeline(database_url, inbox) as orch:
        async with orch.pool.connection() as conn:
            await add_client(conn, ClientSpec(name=CLIENT, tier=100, licensed_states=["TX"]))
        yield orch


def payload(files: list[str]) -> dict[str, Any]:
    return {"client": CLIENT, "month": MONTH, "files": files}


def good_rows(count: int, prefix: str = "p") -> list[list[str]]:
    return [person(f"{prefix}{n}", "Lee", f"{n} Oak St", "75001") for n in range(count)]


def assert_nothing_leaked(text: str, canary: str) -> None:
    assert canary not in text
    assert PASSWD_LINE not in text and "root:x:0:0" not in text


def relative_path(target: Path, start: Path) -> str:
    return os.path.relpath(target, start)


def copy_file(source: Path, target: Path) -> None:
    target.write_bytes(source.read_bytes())


def write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def write_sparse(path: Path, head: str, size: int) -> None:
    with open(path, "wb") as handle:
        handle.write(head.encode())
        handle.truncate(size)  # sparse: no disk, no time


async def workflow_jobs(orch: Orchestrator) -> int:
    return int(
        await scalar(
            orch,
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name NOT LIKE 'orchestrator.%%'",
        )
    )


# -- enqueue: the payload model refuses, naming the field ---------------------------------

REFUSED = [
    pytest.param(["/etc/passwd"], "absolute path", id="etc-passwd"),
    pytest.param(["/proc/self/environ"], "absolute path", id="proc-environ"),
    pytest.param(["../../../../../../../etc/passwd"], "'..' part", id="dotdot"),
    pytest.param(["tx/../../../Other_Agency/2026-08/x.csv"], "'..' part", id="dotdot-inside"),
    pytest.param(["~/.ssh/id_rsa.csv"], "starts with '~'", id="home"),
    pytest.param(["..\\..\\secret.csv"], "backslash", id="backslash"),
    pytest.param([".env.csv"], "hidden", id="hidden"),
    pytest.param(["notes.txt"], "not a .csv file", id="not-csv"),
    pytest.param(["tx.csv\n"], "control character", id="newline"),
    pytest.param([""], "is empty", id="empty"),
    pytest.param(["tx/a.csv", "tx/a.csv"], "repeats entry 1", id="duplicate"),
    pytest.param(["tx/a.csv", "tx//a.csv"], "repeats entry 1", id="duplicate-normalised"),
    pytest.param([f"f{n}.csv" for n in range(MAX_LISTED_FILES + 1)], "at most", id="too-many"),
]


@pytest.mark.parametrize(("files", "expected"), REFUSED)
async def test_enqueue_workflow_refuses_files_outside_the_folder(
    pipeline: Orchestrator, files: list[str], expected: str
) -> None:
    with pytest.raises(InvalidPayload) as caught:
        await pipeline.enqueue_workflow("pt1", payload(files))

    message = str(caught.value)
    assert "files" in message and expected in message, message
    assert len(message) < 400
    assert await workflow_jobs(pipeline) == 0


async def test_enqueue_workflow_refuses_an_absolute_path_to_a_secret(
    pipeline: Orchestrator, secret_file: Path, canary: str
) -> None:
    with pytest.raises(InvalidPayload, match=r"files: .*absolute path") as caught:
        await pipeline.enqueue_workflow("pt1", payload([str(secret_file)]))
    assert_nothing_leaked(str(caught.value), canary)
    assert await workflow_jobs(pipeline) == 0


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (["/etc/passwd"], "absolute path"),
        (["../../../etc/passwd"], "'..' part"),
        (["a.csv", "a.csv"], "repeats entry 1"),
    ],
    ids=["absolute", "dotdot", "duplicate"],
)
def test_cli_enqueue_refuses_files_outside_the_folder(
    database_url: str, files: list[str], expected: str
) -> None:
    result = cli(database_url, "enqueue", "pt1", "--payload", json.dumps(payload(files)))

    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("orchestrator: invalid payload"), lines
    assert "files" in lines[0] and expected in lines[0], lines[0]
    assert "root:x:0:0" not in result.stdout + result.stderr
    assert rows(database_url, "SELECT count(*) AS n FROM procrastinate_jobs") == [{"n": 0}]


# -- run time: a job written with SQL is checked again --------------------------------------


@pytest.mark.parametrize("how", ["absolute", "passwd", "dotdot", "environ"])
async def test_job_inserted_without_validation_fails_without_reading(
    pipeline: Orchestrator, secret_file: Path, folder: Path, canary: str, how: str
) -> None:
    name = {
        "absolute": str(secret_file),
        "passwd": "/etc/passwd",
        "dotdot": relative_path(secret_file, folder),
        "environ": "/proc/self/environ",
    }[how]
    job_id = await insert_job(pipeline, "pt1", payload([name]))

    result = await run_inserted(pipeline, job_id)

    assert result.status == "failed"
    assert result.run_statuses == ["failed"]  # permanent: no retry reads it again
    assert result.error["type"] == "InvalidPayload"
    assert "files" in result.error["message"]
    assert_nothing_leaked(everything_recorded(result), canary)
    assert await scalar(pipeline, "SELECT count(*) FROM cole_files") == 0


async def test_link_out_of_the_folder_is_refused_at_run_time(
    pipeline: Orchestrator, folder: Path, secret_file: Path, canary: str
) -> None:
    (folder / "link.csv").symlink_to(secret_file)
    (folder / "shared").symlink_to(secret_file.parent, target_is_directory=True)

    for name in ("link.csv", "shared/secret.csv"):
        result = await run_job(pipeline, "pt1", payload([name]))  # the name itself is fine

        assert result.status == "failed", result.runs
        assert result.run_statuses == ["failed"]
        assert result.error["type"] == "ExportAccessError"
        assert "leads outside the client-month folder" in result.error["message"]
        assert_nothing_leaked(everything_recorded(result), canary)

    discovered = await run_job(pipeline, "pt1", {"client": CLIENT, "month": MONTH})
    assert discovered.status == "failed"  # links out are not discovered either
    assert "no Cole exports" in discovered.error["message"]
    assert_nothing_leaked(everything_recorded(discovered), canary)
    assert await scalar(pipeline, "SELECT count(*) FROM cole_files") == 0


async def test_a_file_reached_twice_is_read_once(pipeline: Orchestrator, folder: Path) -> None:
    write_export(folder / "tx.csv", good_rows(3))
    (folder / "alias.csv").symlink_to(folder / "tx.csv")

    result = await run_job(pipeline, "pt1", payload(["tx.csv", "alias.csv"]))

    assert result.status == "succeeded", result.runs
    assert [f["file"] for f in result.output["files_loaded"]] == ["Acme_Insurance/2026-08/tx.csv"]
    assert result.output["files_skipped"] == []


@pytest.mark.parametrize("content", ["secret", "passwd", "environ"])
async def test_a_file_that_is_not_a_cole_export_is_not_quoted(
    pipeline: Orchestrator, folder: Path, secret_file: Path, canary: str, content: str
) -> None:
    if content == "secret":
        copy_file(secret_file, folder / "dropped.csv")
    elif content == "passwd":
        write_text(folder / "dropped.csv", f"{PASSWD_LINE}\ndaemon:x:1:1::/:/bin/false\n{canary}\n")
    else:
        write_text(folder / "dropped.csv", f"PATH=/bin\0DATABASE_URL=postgresql://u:{canary}@h/d\0")

    result = await run_job(pipeline, "pt1", payload(["dropped.csv"]))

    assert result.status == "failed"
    assert result.run_statuses == ["failed"]
    assert result.error["type"] == "ColeFormatError"
    assert result.error["message"] == (
        "cole export 'Acme_Insurance/2026-08/dropped.csv': "
        "not a Cole CSV export (header not recognised)"
    )
    assert_nothing_leaked(everything_recorded(result), canary)


def test_an_unknown_column_is_quoted_only_short_and_printable(canary: str) -> None:
    header = [*COLE_COLUMNS[:-1], f"{canary}\x1b[2J{'x' * 500}"]

    with pytest.raises(ColeFormatError) as caught:
        validate_header(header, "f.csv")

    quoted = str(caught.value).split("unknown column ", 1)[1].split(" (missing", 1)[0]
    assert len(quoted) <= 40 + len("...") + 2  # the excerpt, an ellipsis and the quotes
    assert "\x1b" not in str(caught.value) and "x" * 50 not in str(caught.value)


# -- limits -----------------------------------------------------------------------------------


async def test_a_file_over_the_byte_limit_is_refused_before_reading(
    pipeline: Orchestrator, folder: Path
) -> None:
    write_sparse(folder / "huge.csv", HEADER + "\r\n", MAX_EXPORT_BYTES + 1)

    result = await run_job(pipeline, "pt1", payload(["huge.csv"]))

    assert result.status == "failed"
    assert result.error["type"] == "ExportAccessError"
    assert f"over the {MAX_EXPORT_BYTES:,} byte limit" in result.error["message"]


async def test_more_records_than_a_cole_export_holds_are_refused(
    pipeline: Orchestrator, folder: Path
) -> None:
    write_export(folder / "a_small.csv", good_rows(5, "a"))
    write_export(folder / "b_big.csv", good_rows(MAX_EXPORT_RECORDS + 1, "b"))

    result = await run_job(pipeline, "pt1", {"client": CLIENT, "month": MONTH})

    assert result.status == "failed"
    assert result.error["type"] == "ColeFormatError"
    assert f"more than {MAX_EXPORT_RECORDS:,} records" in result.error["message"]
    assert "b_big.csv" in result.error["message"]
    # files load one at a time, each committed: the small one stays, the big one is not kept
    assert await scalar(pipeline, "SELECT array_agg(file_name) FROM cole_files") == [
        "Acme_Insurance/2026-08/a_small.csv"
    ]


async def test_a_line_longer_than_the_limit_stops_the_read(
    pipeline: Orchestrator, folder: Path, canary: str
) -> None:
    long_line = canary + "," + "z" * (MAX_LINE_CHARS + 10)
    write_text(folder / "long.csv", f"{HEADER}\r\n{long_line}\r\n")

    result = await run_job(pipeline, "pt1", payload(["long.csv"]))

    assert result.status == "failed"
    assert "line 2 is longer than" in result.error["message"]
    assert_nothing_leaked(everything_recorded(result), canary)


def test_reading_a_huge_line_holds_only_the_line_limit(tmp_path: Path) -> None:
    path = tmp_path / "one_line.csv"
    with open(path, "wb") as handle:
        for _ in range(30):
            handle.write(b"y" * (1 << 20))  # 30 MiB, no line end

    tracemalloc.start()
    try:
        with pytest.raises(ColeFormatError, match="line 1 is longer than"):
            read_export(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 12 * (1 << 20), peak  # the old whole-file read held > 30 MiB (and more)


async def test_files_are_read_and_loaded_one_at_a_time(
    pipeline: Orchestrator, folder: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a.csv", "b.csv", "c.csv"):
        write_export(folder / name, good_rows(4, name[0]))
    loaded_before_each_read: list[int] = []
    real_read = cole_reader.read_export_bytes

    def spying_read(path: Path, **kwargs: Any) -> Any:
        with psycopg.connect(database_url) as conn:
            row = conn.execute("SELECT count(*) FROM cole_files").fetchone()
        assert row is not None
        loaded_before_each_read.append(int(row[0]))
        return real_read(path, **kwargs)

    monkeypatch.setattr("workflows.pt1_cole_pull.read_export_bytes", spying_read)

    result = await run_job(pipeline, "pt1", {"client": CLIENT, "month": MONTH})

    assert result.status == "succeeded", result.runs
    assert loaded_before_each_read == [0, 1, 2]


# -- the name rules themselves ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "normalised"),
    [
        ("tx.csv", "tx.csv"),
        ("TX_March.CSV", "TX_March.CSV"),
        ("ok/part02.csv", "ok/part02.csv"),
        ("ok//part02.csv", "ok/part02.csv"),
        ("José agency export.csv", "José agency export.csv"),
    ],
)
def test_names_inside_the_folder_are_accepted(name: str, normalised: str) -> None:
    assert check_export_name(name) == normalised


def test_names_are_checked_again_when_the_job_runs() -> None:
    with pytest.raises(ValueError, match="entry 2 '/etc/passwd' is an absolute path"):
        check_export_names(["ok.csv", "/etc/passwd"])
    with pytest.raises(PermanentError, match="files: entry 1"):
        resolve_exports(Path("/nonexistent"), CLIENT, MONTH, ["../x.csv"])


def test_bounded_reads_stop_at_their_limits(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"\xef\xbb\xbfJos\xe9,x\n" + b"a,b\n" * 50)  # BOM, then Windows-1252
    limits = TextLimits(max_bytes=1_000, max_line_chars=20)

    read = read_text(path, lambda lines: sum(1 for _ in lines), limits=limits)
    assert (read.value, read.encoding) == (51, "cp1252-sig")
    assert read.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()

    with pytest.raises(TextTooLarge):  # enforced while reading, whatever stat said before
        read_text(path, lambda lines: list(lines), limits=TextLimits(100, 20))
    with pytest.raises(LineTooLong) as too_long:
        read_text(path, lambda lines: list(lines), limits=TextLimits(1_000, 3))
    assert too_long.value.line_number == 1
    with pytest.raises(NotText):
        read_text(path, lambda lines: list(lines), limits=limits, encodings=("ascii",))
