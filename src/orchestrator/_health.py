"""Is the database reachable and migrated? One answer for ``orchestrator health`` and /readyz.

``orchestrator health`` prints one line and exits 0 (healthy) or 1, for scripts and container
healthchecks::

    $ orchestrator health
    ok: database reachable, schema at 0006_console
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from orchestrator._redaction import redact_url


@dataclass(frozen=True)
class Health:
    ok: bool
    message: str

    def line(self) -> str:
        return f"{'ok' if self.ok else 'unhealthy'}: {self.message}"


def expected_revisions() -> set[str]:
    """The alembic head(s) of this installation (read once per process by callers)."""
    from orchestrator._migrate import head_revisions

    return head_revisions()


async def check_database(url: str, expected: set[str], timeout: float = 5.0) -> Health:
    """Connect, read ``alembic_version`` and compare it with ``expected``."""
    try:
        async with await psycopg.AsyncConnection.connect(
            url, connect_timeout=max(1, int(timeout)), autocommit=True
        ) as conn:
            await conn.execute("SET statement_timeout = 5000")
            try:
                cursor = await conn.execute("SELECT version_num FROM alembic_version")
            except psycopg.errors.UndefinedTable:
                return Health(False, "database reachable but not migrated (orchestrator migrate)")
            current = {str(row[0]) for row in await cursor.fetchall()}
    except psycopg.Error as exc:
        text = str(exc).strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        return Health(False, f"database unreachable: {redact_url(reason)}")
    if current != expected:
        return Health(
            False,
            f"schema at {', '.join(sorted(current)) or 'nothing'}, expected "
            f"{', '.join(sorted(expected))} (orchestrator migrate)",
        )
    return Health(True, f"database reachable, schema at {', '.join(sorted(current))}")
