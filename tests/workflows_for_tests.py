"""Workflows used by the tests (registered in subprocesses via ORCHESTRATOR_WORKFLOW_MODULES).

Each writes through its context into ``test_effects`` (unique ``key``), so tests can check
that effects exist exactly once and roll back with failed attempts.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from pydantic import BaseModel, Field

from orchestrator._context import WorkflowContext
from orchestrator._errors import PermanentError, RetryableError
from orchestrator._registry import Workflow
from orchestrator._retry import RetryPolicy


class KeyInput(BaseModel):
    key: str = Field(min_length=1, max_length=200)
    sleep: float = Field(default=0.0, ge=0, le=600)


class FlakyInput(BaseModel):
    key: str
    fail_times: int = Field(ge=0)
    permanent: bool = False
    retry_after: float | None = None


class ChainInput(BaseModel):
    key: str
    next_key: str


class StepsInput(BaseModel):
    key: str
    steps: int = Field(ge=1, le=100)
    fail_at_step: int | None = None


class NoInput(BaseModel):
    pass


async def _write(ctx: WorkflowContext, key: str) -> None:
    await ctx.connection.execute(
        "INSERT INTO test_effects (key, job_id, attempt) VALUES (%s, %s, %s)",
        [key, ctx.job_id, ctx.attempt],
    )


async def noop(ctx: WorkflowContext, data: NoInput) -> None:
    return None


async def write_row(ctx: WorkflowContext, data: KeyInput) -> dict[str, Any]:
    if data.sleep:
        await asyncio.sleep(data.sleep)
    await _write(ctx, data.key)
    return {"key": data.key}


async def flaky(ctx: WorkflowContext, data: FlakyInput) -> dict[str, Any]:
    await _write(ctx, f"{data.key}#attempt{ctx.attempt}")
    if ctx.attempt <= data.fail_times:
        if data.permanent:
            raise PermanentError(f"permanent failure on attempt {ctx.attempt}")
        raise RetryableError(
            f"transient failure on attempt {ctx.attempt}", retry_after=data.retry_after
        )
    return {"succeeded_on": ctx.attempt}


async def crash(ctx: WorkflowContext, data: KeyInput) -> None:
    raise RuntimeError(f"unexpected bug for {data.key}")


async def chain(ctx: WorkflowContext, data: ChainInput) -> dict[str, Any]:
    await _write(ctx, data.key)
    next_id = await ctx.enqueue("write_row", {"key": data.next_key})
    return {"next_job": next_id}


async def steps(ctx: WorkflowContext, data: StepsInput) -> dict[str, Any]:
    done = 0
    for step in range(1, data.steps + 1):
        cursor = await ctx.connection.execute(
            "SELECT 1 FROM test_effects WHERE key = %s", [f"{data.key}:{step}"]
        )
        if await cursor.fetchone() is None:
            if data.fail_at_step == step and ctx.attempt == 1:
                raise RetryableError(f"failing at step {step}")
            await _write(ctx, f"{data.key}:{step}")
            done += 1
        await ctx.commit()
        await ctx.progress(step, data.steps, note="steps")
    return {"steps_done_this_attempt": done}


async def suicide(ctx: WorkflowContext, data: KeyInput) -> None:
    """Kills its own worker process on the first attempt (SIGKILL), succeeds afterwards."""
    if ctx.attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    await _write(ctx, data.key)


WORKFLOWS: list[Workflow[Any]] = [
    Workflow(name="noop", input_model=NoInput, run=noop),
    Workflow(name="write_row", input_model=KeyInput, run=write_row, aliases=("write",)),
    Workflow(name="flaky", input_model=FlakyInput, run=flaky),
    Workflow(
        name="flaky_fast",
        input_model=FlakyInput,
        run=flaky,
        retry=RetryPolicy(attempts=3, delay=0.2),
    ),
    Workflow(name="crash", input_model=KeyInput, run=crash, retry=RetryPolicy(2, delay=0.1)),
    Workflow(name="chain", input_model=ChainInput, run=chain),
    Workflow(name="steps", input_model=StepsInput, run=steps, retry=RetryPolicy(3, delay=0.1)),
    Workflow(name="suicide", input_model=KeyInput, run=suicide),
]
