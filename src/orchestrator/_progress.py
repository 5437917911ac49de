"""Progress of a running attempt: ``ctx.progress(done, total, note=...)`` → ``agent_runs``.

The value is written on a short autocommit connection of its own, never in the job's
transaction: it is visible at once (the dashboard shows a bar, ``orchestrator runs`` shows
``1,500/10,555 leads (14%)``) and holds no lock while the workflow works. Writes are spaced
at least :data:`MIN_INTERVAL_S` apart (the first and the last — ``done >= total`` — always
go through). Progress is a courtesy: a failed write is logged and never fails the job.

Example (inside a workflow)::

    for start in range(0, len(leads), 500):
        await upload(leads[start : start + 500])
        await ctx.progress(start + 500, len(leads), note="leads")
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from orchestrator._queries import QUERIES

logger = logging.getLogger("orchestrator.progress")

#: Writes closer together than this are skipped (the latest value wins at the next write).
MIN_INTERVAL_S = 0.25
#: A progress write never waits longer than this for a pooled connection.
CHECKOUT_TIMEOUT_S = 2.0


def progress_value(done: int, total: int | None, note: str | None) -> dict[str, Any]:
    """The JSON stored in ``agent_runs.progress``."""
    if done < 0 or (total is not None and total < 0):
        raise ValueError("progress counts must not be negative")
    value: dict[str, Any] = {
        "done": int(done),
        "total": None if total is None else int(total),
        "at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    if note:
        value["note"] = str(note)[:200]
    return value


def describe_progress(progress: Any) -> str:
    """``1,500/10,555 leads (14%)`` for a stored progress value ('' when there is none)."""
    if not isinstance(progress, dict) or "done" not in progress:
        return ""
    done = int(progress["done"])
    total = progress.get("total")
    note = f" {progress['note']}" if progress.get("note") else ""
    if total is None:
        return f"{done:,}{note}"
    percent = 100 if int(total) == 0 else min(100, int(done * 100 / int(total)))
    return f"{done:,}/{int(total):,}{note} ({percent}%)"


class ProgressReporter:
    """Writes one run's progress; handed to :class:`~orchestrator._context.WorkflowContext`."""

    def __init__(
        self,
        pool: AsyncConnectionPool[psycopg.AsyncConnection[DictRow]],
        run_id: int,
        *,
        on_write: Callable[[], None] = lambda: None,
    ) -> None:
        self._pool = pool
        self._run_id = run_id
        self._on_write = on_write
        self._last_write = 0.0

    async def __call__(self, done: int, total: int | None, note: str | None) -> None:
        value = progress_value(done, total, note)
        now = time.monotonic()
        final = total is not None and done >= total
        if self._last_write and not final and now - self._last_write < MIN_INTERVAL_S:
            return
        self._last_write = now
        try:
            async with self._pool.connection(timeout=CHECKOUT_TIMEOUT_S) as conn:
                await conn.set_autocommit(True)
                try:
                    await conn.execute(
                        QUERIES["record_progress"],
                        {"run_id": self._run_id, "progress": Jsonb(value)},
                    )
                finally:
                    if not conn.broken:
                        await conn.set_autocommit(False)
            self._on_write()
        except Exception as exc:  # progress must never fail the job
            logger.warning(
                "could not record progress of run %s: %s",
                self._run_id,
                type(exc).__name__,
                extra={"event": "progress.failed", "run_id": self._run_id},
            )
