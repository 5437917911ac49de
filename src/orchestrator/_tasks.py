"""Procrastinate tasks: how workflows, maintenance sweeps and schedules become queue tasks.

Each workflow becomes one task named after it whose body is the
:class:`~orchestrator._runner.Runner`; crash recovery and pruning are periodic tasks on the
maintenance queue; each :class:`~orchestrator.Schedule` is a periodic task whose handler may
enqueue workflows inside its own transaction.
"""

from __future__ import annotations

import datetime
import functools
from typing import TYPE_CHECKING, Any

from procrastinate import exceptions as pexc
from procrastinate.job_context import JobContext

from orchestrator import _alerts as alerts
from orchestrator import _pruning as pruning
from orchestrator._enqueue import MAX_PRIORITY
from orchestrator._registry import Workflow
from orchestrator._retry import Cancelled, DecidedRetryStrategy
from orchestrator._schedules import Schedule, ScheduleContext

if TYPE_CHECKING:
    from orchestrator._orchestrator import Orchestrator

#: Queue of the orchestrator's own tasks (recovery, pruning, schedules); every worker
#: listens to it.
MAINTENANCE_QUEUE = "orchestrator"


def register_workflow(orchestrator: Orchestrator, workflow: Workflow[Any]) -> None:
    """One task named after the workflow, running attempts through the runner."""

    async def run_workflow(
        context: JobContext, /, payload: Any = None, attempts: Any = None, **unexpected: Any
    ) -> None:
        job = context.job
        assert job.id is not None
        problem = args_problem(payload, attempts, unexpected)

        def abort_reason() -> str | None:
            reason = context.abort_reason()
            return None if reason is None else str(reason.value)

        try:
            await orchestrator.runner.run(
                workflow_name=workflow.name,
                payload=payload if isinstance(payload, dict) else {},
                job_id=job.id,
                attempt=job.attempts + 1,
                queue=job.queue,
                worker_id=job.worker_id,
                attempts_override=None if problem else attempts,
                abort_reason=abort_reason,
                args_problem=problem,
            )
        except Cancelled as exc:
            raise pexc.JobAborted(str(exc)) from exc

    run_workflow.__name__ = f"run_{workflow.name}"
    orchestrator.app.task(
        name=workflow.name,
        queue=workflow.queue,
        pass_context=True,
        retry=DecidedRetryStrategy(),
    )(run_workflow)


def args_problem(payload: Any, attempts: Any, unexpected: dict[str, Any]) -> str | None:
    """What is wrong with a job's stored arguments (jobs can be deferred around our enqueue
    checks, e.g. by ``procrastinate defer`` or an INSERT), or ``None``.

    >>> args_problem({"client": "Acme"}, None, {})
    >>> args_problem(None, 100000, {"x": 1})
    "unexpected job arguments: x; no 'payload' object; attempts must be an integer from 1 to 100"
    """
    problems = []
    if unexpected:
        problems.append(f"unexpected job arguments: {', '.join(sorted(unexpected))}")
    if not isinstance(payload, dict):
        problems.append("no 'payload' object")
    if attempts is not None and (
        not isinstance(attempts, int) or isinstance(attempts, bool) or not 1 <= attempts <= 100
    ):
        problems.append("attempts must be an integer from 1 to 100")
    return "; ".join(problems) or None


def register_maintenance(orchestrator: Orchestrator) -> None:
    """The crash-recovery sweep and the hourly pruning, as periodic tasks."""
    interval = orchestrator.settings.recovery_interval

    async def recover_stalled_jobs(timestamp: int) -> None:
        await orchestrator.recover()

    async def prune_finished_jobs(timestamp: int) -> None:
        await pruning.prune_finished_jobs(
            orchestrator.pool, retention_days=orchestrator.settings.retention_days
        )

    recover_task = orchestrator.app.task(
        name="orchestrator.recover", queue=MAINTENANCE_QUEUE, pass_context=False
    )(recover_stalled_jobs)
    # Above every workflow job: a sweep queued behind a backlog would leave stalled and
    # unreconciled jobs waiting for the whole backlog.
    orchestrator.app.periodic(
        cron=f"* * * * * */{interval}",
        periodic_id="recover",
        priority=MAX_PRIORITY + 1,
    )(recover_task)
    prune_task = orchestrator.app.task(
        name="orchestrator.prune", queue=MAINTENANCE_QUEUE, pass_context=False
    )(prune_finished_jobs)
    orchestrator.app.periodic(cron="17 * * * *", periodic_id="prune")(prune_task)

    async def send_alerts(timestamp: int) -> None:
        hooks = alerts.load_alert_hooks(orchestrator.settings)
        await alerts.sweep(orchestrator.pool, orchestrator.settings, hooks)

    alert_task = orchestrator.app.task(
        name="orchestrator.alerts", queue=MAINTENANCE_QUEUE, pass_context=False
    )(send_alerts)
    orchestrator.app.periodic(
        cron=f"* * * * * */{min(59, orchestrator.settings.alert_interval)}", periodic_id="alerts"
    )(alert_task)


def register_schedule(orchestrator: Orchestrator, schedule: Schedule) -> None:
    """A periodic task calling the schedule's handler in a transaction of its own."""

    async def fire(timestamp: int) -> None:
        fired_at = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
        async with orchestrator.pool.connection() as conn:
            ctx = ScheduleContext(
                connection=conn,
                settings=orchestrator.settings,
                enqueue=functools.partial(orchestrator.enqueue_workflow, connection=conn),
            )
            await schedule.handler(ctx, fired_at)
            await conn.commit()

    task = orchestrator.app.task(
        name=f"orchestrator.schedule.{schedule.id}", queue=MAINTENANCE_QUEUE
    )(fire)
    orchestrator.app.periodic(cron=schedule.cron, periodic_id=schedule.id)(task)
