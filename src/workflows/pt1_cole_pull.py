"""PT1 — Cole pull: load a client-month's Cole exports into ``raw_leads``.

For ``{client, month}`` (the renewal month), every CSV under
``$ORCHESTRATOR_COLE_INBOX/<client dir>/<month>/`` (or the listed ``files``, names relative
to that folder) is read, and nothing outside it: names and files are checked by
:mod:`workflows.cole_inbox` (at enqueue and again here, since a job can be inserted without
validation), and each file is read within :mod:`workflows.cole_reader`'s limits (50 MiB,
10,000 records, bounded lines). All headers are validated before anything is written, so a
bad file (missing or unknown column, or not a Cole export at all) fails the run as a
permanent error naming file and column with nothing half-loaded; errors never quote a
file's content. Then, one file at a time, in one transaction each (committed as progress):

- a file whose content hash was already loaded for this client-month is skipped;
- good rows are streamed with ``COPY`` into a staging table and moved into ``raw_leads``,
  deduplicating people across overlapping exports by their dedupe key (first seen wins);
- bad rows are kept in ``cole_bad_rows`` with their row number and reason.

Finally the pulled ZIP codes and their row counts are recomputed for the month.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from orchestrator import Workflow, WorkflowContext
from workflows.clients import get_client
from workflows.cole import FIELD_NAMES, ColeExport, copy_records
from workflows.cole_inbox import ExportFile, check_export_names, resolve_exports
from workflows.cole_reader import read_export, read_export_header
from workflows.copy_format import copy_text_blocks
from workflows.formatting import dedupe_key, normalize_zip
from workflows.inputs import ClientMonth, client_lock
from workflows.notify import notify
from workflows.preflight import check_cole_pull
from workflows.schedules import enqueue_next_step
from workflows.settings import pipeline_settings

STAGE_COLUMNS = ("row_number", *FIELD_NAMES, "zip5", "dedupe_key")
_COLUMN_LIST = ", ".join(STAGE_COLUMNS)


class ColePullInput(ClientMonth):
    """``files``: export names relative to the client-month folder (``tx.csv``,
    ``ok/part02.csv``); absolute paths, ``..``, duplicates and more than
    :data:`~workflows.cole_inbox.MAX_LISTED_FILES` entries are refused. Without ``files``
    every ``*.csv`` in the folder is read."""

    files: list[str] | None = Field(default=None)

    @field_validator("files")
    @classmethod
    def _files(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else check_export_names(value)


def _stage_rows(export: ColeExport) -> list[tuple[Any, ...]]:
    """Staging rows in :data:`STAGE_COLUMNS` order: Cole's COPY record plus ZIP and key."""
    rows = []
    for record in copy_records(export):
        cells, row_number = record[:13], record[13]
        first_name, last_name, address_1, _city, _state, zip_code = cells[:6]
        zip5 = normalize_zip(zip_code)
        key = dedupe_key(first_name, last_name, address_1, zip5 or zip_code)
        rows.append((row_number, *cells, zip5, key))
    return rows


def _stage_text(export: ColeExport) -> list[str]:
    return copy_text_blocks(_stage_rows(export))


def _check_headers(files: list[ExportFile]) -> None:
    """Every file's header, before anything is written (cheap: reading stops there)."""
    for export_file in files:
        read_export_header(export_file.path, display_name=export_file.display)


async def _load_file(
    ctx: WorkflowContext, client_id: int, data: ColePullInput, export_file: ExportFile
) -> dict[str, Any] | None:
    """Load one export in its own transaction (committed); ``None`` if already loaded."""
    conn = ctx.connection
    export = await asyncio.to_thread(
        read_export, export_file.path, display_name=export_file.display
    )
    cursor = await conn.execute(
        "SELECT id FROM cole_files WHERE client_id = %s AND month = %s AND sha256 = %s",
        [client_id, data.first_day, export.sha256],
    )
    if await cursor.fetchone() is not None:
        return None
    text_blocks = await asyncio.to_thread(_stage_text, export)
    cursor = await conn.execute(
        """
        INSERT INTO cole_files (client_id, month, file_name, sha256, encoding, row_count,
                                bad_row_count, new_people, job_id)
        VALUES (%s, %s, %s, %s, %s, %s, %s, 0, %s) RETURNING id
        """,
        [
            client_id,
            data.first_day,
            export.file,
            export.sha256,
            export.encoding,
            len(export.rows),
            len(export.bad_rows),
            ctx.job_id,
        ],
    )
    file_row = await cursor.fetchone()
    assert file_row is not None
    file_id = file_row["id"]
    async with conn.cursor().copy(f"COPY pt1_stage ({_COLUMN_LIST}) FROM STDIN") as copy:
        for block in text_blocks:
            await copy.write(block)
    cursor = await conn.execute(
        f"""
        INSERT INTO raw_leads (client_id, month, file_id, {_COLUMN_LIST})
        SELECT %s, %s, %s, {_COLUMN_LIST} FROM pt1_stage ORDER BY row_number
        ON CONFLICT (client_id, month, dedupe_key) DO NOTHING
        """,  # noqa: S608
        [client_id, data.first_day, file_id],
    )
    new_people = cursor.rowcount
    if export.bad_rows:
        async with conn.cursor().copy(
            "COPY cole_bad_rows (file_id, row_number, reason, raw) FROM STDIN"
        ) as copy:
            for bad in export.bad_rows:
                await copy.write_row((file_id, bad.row_number, bad.reason, bad.raw))
    await conn.execute("UPDATE cole_files SET new_people = %s WHERE id = %s", [new_people, file_id])
    await conn.execute("TRUNCATE pt1_stage")
    await ctx.commit()
    return {
        "file": export.file,
        "rows": len(export.rows),
        "bad_rows": len(export.bad_rows),
        "new_people": new_people,
        "duplicates": len(export.rows) - new_people,
    }


