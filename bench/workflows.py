"""Workflows used only by the benchmarks (``ORCHESTRATOR_WORKFLOW_MODULES=bench.workflows``).

- ``bench_noop`` does nothing: what is measured is the orchestrator's own cost per job
  (the agent_runs row, the job transaction, the runner) on top of procrastinate's.
- ``bench_flaky`` fails its first attempt with a retryable error and succeeds on the second,
  one second later: how late the retry starts after it is due is what is measured.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from orchestrator._context import WorkflowContext
from orchestrator._errors import RetryableError
from orchestrator._registry import Registry, Workflow
from orchestrator._retry import RetryPolicy

#: Seconds between the failed first attempt of ``bench_flaky`` and its retry.
RETRY_DELAY = 1.0


class NoInput(BaseModel):
    pass


class FlakyInput(BaseModel):
    fail_times: int = Field(default=1, ge=0, le=10)


async def noop(ctx: WorkflowContext, data: NoInput) -> None:
    return None


async def flaky(ctx: WorkflowContext, data: FlakyInput) -> dict[str, int]:
    if ctx.attempt <= data.fail_times:
        raise RetryableError(f"planned failure of attempt {ctx.attempt}")
    return {"succeeded_on": ctx.attempt}


WORKFLOWS: list[Workflow[Any]] = [
    Workflow(name="bench_noop", input_model=NoInput, run=noop, description="does nothing"),
    Workflow(
        name="bench_flaky",
        input_model=FlakyInput,
        run=flaky,
        retry=RetryPolicy(attempts=2, delay=RETRY_DELAY),
        description="fails once, then succeeds",
    ),
]


def registry() -> Registry:
    return Registry(WORKFLOWS)
