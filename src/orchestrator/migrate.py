"""Bring a database to the head of the one alembic history (procrastinate's schema and ours).

``orchestrator migrate`` and ``alembic upgrade head`` (from the repository root) do the same
thing. Concurrent runs are serialised by an advisory lock taken in ``migrations/env.py``, so a
second process simply finds the database already at head.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

from orchestrator.errors import ConfigurationError

#: pg_advisory_lock key held while migrating ("orchmigr" as a 64-bit integer).
MIGRATION_LOCK_KEY = 0x6F7263686D696772


def project_root() -> Path:
    """The directory holding ``alembic.ini`` and ``migrations/``."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "alembic.ini").is_file():
        raise ConfigurationError(
            f"alembic.ini not found next to the installed package (looked in {root}); "
            "install the orchestrator from its repository checkout"
        )
    return root


def alembic_config(database_url: str | None = None) -> Config:
    root = project_root()
    config = Config(str(root / "alembic.ini"))
    config.set_main_option("script_location", str(root / "migrations"))
    config.attributes["configure_logging"] = False
    if database_url is not None:
        config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "heads") -> None:
    """Apply every pending revision."""
    command.upgrade(alembic_config(database_url), revision)


def head_revisions() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def current_revisions(database_url: str) -> set[str]:
    from orchestrator.database import sqlalchemy_url

    engine = create_engine(sqlalchemy_url(database_url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return set(MigrationContext.configure(connection).get_current_heads())
    finally:
        engine.dispose()
