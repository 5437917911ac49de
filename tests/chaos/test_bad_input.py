"""Bad input campaign: every kind of garbage gets a clear error and the right retry class.

- Enqueue (CLI and Python API): malformed JSON, non-object and oversized payloads, unknown
  workflows, NUL characters, bad encodings — refused with one readable line (CLI exit 2) or
  :class:`InvalidPayload`/:class:`UnknownWorkflow`, and nothing inserted.
- PT1 on a real worker: wrong headers, undecodable bytes and empty files fail the job at once
  (``failed``, one attempt, ``ColeFormatError`` naming the file); NUL bytes and ragged rows
  become bad rows kept for review while the good rows load; rows of an earlier load are never
  lost, and a run with one bad file loads nothing at all.
- PT4 against the local EmailBison stand-in answering broken JSON, an HTML 502 page and too
  slowly: each attempt is ``retrying`` with an ``EmailBisonRetryableError``, the next one
  succeeds, and what PT1-PT3 stored is untouched.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator._enqueue import JobRequest
from orchestrator._errors import InvalidPayload, PermanentError, RetryableError, UnknownWorkflow
from tests.chaos.harness import ChaosRun, Db, pipeline_registry, record, run_cli
from tests.fix_db import subprocess_env
from workflows.clients import ClientSpec, add_client
from workflows.cole import COLE_COLUMNS, export_dir
from workflows.emailbison import errors as bison_errors
from workflows.standins.emailbison_server import LocalEmailBison
from workflows.standins.synthetic import generate_exports

pytestmark = pytest.mark.chaos

MONTH = "2026-03"
OTHER_MONTH = "2026-04"
ZIPS = ("75001", "75002", "75006", "73003", "73008")
HEADER = ",".join(COLE_COLUMNS)
GOOD_ROW = "Ann,Lee,1 Oak St,Dallas,TX,75001,2145550101,ann@example.com,03/04/2019,$300000,Y,,"
# 500 distinct, allowed names of ~2,100 characters: a payload over the 1,000,000 byte limit
LONG_NAMES = [("d" * 250 + "/") * 8 + f"{n:03d}.csv" for n in range(500)]
HTML_502 = "<html><head><title>502 Bad Gateway</title></head><body><h1>502</h1></body></html>"


# -- enqueue ------------------------------------------------------------------------------


async def test_bad_enqueue_input(database_url: str, tmp_path: Path) -> None:
    big_key = tmp_path / "big_key.json"
    big_key.write_text(json.dumps({"key": "x" * 2_000_000}))
    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps({"client": "Acme", "month": MONTH, "files": LONG_NAMES}))
    not_utf8 = tmp_path / "latin1.json"
    not_utf8.write_bytes(b'{"key": "Jos\xe9 \x81"}')
    cases: list[tuple[str, list[str], str]] = [
        ("malformed JSON", ["write_row", "--payload", '{"key": "a",'], "is not valid JSON"),
        ("not an object", ["write_row", "--payload", "[1, 2]"], "must be a JSON object"),
        ("wrong type", ["write_row", "--payload", '{"key": "k", "sleep": "soon"}'], "sleep"),
        ("oversized field", ["write_row", "--payload", f"@{big_key}"], "at most 200 char"),
        ("oversized payload", ["pt1", "--payload", f"@{huge}"], "the limit is 1000000"),
        ("unknown workflow", ["no_such_flow", "--payload", "{}"], "unknown workflow"),
        ("missing file", ["write_row", "--payload", "@/nonexistent/p.json"], "cannot read"),
        ("NUL character", ["write_row", "--payload", '{"key": "a\\u0000b"}'], "NUL"),
        ("not UTF-8", ["write_row", "--payload", f"@{not_utf8}"], "UTF-8"),
        ("bad month", ["pt1", "--payload", '{"client": "A", "month": "2026-13"}'], "month"),
    ]
    async with ChaosRun(database_url, tmp_path, registry=pipeline_registry()) as run:
        env = subprocess_env(database_url)
        began = time.monotonic()
        results = await asyncio.gather(*(run_cli(env, "enqueue", *args) for _, args, _ in cases))
        cli_s = time.monotonic() - began
        for (name, _, expected), result in zip(cases, results, strict=True):
            lines = result.stderr.strip().splitlines()
            assert result.code == 2, f"{name}: exit {result.code}\n{result.stderr[-2000:]}"
            assert len(lines) == 1 and lines[0].startswith("orchestrator: "), (name, lines)
            assert expected in lines[0], (name, lines[0])
            assert len(lines[0]) < 400, (name, len(lines[0]))
            assert result.stdout == "", (name, result.stdout)

        long_message = ""
        with pytest.raises(UnknownWorkflow, match="no_such_flow"):
            await run.orch.enqueue_workflow("no_such_flow", {})
        with pytest.raises(InvalidPayload, match="must be a JSON object"):
            await run.orch.enqueue_workflow("write_row", ["key"])  # type: ignore[arg-type]
        with pytest.raises(InvalidPayload, match="key"):
            await run.orch.enqueue_workflow("write_row", {"key": ""})
        with pytest.raises(InvalidPayload, match="at most 200") as caught:
            await run.orch.enqueue_workflow("write_row", {"key": "x" * 2_000_000})
        long_message = str(caught.value)
        with pytest.raises(InvalidPayload, match="the limit is"):
            await run.orch.enqueue_workflow(
                "pt1", {"client": "A", "month": MONTH, "files": LONG_NAMES}
            )
        with pytest.raises(InvalidPayload, match="NUL"):
            await run.orch.enqueue_workflow("write_row", {"key": "a\x00b"})
        with pytest.raises(InvalidPayload, match="month"):
            await run.orch.enqueue_workflow("pt1", {"client": "A", "month": "March"})
        with pytest.raises(InvalidPayload):  # all or nothing: the good one is not inserted
            await run.orch.enqueue_many(
                [
                    JobRequest("write_row", {"key": "good"}),
                    JobRequest("write_row", {"key": "bad", "sleep": -1}),
                ]
            )
        jobs = await run.db.value("SELECT count(*) FROM procrastinate_jobs")
        record(
            "5a bad enqueue input",
            cli_cases=len(cases),
            cli_wall_s=cli_s,
            api_cases=8,
            jobs_inserted=jobs,
            longest_message_chars=max(len(long_message), *(len(r.stderr) for r in results)),
        )
        assert jobs == 0
        assert len(long_message) < 400


# -- PT1: Cole exports --------------------------------------------------------------------


async def test_bad_cole_exports(database_url: str, tmp_path: Path) -> None:
    client = "Bad Files Agency"
    inbox = tmp_path / "inbox"
    generate_exports(
        inbox, client=client, month=MONTH, states=["TX"], zips=ZIPS[:3], rows=300, seed=11
    )
    # Explicit files are named relative to the client-month folder (nothing else is read);
    # the bad ones are dropped after the month's first pull, which reads the whole folder.
    drop = export_dir(inbox, client, MONTH) / "drop"
    ragged_drop = export_dir(inbox, client, OTHER_MONTH) / "drop"
    files: dict[str, bytes] = {
        "wrong_header.csv": (HEADER.replace("Zip", "Zip Code") + "\r\n" + GOOD_ROW).encode(),
        # 0x81 and 0x8D are neither UTF-8 here nor defined in Windows-1252
        "bad_encoding.csv": (HEADER + "\r\n").encode() + b"Ren\x81e,Ma\x8dk" + b",x" * 11,
        "empty.csv": b"",
        "blank.csv": b"\r\n  \r\n,,,\r\n",
        "new_good.csv": (HEADER + "\r\n" + GOOD_ROW.replace("Ann", "Zed")).encode(),
        "nul_ragged.csv": "\r\n".join(
            [
                HEADER,
                GOOD_ROW,
                GOOD_ROW.replace("Ann", "Bob").replace("ann@", "bob@"),
                GOOD_ROW.replace("Ann", "C\x00y"),
                "Dee,Short,1 Elm St,Dallas,TX,75001",
                GOOD_ROW.replace("Ann", "Eve").replace("ann@", "eve@") + ",extra,cells",
                GOOD_ROW.replace("Ann", "Fay").replace("ann@", "fay@"),
            ]
        ).encode(),
    }

    def drop_files() -> None:
        drop.mkdir()
        ragged_drop.mkdir(parents=True)
        for name, data in files.items():
            (ragged_drop if name == "nul_ragged.csv" else drop).joinpath(name).write_bytes(data)

    env = subprocess_env(database_url, ORCHESTRATOR_COLE_INBOX=str(inbox))
    async with ChaosRun(
        database_url, tmp_path, worker_env=env, registry=pipeline_registry()
    ) as run:
        async with run.orch.pool.connection() as conn:
            await add_client(
                conn,
                ClientSpec(name=client, tier=100, licensed_states=["TX"], approved_zips=list(ZIPS)),
            )
            await conn.commit()
        run.workers.start()
        base_job = await run.orch.enqueue_workflow("pt1", {"client": client, "month": MONTH})
        await _wait_finished(run.db, [base_job])
        assert await _state(run.db, base_job) == "succeeded", await _runs(run.db, base_job)
        loaded = await _loaded(run.db, client, MONTH)
        assert loaded["people"] > 0
        drop_files()

        failing = {
            "wrong header": (["drop/wrong_header.csv"], "unknown column 'Zip Code'"),
            "bad encoding": (["drop/bad_encoding.csv"], "not valid UTF-8 or Windows-1252"),
            "empty file": (["drop/empty.csv"], "file is empty"),
            "blank file": (["drop/blank.csv"], "file is empty"),
            "one bad file of two": (
                ["drop/new_good.csv", "drop/wrong_header.csv"],
                "unknown column 'Zip Code'",
            ),
        }
        ids: dict[str, int] = {}
        for name, (names, _) in failing.items():
            ids[name] = await run.orch.enqueue_workflow(
                "pt1", {"client": client, "month": MONTH, "files": names}
            )
        ragged_job = await run.orch.enqueue_workflow(
            "pt1", {"client": client, "month": OTHER_MONTH, "files": ["drop/nul_ragged.csv"]}
        )
        await _wait_finished(run.db, [*ids.values(), ragged_job])

        for name, (names, expected) in failing.items():
            runs = await _runs(run.db, ids[name])
            assert await _state(run.db, ids[name]) == "failed", (name, runs)
            assert [r["status"] for r in runs] == ["failed"], (name, runs)  # no retry
            error = runs[0]["error"]
            assert error["type"] == "ColeFormatError", (name, error)
            assert expected in error["message"], (name, error["message"])
            assert names[-1] in error["message"], (name, error["message"])  # names the file
        assert await _loaded(run.db, client, MONTH) == loaded, "stored rows changed"
        assert not await run.db.rows(
            "SELECT id FROM cole_files WHERE file_name LIKE '%/drop/new_good.csv'"
        ), "a run with a bad file loaded its good file"

        assert await _state(run.db, ragged_job) == "succeeded", await _runs(run.db, ragged_job)
        bad_rows = await run.db.rows(
            "SELECT b.row_number, b.reason FROM cole_bad_rows b"
            "  JOIN cole_files f ON f.id = b.file_id"
            " WHERE f.file_name LIKE '%/drop/nul_ragged.csv' ORDER BY b.row_number"
        )
        assert [(r["row_number"], r["reason"]) for r in bad_rows] == [
            (4, "contains NUL byte"),
            (5, "expected 13 cells, got 6"),
            (6, "expected 13 cells, got 15"),
        ]
        ragged = await _loaded(run.db, client, OTHER_MONTH)
        assert ragged["people"] == 3  # Ann, Bob, Fay
        run.workers.assert_survivors_alive()
        record(
            "5b bad Cole exports",
            base_people=loaded["people"],
            base_files=loaded["files"],
            failed_jobs=len(failing),
            error_types=sorted(
                {(await _runs(run.db, i))[0]["error"]["type"] for i in ids.values()}
            ),
            bad_rows_kept=len(bad_rows),
            good_rows_of_ragged_file=ragged["people"],
        )


# -- PT4: EmailBison faults ---------------------------------------------------------------


async def test_emailbison_faults(database_url: str, tmp_path: Path) -> None:
    client = "Fault Tolerant Agency"
    key_env = "EMAILBISON_KEY_CHAOS"
    api_key = secrets.token_hex(16)
    inbox = tmp_path / "inbox"
    generate_exports(
        inbox, client=client, month=MONTH, states=["TX", "OK"], zips=ZIPS, rows=1_500, seed=5
    )
    bison = LocalEmailBison()
    base_url = bison.start()
    try:
        bison.add_workspace(api_key)
        env = subprocess_env(
            database_url,
            ORCHESTRATOR_COLE_INBOX=str(inbox),
            ORCHESTRATOR_DEFAULT_RETRY_DELAY="1",
            ORCHESTRATOR_EMAILBISON_ALLOW_HTTP_LOOPBACK="1",
            **{key_env: api_key},
        )
        async with ChaosRun(
            database_url, tmp_path, worker_env=env, registry=pipeline_registry()
        ) as run:
            async with run.orch.pool.connection() as conn:
                await add_client(
                    conn,
                    ClientSpec(
                        name=client,
                        tier=100,
                        licensed_states=["TX", "OK"],
                        approved_zips=list(ZIPS),
                        emailbison_url=base_url,
                        emailbison_key_env=key_env,
                    ),
                )
                await conn.commit()
            run.workers.start()
            payload = {"client": client, "month": MONTH}
            for workflow in ("pt1", "pt2", "pt3"):
                job = await run.orch.enqueue_workflow(workflow, payload)
                await _wait_finished(run.db, [job])
                assert await _state(run.db, job) == "succeeded", await _runs(run.db, job)
            stored = await _stored(run.db)

            bison.broken_json_next(1)  # the first request of attempt 1
            bison.fail_next(502, body=HTML_502, path_contains="create-or-update")  # attempt 2
            began = time.monotonic()
            job = await run.orch.enqueue_workflow("pt4", payload, attempts=5)
            await _wait_runs(run.db, job, retrying=2)
            bison.slow_seconds = 31.0  # attempt 3: past the client's 30 s timeout
            await _wait_runs(run.db, job, retrying=3, timeout=60)
            bison.slow_seconds = 0.0
            await _wait_finished(run.db, [job], timeout=60)
            pt4_s = time.monotonic() - began

            runs = await _runs(run.db, job)
            assert await _state(run.db, job) == "succeeded", runs
            assert [r["status"] for r in runs] == ["retrying"] * 3 + ["succeeded"], runs
            expected = ["not JSON", "HTTP 502", "no answer in time"]
            for r, text in zip(runs, expected, strict=False):
                error_class = getattr(bison_errors, r["error"]["type"])
                assert issubclass(error_class, RetryableError), r["error"]
                assert not issubclass(error_class, PermanentError), r["error"]
                assert text in r["error"]["message"], r["error"]
                assert len(r["error"]["message"]) < 400, r["error"]["message"]
            assert await _stored(run.db) == stored, "PT1-PT3 data changed"
            uploaded = await run.db.value(
                "SELECT count(*) FROM uploaded_leads WHERE status = 'uploaded'"
            )
            window_leads = await run.db.value("SELECT count(*) FROM window_leads")
            rejected = await run.db.value(
                "SELECT count(*) FROM uploaded_leads WHERE status = 'rejected'"
            )
            assert uploaded == len(bison.leads(api_key)) > 0
            assert uploaded + rejected == window_leads
            run.workers.assert_survivors_alive()
            record(
                "5c EmailBison faults",
                pt4_attempts=len(runs),
                retry_errors=[
                    f"{r['error']['type']}: {r['error']['message'][:60]}" for r in runs[:3]
                ],
                leads_uploaded=uploaded,
                pt4_wall_s=pt4_s,
            )
    finally:
        bison.stop()


# -- helpers ------------------------------------------------------------------------------


async def _wait_finished(db: Db, job_ids: list[int], *, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    for _ in range(100_000):
        left = await db.value(
            "SELECT count(*) FROM procrastinate_jobs WHERE id = ANY(%s)"
            " AND status IN ('todo', 'doing')",
            [job_ids],
        )
        if left == 0:
            return
        assert time.monotonic() < deadline, f"jobs {job_ids} not finished in {timeout} s"
        await asyncio.sleep(0.1)


async def _wait_runs(db: Db, job_id: int, *, retrying: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    for _ in range(100_000):
        n = await db.value(
            "SELECT count(*) FROM agent_runs WHERE job_id = %s AND status = 'retrying'", [job_id]
        )
        if n >= retrying:
            return
        assert time.monotonic() < deadline, f"job {job_id}: {n} retrying runs after {timeout} s"
        await asyncio.sleep(0.05)


async def _state(db: Db, job_id: int) -> str:
    state: str = await db.value(
        "SELECT status::text FROM procrastinate_jobs WHERE id = %s", [job_id]
    )
    return state


async def _runs(db: Db, job_id: int) -> list[dict[str, Any]]:
    rows = await db.rows(
        "SELECT attempt, status::text AS status, error FROM agent_runs"
        " WHERE job_id = %s ORDER BY id",
        [job_id],
    )
    return [dict(r) for r in rows]


async def _loaded(db: Db, client: str, month: str) -> dict[str, int]:
    row = await db.one(
        "SELECT (SELECT count(*) FROM raw_leads r WHERE r.client_id = c.id"
        "          AND r.month = %(m)s::date) AS people,"
        "       (SELECT count(*) FROM cole_files f WHERE f.client_id = c.id"
        "          AND f.month = %(m)s::date) AS files"
        "  FROM clients c WHERE c.name = %(c)s",
        {"c": client, "m": f"{month}-01"},
    )
    return {"people": int(row["people"]), "files": int(row["files"])}


async def _stored(db: Db) -> dict[str, int]:
    row = await db.one(
        "SELECT (SELECT count(*) FROM raw_leads) AS raw, (SELECT count(*) FROM cole_files)"
        " AS files, (SELECT count(*) FROM cleaned_leads) AS cleaned,"
        " (SELECT count(*) FROM gap_reports) AS gaps"
    )
    return {k: int(v) for k, v in row.items()}
