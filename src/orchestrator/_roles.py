"""Database roles for least privilege: an owner, a worker and a reader, and their grants.

==========  ============================================================================
owner       owns the database and every object in it; the only role ``migrate`` uses
worker      workers and the CLI: SELECT, INSERT, UPDATE, DELETE on tables, SELECT on
            views, USAGE on sequences, TEMPORARY on the database; no DDL. Less on the
            tables the engine and the plugins limit (``WORKER_PRIVILEGES``)
reader      status and dashboards: SELECT on every table and view, nothing else
==========  ============================================================================

``orchestrator roles --sql`` prints one idempotent transaction (SQL blocks from
``sql/roles.sql``) to run as an administrator with ``psql``; ``orchestrator roles --apply``
runs the same statements on the configured database. Roles are created ``NOLOGIN`` unless
``login=True``; then each one gets a password, from a psql variable (``-v
owner_password=...``) or, with ``--apply``, an environment variable
(``ORCHESTRATOR_OWNER_PASSWORD``...). Passwords never appear in the script itself.

``ALTER DEFAULT PRIVILEGES`` gives tables created later by the owner the worker's and the
reader's grants; the limits on particular tables and views are applied by running the script
again, which the owner may do after every migration (it owns the database).

Example::

    script = render(Roles(worker_privileges=worker_privileges()))
    print(script.psql())
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from orchestrator._driver_errors import driver_errors
from orchestrator._errors import ConfigurationError
from orchestrator._plugins import Plugin, plugins
from orchestrator._queries import named_blocks

KINDS = ("owner", "worker", "reader")
DEFAULT_NAMES = {kind: f"orchestrator_{kind}" for kind in KINDS}
#: Lower-case SQL identifiers only: safe in URLs, psql and dollar-quoted blocks alike.
NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
_PRIVILEGE_SQL = {
    "SELECT": sql.SQL("SELECT"),
    "INSERT": sql.SQL("INSERT"),
    "UPDATE": sql.SQL("UPDATE"),
    "DELETE": sql.SQL("DELETE"),
}

#: The engine's own tables on which the worker gets less than full DML.
ENGINE_WORKER_PRIVILEGES: dict[str, tuple[str, ...]] = {
    # the run history is kept: workers record attempts, they never erase one
    "agent_runs": ("SELECT", "INSERT", "UPDATE"),
    # kept by SECURITY DEFINER triggers (revision 0006), read by status
    "orchestrator_job_counts": ("SELECT",),
    # kept by SECURITY DEFINER triggers on agent_runs (revision 0011), read by /metrics
    "orchestrator_run_counts": ("SELECT",),
    # the schema version belongs to migrate
    "alembic_version": ("SELECT",),
    # shared rate limits: workers take grants and report 429s; removing a limit is an
    # operator's act
    "orchestrator_rate_limits": ("SELECT", "INSERT", "UPDATE"),
}

_BLOCKS = named_blocks("roles.sql")


def password_variable(kind: str) -> str:
    """The psql variable holding a role's password: ``owner_password``..."""
    return f"{kind}_password"


def password_env(kind: str) -> str:
    """The environment variable holding a role's password for ``--apply``."""
    return f"ORCHESTRATOR_{kind.upper()}_PASSWORD"


def _password_setting(kind: str) -> str:
    return f"orchestrator_roles.{kind}_password"


@dataclass(frozen=True)
class Roles:
    """Names of the three roles, the database, and what the worker may do on limited tables."""

    owner: str = DEFAULT_NAMES["owner"]
    worker: str = DEFAULT_NAMES["worker"]
    reader: str = DEFAULT_NAMES["reader"]
    database: str | None = None
    """``None``: the database the script runs in."""
    login: bool = False
    worker_privileges: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(ENGINE_WORKER_PRIVILEGES)
    )

    def __post_init__(self) -> None:
        for kind in KINDS:
            _check_name(f"{kind} role", getattr(self, kind))
        if len({self.owner, self.worker, self.reader}) != len(KINDS):
            raise ConfigurationError("the owner, worker and reader roles must be three roles")
        if self.database is not None:
            _check_name("database", self.database)
        for table, privileges in self.worker_privileges.items():
            _check_limit(table, privileges)

    def name(self, kind: str) -> str:
        name: str = getattr(self, kind)
        return name


def _check_name(what: str, name: str) -> None:
    if not NAME_RE.match(name):
        raise ConfigurationError(
            f"invalid {what} name {name!r}: use lower-case letters, digits and _ "
            "(at most 63, not starting with a digit)"
        )


def _check_limit(table: str, privileges: Iterable[str]) -> None:
    _check_name("table", table)
    unknown = sorted(set(privileges) - set(TABLE_PRIVILEGES))
    if unknown:
        raise ConfigurationError(
            f"worker privileges on {table}: {', '.join(unknown)} not among "
            f"{', '.join(TABLE_PRIVILEGES)}"
        )


