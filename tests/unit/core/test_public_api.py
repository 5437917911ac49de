"""The surface application code and workflows rely on (no database)."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest

from orchestrator import Orchestrator
from orchestrator import _errors as errors
from orchestrator._context import WorkflowContext
from orchestrator._enqueue import JobRequest

ROOT = Path(__file__).resolve().parents[3]


def test_exception_tree() -> None:
    root = errors.OrchestratorError
    for name in (
        "ConfigurationError",
        "DatabaseUnavailable",
        "UnknownWorkflow",
        "InvalidPayload",
        "DuplicateJob",
        "JobNotFound",
        "WorkflowError",
    ):
        assert issubclass(getattr(errors, name), root), name
    assert issubclass(errors.PermanentError, errors.WorkflowError)
    assert issubclass(errors.RetryableError, errors.WorkflowError)
    assert not issubclass(errors.PermanentError, errors.RetryableError)
    assert not issubclass(errors.RetryableError, errors.PermanentError)


@pytest.mark.parametrize(
    "cls", [errors.OrchestratorError, errors.DatabaseUnavailable, errors.PermanentError]
)
def test_docstring_is_the_default_message(cls: type[errors.OrchestratorError]) -> None:
    assert str(cls()) == (cls.__doc__ or "").strip().splitlines()[0]
    assert str(cls("specific")) == "specific"


def test_retryable_error_carries_retry_after() -> None:
    assert errors.RetryableError("x").retry_after is None
    assert errors.RetryableError("x", retry_after=30).retry_after == 30


def test_enqueue_signature() -> None:
    parameters = inspect.signature(Orchestrator.enqueue_workflow).parameters
    keyword_only = {n for n, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert {"delay", "schedule_at", "priority", "dedupe_key", "attempts", "connection"} <= (
        keyword_only
    )
    fields = {f.name for f in dataclasses.fields(JobRequest)}
    assert {"workflow", "payload", "delay", "schedule_at", "priority", "dedupe_key"} <= fields
    assert "connection" in inspect.signature(Orchestrator.enqueue_many).parameters


def test_workflow_context_hides_the_queue_and_the_pool() -> None:
    public = {f.name for f in dataclasses.fields(WorkflowContext) if not f.name.startswith("_")}
    assert public == {
        "connection",
        "run_id",
        "job_id",
        "workflow",
        "attempt",
        "max_attempts",
        "settings",
        "logger",
    }
    assert _imported_modules(ROOT / "src" / "orchestrator" / "_context.py").isdisjoint(
        {"procrastinate", "psycopg_pool"}
    )


def test_workflows_never_import_procrastinate() -> None:
    sources = [
        *(ROOT / "src" / "workflows").rglob("*.py"),
        ROOT / "tests" / "workflows_for_tests.py",
    ]
    assert sources
    for path in sources:
        assert _imported_modules(path).isdisjoint({"procrastinate", "psycopg_pool"}), path


def _imported_modules(path: Path) -> set[str]:
    """Top-level package names a module imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names
