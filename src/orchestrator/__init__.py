"""Durable PostgreSQL job orchestrator for the PT1-PT5 lead pipeline workflows.

Public surface (anything else is internal)::

    Orchestrator            settings + registry + pool + procrastinate App (app.py)
    enqueue_workflow, enqueue_many, queue_status, close   shortcuts on a default instance
    JobRequest              one job for enqueue_many
    Workflow, Registry, RetryPolicy, WorkflowContext      for writing workflows
    Settings, load_settings
    OrchestratorError, PermanentError, RetryableError, ...  (errors.py has the tree)
"""

from orchestrator.app import Orchestrator
from orchestrator.context import WorkflowContext
from orchestrator.default import close, enqueue_many, enqueue_workflow, queue_status
from orchestrator.enqueue import JobRequest
from orchestrator.errors import (
    ConfigurationError,
    DatabaseUnavailable,
    DuplicateJob,
    InvalidPayload,
    JobNotFound,
    OrchestratorError,
    PermanentError,
    RetryableError,
    UnknownWorkflow,
    WorkflowError,
)
from orchestrator.registry import Registry, Workflow
from orchestrator.retry import RetryPolicy
from orchestrator.schedules import Schedule, ScheduleContext
from orchestrator.settings import Settings, load_settings
from orchestrator.status import JobCounts, QueueStatus

__all__ = [
    "ConfigurationError",
    "DatabaseUnavailable",
    "DuplicateJob",
    "InvalidPayload",
    "JobCounts",
    "JobNotFound",
    "JobRequest",
    "Orchestrator",
    "OrchestratorError",
    "PermanentError",
    "QueueStatus",
    "Registry",
    "RetryPolicy",
    "RetryableError",
    "Schedule",
    "ScheduleContext",
    "Settings",
    "UnknownWorkflow",
    "Workflow",
    "WorkflowContext",
    "WorkflowError",
    "close",
    "enqueue_many",
    "enqueue_workflow",
    "load_settings",
    "queue_status",
]
