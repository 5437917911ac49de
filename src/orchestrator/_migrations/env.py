"""alembic environment: one migration history for procrastinate's schema and ours.

The URL is resolved by the orchestrator (settings or the embedded server) unless the caller
passes a connection in ``config.attributes["connection"]``. Every revision runs in its own
transaction (an enum value added and used in one transaction fails otherwise), and a session
advisory lock serialises concurrent ``migrate`` runs so two processes can race safely.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, create_engine, pool, text

from orchestrator._database import resolve_database_url, sqlalchemy_url
from orchestrator._migrate import MIGRATION_LOCK_KEY
from orchestrator._settings import load_settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def run_migrations_offline() -> None:
    context.configure(
        url="postgresql+psycopg://",
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_with_connection(connection: Connection) -> None:
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    connection.commit()
    try:
        context.configure(connection=connection, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()


def run_migrations_online() -> None:
    given = config.attributes.get("connection")
    if given is not None:
        _run_with_connection(given)
        return
    url = config.attributes.get("database_url") or resolve_database_url(load_settings())
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            _run_with_connection(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
