"""PT1 — Cole pull: load a client-month's Cole exports into ``raw_leads``.

For ``{client, month}`` (the renewal month), every CSV under
``$ORCHESTRATOR_COLE_INBOX/<client dir>/<month>/`` (or the listed ``files``) is read. All
headers are validated before anything is written, so a bad file (missing or unknown column)
fails the run as a permanent error naming file and column with nothing half-loaded. Then,
per file, in one transaction each (committed as progress):

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

from pydantic import Field

from orchestrator import PermanentError, Workflow, WorkflowContext
from workflows.clients import get_client
from workflows.cole import (
    FIELD_NAMES,
    ColeExport,
    copy_records,
    discover_exports,
    export_dir,
    read_export,
)
from workflows.copy_format import copy_text_blocks
from workflows.formatting import dedupe_key, normalize_zip
from workflows.inputs import ClientMonth, client_lock
from workflows.notify import notify
from workflows.schedules import month_dedupe_key
from workflows.settings import pipeline_settings

STAGE_COLUMNS = ("row_number", *FIELD_NAMES, "zip5", "dedupe_key")
_COLUMN_LIST = ", ".join(STAGE_COLUMNS)


class ColePullInput(ClientMonth):
    files: list[str] | None = Field(default=None, max_length=500)


def _resolve_files(inbox: Path, data: ColePullInput) -> list[tuple[Path, str]]:
    if data.files:
        out = []
        for name in data.files:
            path = Path(name)
            if not path.is_absolute():
                path = inbox / path
            if not path.is_file():
                raise PermanentError(f"cole export {name!r} not found (looked at {path})")
            try:
                display = path.resolve().relative_to(inbox.resolve()).as_posix()
            except ValueError:
                display = path.name
            out.append((path, display))
        return out
    paths = discover_exports(inbox, data.client, data.month)
    if not paths:
        raise PermanentError(
            f"no Cole exports for client {data.client!r} month {data.month}: "
            f"no *.csv in {export_dir(inbox, data.client, data.month)}"
        )
    return [(p, p.relative_to(inbox).as_posix()) for p in paths]


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


async def run(ctx: WorkflowContext, data: ColePullInput) -> dict[str, Any]:
    conn = ctx.connection
    client = await get_client(conn, data.client)
    inbox = Path(pipeline_settings(ctx.settings).cole_inbox)
    files = _resolve_files(inbox, data)
    # Parsing is CPU work: off the event loop, so heartbeats and other jobs keep going.
    exports = [
        await asyncio.to_thread(read_export, path, display_name=display) for path, display in files
    ]

    await conn.execute(
        f"""
        CREATE TEMP TABLE IF NOT EXISTS pt1_stage (
            {", ".join(f"{c} {'integer' if c == 'row_number' else 'text'}" for c in STAGE_COLUMNS)}
        ) ON COMMIT DELETE ROWS
        """
    )
    loaded: list[dict[str, Any]] = []
    skipped: list[str] = []
    # The COPY text of the next file is prepared in a thread while the database loads this one.
    staged = [asyncio.create_task(asyncio.to_thread(_stage_text, exports[0]))] if exports else []
    for position, export in enumerate(exports):
        text_blocks = staged[position]
        if position + 1 < len(exports):
            staged.append(
                asyncio.create_task(asyncio.to_thread(_stage_text, exports[position + 1]))
            )
        cursor = await conn.execute(
            "SELECT id FROM cole_files WHERE client_id = %s AND month = %s AND sha256 = %s",
            [client.id, data.first_day, export.sha256],
        )
        if await cursor.fetchone() is not None:
            skipped.append(export.file)
            continue
        cursor = await conn.execute(
            """
            INSERT INTO cole_files (client_id, month, file_name, sha256, encoding, row_count,
                                    bad_row_count, new_people, job_id)
            VALUES (%s, %s, %s, %s, %s, %s, %s, 0, %s) RETURNING id
            """,
            [
                client.id,
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
            for block in await text_blocks:
                await copy.write(block)
        cursor = await conn.execute(
            f"""
            INSERT INTO raw_leads (client_id, month, file_id, {_COLUMN_LIST})
            SELECT %s, %s, %s, {_COLUMN_LIST} FROM pt1_stage ORDER BY row_number
            ON CONFLICT (client_id, month, dedupe_key) DO NOTHING
            """,  # noqa: S608
            [client.id, data.first_day, file_id],
        )
        new_people = cursor.rowcount
        if export.bad_rows:
            async with conn.cursor().copy(
                "COPY cole_bad_rows (file_id, row_number, reason, raw) FROM STDIN"
            ) as copy:
                for bad in export.bad_rows:
                    await copy.write_row((file_id, bad.row_number, bad.reason, bad.raw))
        await conn.execute(
            "UPDATE cole_files SET new_people = %s WHERE id = %s", [new_people, file_id]
        )
        await conn.execute("TRUNCATE pt1_stage")
        await ctx.commit()
        loaded.append(
            {
                "file": export.file,
                "rows": len(export.rows),
                "bad_rows": len(export.bad_rows),
                "new_people": new_people,
                "duplicates": len(export.rows) - new_people,
            }
        )

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
        result["next_job"] = await ctx.enqueue(
            "pt2",
            {"client": client.name, "month": data.month, "chain": True},
            # the month's chain keeps one key: a second run-month finds it running
            dedupe_key=month_dedupe_key(client.name, data.month),
        )
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
    description="Cole pull: load a client-month's CSV exports",
    lock=client_lock,
)
