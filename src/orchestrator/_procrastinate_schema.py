"""Procrastinate's schema, applied from the SQL migration files its package ships.

Each ``procrastinate/sql/migrations/*.sql`` file is one alembic revision (see
``migrations/versions/pc_*.py``); nothing here copies procrastinate's ``schema.sql``, which
changes between releases. Files are read with ``importlib.resources`` so the SQL always
matches the installed, pinned procrastinate.
"""

from __future__ import annotations

import re
from importlib import resources

from alembic import context, op

MIGRATIONS_PACKAGE = "procrastinate.sql.migrations"
_VERSION_RE = re.compile(r"^(\d\d)\.(\d\d)\.(\d\d)_(\d\d)_.+\.sql$")


def migration_files() -> list[str]:
    """Names of the SQL migration files of the installed procrastinate, in apply order."""
    names = [
        entry.name
        for entry in resources.files(MIGRATIONS_PACKAGE).iterdir()
        if _VERSION_RE.match(entry.name)
    ]
    return sorted(names)


def revision_id(filename: str) -> str:
    """The alembic revision id for one procrastinate migration file.

    >>> revision_id("02.06.00_01_add_cancel_states.sql")
    'pc_02_06_00_01'
    """
    match = _VERSION_RE.match(filename)
    if match is None:
        raise ValueError(f"not a procrastinate migration file name: {filename!r}")
    return "pc_" + "_".join(match.groups())


def read_sql(filename: str) -> str:
    return resources.files(MIGRATIONS_PACKAGE).joinpath(filename).read_text(encoding="utf-8")


def upgrade_from_file(filename: str) -> None:
    """Run one procrastinate migration file inside the current alembic revision.

    Online, the SQL goes to psycopg untouched (no parameter parsing, several statements
    at once); offline (``--sql``) it is emitted verbatim into the script.
    """
    sql = read_sql(filename)
    if context.is_offline_mode():
        op.execute(sql)
        return
    driver_connection = op.get_bind().connection.driver_connection
    assert driver_connection is not None
    driver_connection.execute(sql)
