"""``orchestrator psql``: psql on the orchestrator's database, embedded or not.

The embedded server stops when the last orchestrator process using it exits, so
``psql "$(orchestrator db-url --reveal)"`` finds it gone; this command stays alive (and keeps
the server up) while psql runs. The password goes to psql in ``PGPASSWORD``, not on its
command line (where ``ps`` would show it). Ctrl-C belongs to psql (it cancels a query).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence

from orchestrator._errors import ConfigurationError
from orchestrator._settings import Settings


def run_psql(settings: Settings, extra_args: Sequence[str]) -> int:
    """Run psql on the database until it exits; its exit code."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from orchestrator._database import resolve_database_url
    from orchestrator._schema import check_schema

    psql = shutil.which("psql")
    if psql is None:
        raise ConfigurationError(
            "psql is not installed (or not on PATH): install the PostgreSQL client, "
            "e.g. apt-get install postgresql-client"
        )
    url = resolve_database_url(settings)
    if settings.database_url is None:
        # The embedded database is migrated on first use, here as anywhere else.
        asyncio.run(check_schema(url, connect_timeout=settings.connect_timeout, migrate=True))
    params = conninfo_to_dict(url)
    env = dict(os.environ)
    password = params.pop("password", None)
    if password:
        env["PGPASSWORD"] = str(password)
    conninfo = make_conninfo("", **{k: str(v) for k, v in params.items() if v is not None})
    previous = signal.signal(signal.SIGINT, _ignore)
    try:
        return subprocess.call([psql, conninfo, *extra_args], env=env)
    finally:
        signal.signal(signal.SIGINT, previous)


def _ignore(signum: int, frame: object) -> None:
    """Ctrl-C is psql's (a Python handler, unlike SIG_IGN, is not inherited by psql)."""
