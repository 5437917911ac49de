"""Retry policies: how many attempts a workflow gets and how long to wait between them.

The default mirrors the original design's ``attempts: 3, backoff: exponential, delay: 5000``:
three attempts in total, waiting 5 s then 10 s (``delay * factor ** (n - 1)`` after the n-th
failure). Procrastinate's own ``RetryStrategy`` counts retries rather than attempts and waits
``b ** n``; the decision is therefore taken by the orchestrator's runner, which knows the
failure history from ``agent_runs``, and handed to procrastinate through
:class:`AttemptFailed` and :class:`DecidedRetryStrategy`.
"""

from __future__ import annotations

import asyncio
import datetime
from dataclasses import dataclass
from typing import Any

from procrastinate import BaseRetryStrategy, RetryDecision

from orchestrator._driver_errors import constraint_name
from orchestrator._errors import InvalidPayload, PermanentError, RetryableError, WorkerStopping
from orchestrator._settings import Settings
from orchestrator._status import RunStatus

#: The unique index allowing one ``succeeded`` agent_runs row per job.
ONE_SUCCESS_CONSTRAINT = "agent_runs_one_success"


class Cancelled(Exception):
    """The attempt was cancelled on request (``orchestrator cancel``)."""


class ShutdownAbort(WorkerStopping):
    """The worker shut down before the attempt finished; it is retried at once."""


class ConnectionLost(RetryableError):
    """The attempt lost its database connection (a restart, a network cut, a killed backend).

    Not the job's failure: retried after :data:`CONNECTION_LOST_RETRY_IN` without using the
    retry budget, up to :data:`MAX_CONNECTION_LOSSES` times in a retry cycle.
    """


#: Seconds before an attempt that lost its database connection runs again.
CONNECTION_LOST_RETRY_IN = 1.0
#: Connection losses in one retry cycle after which the job fails (a job whose own queries
#: keep killing the database server must not loop forever).
MAX_CONNECTION_LOSSES = 20


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` in total (first run included); waits grow by ``factor`` from ``delay``.

    >>> RetryPolicy().waits()
    [5.0, 10.0]
    """

    attempts: int = 3
    delay: float = 5.0
    factor: float = 2.0
    max_delay: float = 3600.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if self.delay < 0 or self.factor < 1 or self.max_delay < 0:
            raise ValueError("RetryPolicy needs delay >= 0, factor >= 1 and max_delay >= 0")

    def wait_after(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failed attempt (1-based)."""
        return float(min(self.max_delay, self.delay * self.factor ** max(0, failures - 1)))

    def waits(self) -> list[float]:
        return [self.wait_after(n) for n in range(1, self.attempts)]


def effective_policy(
    workflow_policy: RetryPolicy | None, settings: Settings, attempts_override: int | None = None
) -> RetryPolicy:
    """The workflow's policy (or the settings' default), with a per-job attempt count."""
    base = workflow_policy or RetryPolicy(
        attempts=settings.default_attempts, delay=settings.default_retry_delay
    )
    if attempts_override is None:
        return base
    return RetryPolicy(
        attempts=attempts_override, delay=base.delay, factor=base.factor, max_delay=base.max_delay
    )


@dataclass(frozen=True)
class Verdict:
    """What a failed attempt becomes: its ``agent_runs`` status, and the wait before the next
    attempt (``None``: no next attempt)."""

    status: RunStatus
    retry_in: float | None = None


def decide(
    exc: BaseException, failures_before: int, policy: RetryPolicy, *, losses_before: int = 0
) -> Verdict:
    """The verdict on an attempt that raised ``exc``, after ``failures_before`` failures
    (and ``losses_before`` lost database connections) in the current retry cycle.

    >>> decide(RuntimeError("boom"), 0, RetryPolicy())
    Verdict(status=<RunStatus.RETRYING: 'retrying'>, retry_in=5.0)
    >>> decide(PermanentError("bad key"), 0, RetryPolicy()).status
    <RunStatus.FAILED: 'failed'>
    """
    if constraint_name(exc) == ONE_SUCCESS_CONSTRAINT:
        # Another attempt of this job recorded its success first: this one stands aside.
        return Verdict(RunStatus.ABANDONED)
    if isinstance(exc, ConnectionLost):
        if losses_before + 1 >= MAX_CONNECTION_LOSSES:
            return Verdict(RunStatus.FAILED)
        return Verdict(RunStatus.RETRYING, CONNECTION_LOST_RETRY_IN)
    if isinstance(exc, WorkerStopping):
        # The worker stopped (or its lease ran out), not the job: retried at once, elsewhere,
        # without using the retry budget.
        return Verdict(RunStatus.RETRYING, 0.0)
    if isinstance(exc, Cancelled | asyncio.CancelledError):
        return Verdict(RunStatus.CANCELLED)
    if isinstance(exc, PermanentError | InvalidPayload):
        return Verdict(RunStatus.FAILED)
    failures = failures_before + 1
    if failures >= policy.attempts:
        return Verdict(RunStatus.FAILED)
    wait = policy.wait_after(failures)
    if isinstance(exc, RetryableError) and exc.retry_after:
        wait = max(wait, exc.retry_after)
    return Verdict(RunStatus.RETRYING, wait)


#: Retries granted to attempts whose outcome could not be recorded (database trouble).
UNRECORDED_RETRY_LIMIT = 20


class AttemptFailed(Exception):
    """Raised by the runner after recording a failed attempt; carries the retry decision."""

    def __init__(self, cause: BaseException, *, retry_in: float | None) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = cause
        self.retry_in = retry_in


class DecidedRetryStrategy(BaseRetryStrategy):
    """Follows the decision the runner recorded; anything else escaping is retried at once.

    Exceptions other than :class:`AttemptFailed` only escape when the runner could not record
    the attempt (e.g. the database went away); retrying promptly is then the safe choice, as
    the re-run finds any committed success in ``agent_runs`` and stops.
    """

    def get_retry_decision(self, *, exception: BaseException, job: Any) -> RetryDecision | None:
        if isinstance(exception, AttemptFailed):
            if exception.retry_in is None:
                return None
            return RetryDecision(
                retry_at=datetime.datetime.now(datetime.UTC)
                + datetime.timedelta(seconds=exception.retry_in)
            )
        if getattr(job, "attempts", 0) >= UNRECORDED_RETRY_LIMIT:
            return None
        return RetryDecision(retry_in={"seconds": 1})
