"""Is the database's schema the one this orchestrator needs? One query to find out.

Every command that uses the database, and the worker, asks before doing anything, so an
unmigrated or out-of-date database stops it with ``database not migrated: run 'orchestrator
migrate'`` (exit code 2) instead of a driver error halfway through — or a worker restarting
forever. The embedded server's database is migrated on first use instead (and says so).

The revisions this version knows are read from the revision files themselves (their
``revision`` and ``down_revision`` lines), not through alembic: importing alembic and
SQLAlchemy costs half a second, which every command would pay. A unit test checks that the
heads found here are alembic's.

Example::

    revisions = await check_schema(url, connect_timeout=10)            # or DatabaseNotMigrated
    revisions = await check_schema(url, connect_timeout=10, migrate=True)  # embedded: upgrade
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from orchestrator._database import connect
from orchestrator._driver_errors import driver_errors
from orchestrator._errors import DatabaseNotMigrated
from orchestrator._log import announce

logger = logging.getLogger("orchestrator.schema")

_REVISION_RE = re.compile(r"^revision\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", re.MULTILINE)
_DOWN_RE = re.compile(r"^down_revision\s*(?::[^=]*)?=\s*(.+)$", re.MULTILINE)
_QUOTED_RE = re.compile(r"['\"]([^'\"]+)['\"]")
NOT_MIGRATED = "database not migrated: run 'orchestrator migrate'"


@dataclass(frozen=True)
class Revisions:
    """Every revision shipped with the installed packages, and the heads among them."""

    known: frozenset[str]
    heads: frozenset[str]


@functools.cache
def shipped_revisions() -> Revisions:
    """The revisions in the engine's and the plugins' version folders (read once)."""
    from orchestrator._migrate import version_locations

    known: set[str] = set()
    parents: set[str] = set()
    for location in version_locations():
        for path in sorted(Path(location).glob("*.py")):
            text = path.read_text(encoding="utf-8")
            revision = _REVISION_RE.search(text)
            if revision is None:
                continue
            known.add(revision.group(1))
            down = _DOWN_RE.search(text)
            if down is not None:
                parents.update(_QUOTED_RE.findall(down.group(1)))
    return Revisions(frozenset(known), frozenset(known - parents))


async def current_revisions(conn: psycopg.AsyncConnection[Any]) -> frozenset[str]:
    """The revisions the database is at (``DatabaseNotMigrated`` when it has none)."""
    with driver_errors("could not read the schema revision"):
        cursor = await conn.execute("SELECT version_num FROM alembic_version")
        rows = await cursor.fetchall()
    return frozenset(str(row[0]) for row in rows)


def verdict(current: frozenset[str], shipped: Revisions) -> str | None:
    """Why ``current`` will not do (``None``: it will).

    >>> shipped = Revisions(frozenset({"a", "b"}), frozenset({"b"}))
    >>> verdict(frozenset({"b"}), shipped) is None
    True
    >>> verdict(frozenset({"a"}), shipped)
    "database not migrated: run 'orchestrator migrate' (the schema is at a; this version needs b)"
    >>> verdict(frozenset(), shipped)
    "database not migrated: run 'orchestrator migrate'"
    """
    if not current:
        return NOT_MIGRATED
    if current == shipped.heads or not current <= shipped.known:
        # Revisions we do not know: a newer version migrated this database; it may well
        # work (migrations add), and refusing would stop every older worker of a rollout.
        return None
    return (
        f"{NOT_MIGRATED} (the schema is at {', '.join(sorted(current))}; "
        f"this version needs {', '.join(sorted(shipped.heads))})"
    )


async def check_schema(
    url: str, *, connect_timeout: float, migrate: bool = False
) -> frozenset[str]:
    """Connect once and compare the schema's revisions with the shipped heads.

    Raises :class:`DatabaseUnavailable` (no password in the message) when the database cannot
    be reached, :class:`DatabaseNotMigrated` when the schema is missing or behind — unless
    ``migrate`` is true (the embedded server): then it is upgraded, with a notice on stderr.
    Returns the revisions the database is at.
    """
    conn = await connect(url, connect_timeout)
    try:
        try:
            current = await current_revisions(conn)
        except DatabaseNotMigrated:
            current = frozenset()
    finally:
        await conn.close()
    shipped = shipped_revisions()
    problem = verdict(current, shipped)
    if problem is None:
        if not current <= shipped.known:
            logger.debug(
                "database schema at %s, unknown to this version (a newer one migrated it)",
                ", ".join(sorted(current)),
            )
        return current
    if not migrate:
        raise DatabaseNotMigrated(problem)
    announce(
        "migrating the embedded database to the latest schema"
        + (" (first use)" if not current else ""),
        event="schema.migrating",
    )
    await asyncio.to_thread(_upgrade, url)
    announce(
        f"database migrated to {', '.join(sorted(shipped.heads))}",
        event="schema.migrated",
    )
    return shipped.heads


def _upgrade(url: str) -> None:
    from orchestrator._migrate import upgrade

    upgrade(url)