def worker_privileges(found: Iterable[Plugin] | None = None) -> dict[str, tuple[str, ...]]:
    """The engine's limits on the worker and every plugin's ``WORKER_PRIVILEGES``."""
    merged = dict(ENGINE_WORKER_PRIVILEGES)
    for plugin in plugins() if found is None else found:
        for table, privileges in plugin.worker_privileges.items():
            ordered = tuple(p for p in TABLE_PRIVILEGES if p in set(privileges))
            _check_limit(table, privileges)
            if table in merged and merged[table] != ordered:
                raise ConfigurationError(
                    f"plugin {plugin.name!r} limits the worker on {table} to "
                    f"{', '.join(ordered) or 'nothing'}, already limited to "
                    f"{', '.join(merged[table]) or 'nothing'}"
                )
            merged[table] = ordered
    return merged


@dataclass(frozen=True)
class RolesScript:
    """The statements making ``roles`` true, and the roles whose passwords they need."""

    roles: Roles
    statements: tuple[sql.Composed, ...]

    @property
    def password_kinds(self) -> tuple[str, ...]:
        return KINDS if self.roles.login else ()

    def psql(self) -> str:
        """The script for ``psql``: one transaction, passwords from psql variables."""
        names = ", ".join(f"{kind} {self.roles.name(kind)}" for kind in KINDS)
        run = ["psql", "-v", "ON_ERROR_STOP=1"]
        run += [f"-v {password_variable(kind)}=..." for kind in self.password_kinds]
        lines = [
            f"-- orchestrator roles: {names}. Safe to run again.",
            "-- As a superuser (or a role with CREATEROLE that may own the database):",
            f"--   {' '.join(run)} -d DATABASE -f THIS_FILE",
            "",
            "BEGIN;",
        ]
        for kind in self.password_kinds:
            lines.append(f"SET LOCAL {_password_setting(kind)} = :'{password_variable(kind)}';")
        lines += ["", *(s.as_string(None) + "\n" for s in self.statements), "COMMIT;"]
        return "\n".join(lines) + "\n"

    def apply(self, database_url: str, passwords: Mapping[str, str] | None = None) -> None:
        """Run the script on that database, in one transaction."""
        passwords = passwords or {}
        missing = [k for k in self.password_kinds if not passwords.get(k)]
        if missing:
            raise ConfigurationError(
                "no password for the "
                + ", ".join(missing)
                + " role: set "
                + ", ".join(password_env(k) for k in missing)
            )
        with (
            driver_errors("could not apply the roles"),
            psycopg.connect(database_url) as conn,
            conn.transaction(),
        ):
            for kind in self.password_kinds:
                conn.execute(
                    "SELECT pg_catalog.set_config(%s, %s, true)",
                    [_password_setting(kind), passwords[kind]],
                )
            for statement in self.statements:
                conn.execute(statement)


def passwords_from_environment(
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Each role's password from ``ORCHESTRATOR_<KIND>_PASSWORD`` (blank: not given)."""
    environ = os.environ if environ is None else environ
    found = {kind: environ.get(password_env(kind), "").strip() for kind in KINDS}
    return {kind: value for kind, value in found.items() if value}


def render(roles: Roles) -> RolesScript:
    """The statements creating the roles (when missing) and granting exactly their rights."""
    names = {kind: roles.name(kind) for kind in KINDS}
    common = {
        "owner": sql.Identifier(names["owner"]),
        "worker": sql.Identifier(names["worker"]),
        "reader": sql.Identifier(names["reader"]),
        "owner_name": sql.Literal(names["owner"]),
        "worker_name": sql.Literal(names["worker"]),
        "reader_name": sql.Literal(names["reader"]),
    }

    def block(block_name: str, /, **values: sql.Composable) -> sql.Composed:
        return sql.SQL(_BLOCKS[block_name]).format(**{**common, **values})

    statements: list[sql.Composed] = []
    for kind in KINDS:
        name = sql.Literal(names[kind])
        if roles.login:
            hint = (
                f"psql -v {password_variable(kind)}=..., "
                f"or {password_env(kind)} with orchestrator roles --apply"
            )
            statements.append(
                block(
                    "create_login_role",
                    name=name,
                    password_setting=sql.Literal(_password_setting(kind)),
                    password_hint=sql.Literal(hint),
                )
            )
        else:
            statements.append(block("create_role", name=name))
    for kind in ("worker", "reader"):
        statements.append(block("check_limited_role", name=sql.Literal(names[kind])))
    database: sql.Composable = (
        sql.SQL("pg_catalog.current_database()")
        if roles.database is None
        else sql.Literal(roles.database)
    )
    statements += [block("database", database=database), block("schema"), block("tables")]
    for table, privileges in sorted(roles.worker_privileges.items()):
        identifier = sql.Identifier("public", table)
        grant = (
            sql.SQL("GRANT {} ON TABLE {} TO {};").format(
                sql.SQL(", ").join(_PRIVILEGE_SQL[p] for p in privileges),
                identifier,
                common["worker"],
            )
            if privileges
            else sql.SQL("")
        )
        statements.append(
            block(
                "limit_table",
                table=identifier,
                table_name=sql.Literal(f"public.{table}"),
                grant=grant,
            )
        )
    statements.append(block("default_privileges"))
    return RolesScript(roles, tuple(statements))
