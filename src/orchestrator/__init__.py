"""Durable PostgreSQL job orchestrator: workflows as jobs, every attempt in ``agent_runs``.

Everything public is exported here (``__all__``); every module whose name starts with ``_``
is internal. Plugins (the domain's workflows, schedules, commands and settings) use only
what this module exports::

    Orchestrator            settings + registry + pool + procrastinate App
    enqueue_workflow, enqueue_many, queue_status, close   shortcuts on a default instance
    JobRequest              one job for enqueue_many
    Enqueued                what an enqueue with a dedupe key did (new, queued or running)
    Workflow, Registry, RetryPolicy, WorkflowContext      for writing workflows
    CheckContext, Submission                              enqueue-time checks, Orchestrator.submit
    notice                                                a command's one-line note on stderr
    ExternalCall            a recorded non-idempotent external call (intent, outcome)
    RateLimit, RateLimitState  a limit shared by every worker (ctx.rate_limit), its state
    Schedule, ScheduleContext                             for calendar starts
    Settings, load_settings, Duration, RunStatus, JobCounts, QueueStatus
    resolve_database_url, with_database, migrate          the database outside a job
    describe_validation_error                             pydantic errors as one line
    register_secret                                       mask a secret read at run time
    DashboardPage, DashboardAction, ActionResult, ...     console pages a plugin adds
    Alert, AlertHook                                      alerts a plugin forwards
    load_queries                                          named SQL blocks of a .sql file
    OrchestratorError, PermanentError, RetryableError, ...  (the exception tree)

Example::

    import orchestrator

    job_id = await orchestrator.enqueue_workflow("pt1", {"client": "Acme", "month": "2027-01"})
"""

from orchestrator._alerts import Alert, AlertHook
from orchestrator._context import WorkflowContext
from orchestrator._dashboard.pages import (
    ActionRefused,
    ActionResult,
    DashboardAction,
    DashboardPage,
    PageNotFound,
)
from orchestrator._database import migrate, resolve_database_url, with_database
from orchestrator._default import close, enqueue_many, enqueue_workflow, queue_status
from orchestrator._enqueue import Enqueued, JobRequest
from orchestrator._errors import (
    ConfigurationError,
    DatabaseNotMigrated,
    DatabaseUnavailable,
    DuplicateJob,
    FencedAttempt,
    InvalidPayload,
    JobNotFound,
    OrchestratorError,
    PermanentError,
    RetryableError,
    UnknownWorkflow,
    WorkerStopping,
    WorkflowError,
)
from orchestrator._external_calls import ExternalCall
from orchestrator._log import notice
from orchestrator._orchestrator import Orchestrator
from orchestrator._preflight import CheckContext, Submission
from orchestrator._queries import load_queries
from orchestrator._rate_limits import RateLimit, RateLimitState
from orchestrator._redaction import register_secret
from orchestrator._registry import Registry, Workflow, describe_validation_error
from orchestrator._retry import RetryPolicy
from orchestrator._schedules import Schedule, ScheduleContext
from orchestrator._settings import Duration, Settings, load_settings
from orchestrator._status import JobCounts, QueueStatus, RunStatus

__all__ = [
    "ActionRefused",
    "ActionResult",
    "Alert",
    "AlertHook",
    "CheckContext",
    "ConfigurationError",
    "DashboardAction",
    "DashboardPage",
    "DatabaseNotMigrated",
    "DatabaseUnavailable",
    "DuplicateJob",
    "Duration",
    "Enqueued",
    "ExternalCall",
    "FencedAttempt",
    "InvalidPayload",
    "JobCounts",
    "JobNotFound",
    "JobRequest",
    "Orchestrator",
    "OrchestratorError",
    "PageNotFound",
    "PermanentError",
    "QueueStatus",
    "RateLimit",
    "RateLimitState",
    "Registry",
    "RetryPolicy",
    "RetryableError",
    "RunStatus",
    "Schedule",
    "ScheduleContext",
    "Settings",
    "Submission",
    "UnknownWorkflow",
    "WorkerStopping",
    "Workflow",
    "WorkflowContext",
    "WorkflowError",
    "close",
    "describe_validation_error",
    "enqueue_many",
    "enqueue_workflow",
    "load_queries",
    "load_settings",
    "migrate",
    "notice",
    "queue_status",
    "register_secret",
    "resolve_database_url",
    "with_database",
]
