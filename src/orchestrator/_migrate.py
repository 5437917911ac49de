"""Bring a database to the head of the one alembic history (procrastinate's schema and ours).

``orchestrator migrate`` and ``alembic upgrade head`` (from the repository root) do the same
thing. The engine's alembic environment and revisions ship inside the package
(``orchestrator/_migrations``); plugins add their own revision folders (``MIGRATIONS``), so an
installed wheel migrates from any directory. Concurrent runs are serialised by an advisory lock
taken in ``_migrations/env.py``, so a second process simply finds the database already at head.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator._driver_errors import translate
from orchestrator._errors import ConfigurationError
from orchestrator._plugins import plugins

if TYPE_CHECKING:
    from alembic.config import Config

# alembic and SQLAlchemy take half a second to import: they are imported by the functions
# that need them, so that reading :func:`version_locations` (the cheap schema check of every
# command, :mod:`orchestrator._schema`) does not pay for them.

#: pg_advisory_lock key held while migrating ("orchmigr" as a 64-bit integer).
MIGRATION_LOCK_KEY = 0x6F7263686D696772


def script_location() -> Path:
    """The engine's alembic environment, shipped inside the package."""
    return Path(str(resources.files("orchestrator").joinpath("_migrations")))


def version_locations() -> list[Path]:
    """The engine's revisions, then those of every plugin that declares ``MIGRATIONS``."""
    locations = [script_location() / "versions"]
    for plugin in plugins():
        if plugin.migrations is not None:
            if not plugin.migrations.is_dir():
                raise ConfigurationError(
                    f"plugin {plugin.name!r} declares MIGRATIONS={plugin.migrations}, "
                    "which is not a directory"
                )
            locations.append(plugin.migrations)
    return locations


def alembic_config(database_url: str | None = None) -> Config:
    """The alembic configuration, built from the installed packages (no ``alembic.ini``)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_location()))
    config.set_main_option("path_separator", "os")
    config.set_main_option(
        "version_locations", os.pathsep.join(str(p) for p in version_locations())
    )
    config.attributes["configure_logging"] = False
    if database_url is not None:
        config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "heads") -> None:
    """Apply every pending revision."""
    from alembic import command
    from sqlalchemy.exc import DBAPIError

    try:
        command.upgrade(alembic_config(database_url), revision)
    except DBAPIError as exc:
        raise translate(exc, "migration failed") or exc from exc


def head_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def current_revisions(database_url: str) -> set[str]:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine, pool

    from orchestrator._database import sqlalchemy_url

    engine = create_engine(sqlalchemy_url(database_url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return set(MigrationContext.configure(connection).get_current_heads())
    finally:
        engine.dispose()
