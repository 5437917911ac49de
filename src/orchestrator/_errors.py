"""The orchestrator's exceptions, rooted at :class:`OrchestratorError`.

Retryable versus permanent is a type, never a string::

    OrchestratorError
    ├── ConfigurationError          invalid settings (CLI exit code 2)
    ├── DatabaseUnavailable         the database cannot be reached (CLI exit code 2)
    ├── DatabaseNotMigrated         the schema is missing or behind (CLI exit code 2)
    ├── UnknownWorkflow             no workflow registered under that name
    ├── InvalidPayload              payload rejected by the workflow's input model
    ├── DuplicateJob                a waiting job already holds the dedupe key
    ├── JobNotFound                 no job with that id
    ├── FencedAttempt               this attempt lost its job's lease: it must not act
    └── WorkflowError               raised by a workflow while it runs
        ├── PermanentError          fails the job at once, no retry (bad input, HTTP 4xx)
        └── RetryableError          retried with backoff (timeouts, HTTP 5xx, 408, 429)
            └── WorkerStopping      the worker shuts down: stopped at a step, retried at once

Exceptions that are not a ``WorkflowError`` escaping from a workflow are retried, like
``RetryableError``: an unexpected bug in a step is more often transient than not, and the
attempt limit bounds the cost of being wrong.
"""

from __future__ import annotations


class OrchestratorError(Exception):
    """Something went wrong in the orchestrator."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigurationError(OrchestratorError):
    """The orchestrator's settings are invalid."""


class DatabaseUnavailable(OrchestratorError):
    """The database cannot be reached."""


class DatabaseNotMigrated(OrchestratorError):
    """database not migrated: run 'orchestrator migrate'"""


class UnknownWorkflow(OrchestratorError):
    """No workflow is registered under that name."""


class InvalidPayload(OrchestratorError):
    """The payload does not match the workflow's input model."""


class DuplicateJob(OrchestratorError):
    """A waiting job already holds this dedupe key."""


class JobNotFound(OrchestratorError):
    """No job exists with that id."""


class FencedAttempt(OrchestratorError):
    """attempt fenced: another attempt holds the job's lease now; this one must not act"""


class WorkflowError(OrchestratorError):
    """A workflow failed while running."""


class PermanentError(WorkflowError):
    """A failure that another attempt cannot fix; the job fails at once."""


class RetryableError(WorkflowError):
    """A transient failure; the job is retried with backoff.

    ``retry_after`` (seconds), when set, is the earliest sensible next attempt, e.g. from an
    HTTP ``Retry-After`` header; the retry waits at least that long.
    """

    def __init__(self, message: str | None = None, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class WorkerStopping(RetryableError):
    """the worker is shutting down: the attempt stopped between two steps"""
