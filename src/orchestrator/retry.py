"""Retry policies: how many attempts a workflow gets and how long to wait between them.

The default mirrors the original design's ``attempts: 3, backoff: exponential, delay: 5000``:
three attempts in total, waiting 5 s then 10 s (``delay * factor ** (n - 1)`` after the n-th
failure). Procrastinate's own ``RetryStrategy`` counts retries rather than attempts and waits
``b ** n``; the decision is therefore taken by the orchestrator's runner, which knows the
failure history from ``agent_runs``, and handed to procrastinate through
:class:`AttemptFailed` and :class:`DecidedRetryStrategy`.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from procrastinate import BaseRetryStrategy, RetryDecision

from orchestrator.settings import Settings


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