async def run(ctx: WorkflowContext, data: ColePullInput) -> dict[str, Any]:
    conn = ctx.connection
    client = await get_client(conn, data.client)
    inbox = Path(pipeline_settings(ctx.settings).cole_inbox)
    # File system work and parsing are off the event loop, so heartbeats and other jobs go on.
    files = await asyncio.to_thread(resolve_exports, inbox, data.client, data.month, data.files)
    await asyncio.to_thread(_check_headers, files)

    await conn.execute(
        f"""
        CREATE TEMP TABLE IF NOT EXISTS pt1_stage (
            {", ".join(f"{c} {'integer' if c == 'row_number' else 'text'}" for c in STAGE_COLUMNS)}
        ) ON COMMIT DELETE ROWS
        """
    )
    loaded: list[dict[str, Any]] = []
    skipped: list[str] = []
    # One file at a time, read and loaded (and released) before the next is opened: memory
    # stays bounded by one export within the reader's limits, however many files are listed.
    await ctx.progress(0, len(files), note="files")
    for position, export_file in enumerate(files, start=1):
        outcome = await _load_file(ctx, client.id, data, export_file)
        if outcome is None:
            skipped.append(export_file.display)
        else:
            loaded.append(outcome)
        await ctx.progress(position, len(files), note="files")

    await conn.execute(
        "DELETE FROM pulled_zips WHERE client_id = %s AND month = %s", [client.id, data.first_day]
    )
    await conn.execute(
        """
        INSERT INTO pulled_zips (client_id, month, zip, rows)
        SELECT client_id, month, COALESCE(zip5, '?'), count(*)
          FROM raw_leads WHERE client_id = %s AND month = %s
         GROUP BY client_id, month, COALESCE(zip5, '?')
        """,
        [client.id, data.first_day],
    )
    cursor = await conn.execute(
        """
        SELECT (SELECT count(*) FROM raw_leads WHERE client_id = %(c)s AND month = %(m)s)
                   AS people,
               (SELECT count(*) FROM pulled_zips WHERE client_id = %(c)s AND month = %(m)s)
                   AS zips,
               (SELECT count(*) FROM cole_bad_rows b JOIN cole_files f ON f.id = b.file_id
                 WHERE f.client_id = %(c)s AND f.month = %(m)s) AS bad_rows
        """,
        {"c": client.id, "m": data.first_day},
    )
    totals = await cursor.fetchone()
    assert totals is not None
    result = {
        "client": client.name,
        "month": data.month,
        "files_loaded": loaded,
        "files_skipped": skipped,
        "people": totals["people"],
        "zips": totals["zips"],
        "bad_rows": totals["bad_rows"],
    }
    if data.chain:
        result["next_job"] = await enqueue_next_step(ctx, "pt1", client.name, data.month)
    await notify(
        ctx,
        f"PT1 Cole pull done for {client.name}, {data.month}: {len(loaded)} file(s) loaded, "
        f"{len(skipped)} already loaded, {totals['people']} people in {totals['zips']} ZIPs, "
        f"{totals['bad_rows']} bad rows kept for review",
    )
    return result


WORKFLOW: Workflow[ColePullInput] = Workflow(
    name="pt1",
    aliases=("pt1_cole_pulls", "pt1_cole_pull", "cole_pull"),
    input_model=ColePullInput,
    run=run,
    check=check_cole_pull,
    description="Cole pull: load a client-month's CSV exports",
    lock=client_lock,
)
