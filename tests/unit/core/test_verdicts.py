"""Verdicts on attempts stopped by the worker, fenced, or cut off from the database."""

from __future__ import annotations

import psycopg
import pytest
from psycopg_pool import PoolTimeout

from orchestrator import FencedAttempt, WorkerStopping
from orchestrator import _errors as errors
from orchestrator._driver_errors import is_connection_lost
from orchestrator._lease import LeaseExpired
from orchestrator._retry import (
    CONNECTION_LOST_RETRY_IN,
    MAX_CONNECTION_LOSSES,
    ConnectionLost,
    RetryPolicy,
    ShutdownAbort,
    decide,
)
from orchestrator._status import RunStatus


@pytest.mark.parametrize(
    "exc",
    [WorkerStopping("x"), ShutdownAbort("x"), LeaseExpired("x")],
)
def test_a_stop_is_retried_at_once_whatever_the_budget(exc: BaseException) -> None:
    # even after the last counted failure: a stop is not the job's failure
    verdict = decide(exc, 2, RetryPolicy(attempts=3))
    assert (verdict.status, verdict.retry_in) == (RunStatus.RETRYING, 0.0)


def test_a_lost_connection_is_retried_soon_and_bounded() -> None:
    verdict = decide(ConnectionLost("x"), 2, RetryPolicy(attempts=3))
    assert (verdict.status, verdict.retry_in) == (RunStatus.RETRYING, CONNECTION_LOST_RETRY_IN)
    last = decide(ConnectionLost("x"), 0, RetryPolicy(), losses_before=MAX_CONNECTION_LOSSES - 1)
    assert last.status is RunStatus.FAILED


def test_a_fenced_attempt_is_an_orchestrator_error_not_a_workflow_error() -> None:
    assert issubclass(FencedAttempt, errors.OrchestratorError)
    assert not issubclass(FencedAttempt, errors.WorkflowError)
    assert issubclass(WorkerStopping, errors.RetryableError)
    assert str(FencedAttempt()).startswith("attempt fenced")


@pytest.mark.parametrize(
    ("exc", "lost"),
    [
        (psycopg.OperationalError("server closed the connection unexpectedly"), True),
        (psycopg.errors.AdminShutdown(), True),
        (psycopg.errors.ConnectionFailure(), True),
        (psycopg.InterfaceError("the connection is closed"), True),
        (PoolTimeout("no connection"), True),
        (psycopg.errors.SerializationFailure(), False),
        (psycopg.errors.DeadlockDetected(), False),
        (psycopg.errors.QueryCanceled(), False),
        (psycopg.errors.UniqueViolation(), False),
        (RuntimeError("boom"), False),
    ],
)
def test_a_lost_connection_is_told_apart_from_a_failed_statement(
    exc: BaseException, lost: bool
) -> None:
    assert is_connection_lost(exc) is lost
