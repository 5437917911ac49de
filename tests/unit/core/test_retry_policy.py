"""Retry policies and the retry decision handed to procrastinate (no database)."""

from __future__ import annotations

import datetime
from types import SimpleNamespace

import pytest

from orchestrator._retry import (
    UNRECORDED_RETRY_LIMIT,
    AttemptFailed,
    DecidedRetryStrategy,
    RetryPolicy,
    effective_policy,
)
from tests import fix_db


def test_default_policy_is_three_attempts_waiting_5_then_10_seconds() -> None:
    policy = RetryPolicy()
    assert policy.attempts == 3
    assert policy.waits() == [5.0, 10.0]


@pytest.mark.parametrize(
    ("policy", "waits"),
    [
        (RetryPolicy(attempts=1), []),
        (RetryPolicy(attempts=2), [5.0]),
        (RetryPolicy(attempts=5), [5.0, 10.0, 20.0, 40.0]),
        (RetryPolicy(attempts=4, delay=0.2), [0.2, 0.4, 0.8]),
        (RetryPolicy(attempts=4, delay=3, factor=1), [3.0, 3.0, 3.0]),
        (RetryPolicy(attempts=5, delay=10, max_delay=25), [10.0, 20.0, 25.0, 25.0]),
        (RetryPolicy(attempts=3, delay=0), [0.0, 0.0]),
    ],
)
def test_waits_between_attempts(policy: RetryPolicy, waits: list[float]) -> None:
    """``attempts`` counts runs, so there is one wait fewer than attempts."""
    assert policy.waits() == waits
    assert len(policy.waits()) == policy.attempts - 1


@pytest.mark.parametrize(("failures", "wait"), [(0, 5.0), (1, 5.0), (2, 10.0), (3, 20.0)])
def test_wait_after_the_nth_failure(failures: int, wait: float) -> None:
    assert RetryPolicy().wait_after(failures) == wait


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempts": 0},
        {"attempts": -1},
        {"delay": -1.0},
        {"factor": 0.5},
        {"max_delay": -1.0},
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="RetryPolicy"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_effective_policy_defaults_to_the_settings() -> None:
    assert effective_policy(None, fix_db.settings_for_tests()) == RetryPolicy()
    settings = fix_db.settings_for_tests(default_attempts=5, default_retry_delay=1.0)
    policy = effective_policy(None, settings)
    assert (policy.attempts, policy.waits()) == (5, [1.0, 2.0, 4.0, 8.0])


def test_workflow_policy_wins_over_the_settings() -> None:
    settings = fix_db.settings_for_tests(default_attempts=7)
    own = RetryPolicy(attempts=2, delay=0.5)
    assert effective_policy(own, settings) is own


def test_per_job_attempts_override_keeps_the_waits() -> None:
    own = RetryPolicy(attempts=2, delay=0.5, factor=3, max_delay=4)
    policy = effective_policy(own, fix_db.settings_for_tests(), attempts_override=4)
    assert policy == RetryPolicy(attempts=4, delay=0.5, factor=3, max_delay=4)
    assert policy.waits() == [0.5, 1.5, 4.0]
    assert effective_policy(None, fix_db.settings_for_tests(), attempts_override=1).waits() == []


def _job(attempts: int = 0) -> SimpleNamespace:
    return SimpleNamespace(attempts=attempts)


def test_decided_strategy_follows_a_final_decision() -> None:
    failure = AttemptFailed(ValueError("bad"), retry_in=None)
    assert DecidedRetryStrategy().get_retry_decision(exception=failure, job=_job()) is None


@pytest.mark.parametrize("retry_in", [0.0, 5.0, 10.0, 3600.0])
def test_decided_strategy_retries_at_the_recorded_wait(retry_in: float) -> None:
    before = datetime.datetime.now(datetime.UTC)
    failure = AttemptFailed(RuntimeError("boom"), retry_in=retry_in)
    decision = DecidedRetryStrategy().get_retry_decision(exception=failure, job=_job(1))
    after = datetime.datetime.now(datetime.UTC)
    assert decision is not None
    assert decision.retry_at is not None
    expected = datetime.timedelta(seconds=retry_in)
    assert before + expected <= decision.retry_at <= after + expected


def test_unrecorded_failures_retry_promptly_up_to_a_limit() -> None:
    strategy = DecidedRetryStrategy()
    before = datetime.datetime.now(datetime.UTC)
    decision = strategy.get_retry_decision(exception=OSError("db gone"), job=_job(3))
    assert decision is not None
    assert decision.retry_at is not None
    assert datetime.timedelta(0) < decision.retry_at - before <= datetime.timedelta(seconds=2)
    limit = _job(UNRECORDED_RETRY_LIMIT)
    assert strategy.get_retry_decision(exception=OSError("db gone"), job=limit) is None


def test_attempt_failed_carries_its_cause() -> None:
    cause = RuntimeError("boom")
    failure = AttemptFailed(cause, retry_in=2.5)
    assert failure.cause is cause
    assert failure.retry_in == 2.5
    assert str(failure) == "RuntimeError: boom"
