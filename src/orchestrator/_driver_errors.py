"""The one boundary where psycopg, psycopg_pool and procrastinate errors become ours.

Errors are told apart by type and SQLSTATE class, constraints by ``diag.constraint_name``,
never by message text. Messages never carry a password: libpq texts are reduced to their
first line and URLs in them redacted.

Example::

    with driver_errors("could not enqueue"):
        await app.job_manager.batch_defer_jobs_async(jobs)
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import psycopg
from procrastinate import exceptions as pexc
from psycopg_pool import PoolTimeout

from orchestrator._errors import (
    DatabaseNotMigrated,
    DatabaseUnavailable,
    DuplicateJob,
    OrchestratorError,
)
from orchestrator._redaction import redact_url

P = ParamSpec("P")
T = TypeVar("T")

#: SQLSTATE classes that mean "the database cannot be used right now".
_UNAVAILABLE_CLASSES = ("08", "53", "57")  # connection, resources, operator intervention


def driver_cause(exc: BaseException) -> BaseException:
    """The psycopg error under a procrastinate ``ConnectorException`` or a SQLAlchemy
    ``DBAPIError`` (alembic's), or ``exc`` itself."""
    if isinstance(exc, pexc.ConnectorException) and exc.__cause__ is not None:
        return exc.__cause__
    original = getattr(exc, "orig", None)  # sqlalchemy.exc.DBAPIError, not imported here
    if type(exc).__module__.startswith("sqlalchemy") and isinstance(original, BaseException):
        return original
    return exc


def first_line(exc: BaseException) -> str:
    """The first line of a driver error's text, URLs redacted (or the type's name)."""
    text = str(driver_cause(exc)).strip()
    return redact_url(text.splitlines()[0]) if text else type(driver_cause(exc)).__name__


def reason(exc: BaseException) -> str:
    """One line saying why, without a password: ``TypeName: first line``."""
    cause = driver_cause(exc)
    text = str(cause).strip()
    first = redact_url(text.splitlines()[0]) if text else ""
    return f"{type(cause).__name__}: {first}" if first else type(cause).__name__


def constraint_name(exc: BaseException) -> str | None:
    """The constraint a driver error violated (``None`` when it is not such an error)."""
    cause = driver_cause(exc)
    if isinstance(cause, psycopg.errors.IntegrityError):
        return cause.diag.constraint_name
    return None


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database is out of reach (not that a statement was wrong)."""
    cause = driver_cause(exc)
    if isinstance(cause, PoolTimeout | psycopg.OperationalError | psycopg.InterfaceError):
        return True
    if isinstance(cause, psycopg.Error) and cause.sqlstate:
        return cause.sqlstate[:2] in _UNAVAILABLE_CLASSES
    return isinstance(exc, pexc.ConnectorException) and exc.__cause__ is None


#: SQLSTATEs of a server going away: admin shutdown, crash shutdown, cannot connect now.
_SERVER_GONE = ("57P01", "57P02", "57P03")


def is_connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection to the database was lost or could not be had (a
    restart, a network cut, a killed backend, an exhausted pool) — not that a statement
    failed (a deadlock, a serialization failure or a statement timeout are not this)."""
    cause = driver_cause(exc)
    if isinstance(cause, PoolTimeout | psycopg.InterfaceError):
        return True
    if not isinstance(cause, psycopg.OperationalError):
        return False
    state = cause.sqlstate
    return state is None or state.startswith("08") or state in _SERVER_GONE


def translate(exc: BaseException, action: str = "database error") -> OrchestratorError | None:
    """Our error for a driver error, or ``None`` when ``exc`` is not one."""
    if isinstance(exc, OrchestratorError):
        return exc
    if isinstance(exc, pexc.AlreadyEnqueued | pexc.UniqueViolation):
        return DuplicateJob(f"{action}: a waiting job already holds this dedupe key")
    cause = driver_cause(exc)
    if isinstance(cause, psycopg.errors.UndefinedTable | psycopg.errors.UndefinedFunction):
        return DatabaseNotMigrated()
    if isinstance(cause, psycopg.Error | PoolTimeout) or isinstance(exc, pexc.ConnectorException):
        if is_unavailable(exc):
            return DatabaseUnavailable(f"{action}: the database is unavailable ({reason(exc)})")
        return OrchestratorError(f"{action}: {reason(exc)}")
    return None


@contextmanager
def driver_errors(action: str = "database error") -> Iterator[None]:
    """Re-raise driver errors escaping the block as the project's errors."""
    try:
        yield
    except (psycopg.Error, PoolTimeout, pexc.ConnectorException, pexc.AlreadyEnqueued) as exc:
        ours = translate(exc, action)
        if ours is None:
            raise
        raise ours from exc


def translated(
    action: str,
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Decorator form of :func:`driver_errors` for coroutine functions."""

    def decorate(function: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @functools.wraps(function)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            with driver_errors(action):
                return await function(*args, **kwargs)

        return wrapper

    return decorate
