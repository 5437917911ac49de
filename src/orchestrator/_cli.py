"""The ``orchestrator`` command line.

Exit codes: 0 success; 1 the operation failed (e.g. job not found); 2 bad input, invalid
settings or unreachable database — always one line on stderr naming what was wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from orchestrator._durations import parse_duration
from orchestrator._errors import (
    ConfigurationError,
    DatabaseNotMigrated,
    DatabaseUnavailable,
    InvalidPayload,
    OrchestratorError,
    UnknownWorkflow,
)
from orchestrator._log import configure_logging
from orchestrator._orchestrator import Orchestrator
from orchestrator._plugins import entry_point_plugins
from orchestrator._redaction import SecretScrubber, redact_url
from orchestrator._retry import effective_policy
from orchestrator._settings import Settings, load_settings
from orchestrator._status import RUN_STATUSES, STATES

Handler = Callable[[argparse.Namespace, Settings], Awaitable[int] | int]
EXIT_FAILED = 1
EXIT_USAGE = 2
#: Errors that mean "fix the input or the set-up", not "the operation failed".
USAGE_ERRORS = (
    ConfigurationError,
    DatabaseUnavailable,
    DatabaseNotMigrated,
    InvalidPayload,
    UnknownWorkflow,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrator",
        description="Durable PostgreSQL job orchestrator.",
    )
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-format", choices=["text", "json"])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("migrate", help="bring the database schema to the latest revision")
    p.add_argument("--sql", action="store_true", help="print the SQL instead of running it")
    p.set_defaults(handler=cmd_migrate)

    p = sub.add_parser("enqueue", help="enqueue a workflow job; prints the job id last")
    p.add_argument("workflow", help="workflow name or alias (pt1 ... pt5)")
    p.add_argument("--payload", default="{}", help="JSON object (or @file.json)")
    p.add_argument("--delay", help="start no sooner than this from now (30s, 5m, 1h)")
    p.add_argument("--schedule-at", help="start no sooner than this ISO time (with zone)")
    p.add_argument("--priority", type=int, help="higher runs first (default 0)")
    p.add_argument("--dedupe-key", help="at most one waiting or running job per key")
    p.add_argument("--attempts", type=int, help="attempts in total (default: workflow's)")
    p.add_argument("--queue", help="queue name (default: workflow's)")
    p.set_defaults(handler=cmd_enqueue)

    p = sub.add_parser("status", help="job counts in total and per workflow")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_status)

    p = sub.add_parser("runs", help="recent agent_runs (one row per attempt)")
    p.add_argument("--workflow")
    p.add_argument("--status", choices=RUN_STATUSES)
    p.add_argument("--job", type=int, dest="job_id")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_runs)

    p = sub.add_parser("job", help="one job's state and its attempts")
    p.add_argument("job_id", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_job)

    p = sub.add_parser("retry", help="send a failed or cancelled job back to the queue")
    p.add_argument("job_id", type=int)
    p.set_defaults(handler=cmd_retry)

    p = sub.add_parser("cancel", help="cancel a waiting job or abort a running one")
    p.add_argument("job_id", type=int)
    p.set_defaults(handler=cmd_cancel)

    p = sub.add_parser("worker", help="run jobs until SIGTERM")
    p.add_argument("--concurrency", type=int, help="jobs at once per process")
    p.add_argument("--queues", help="comma-separated queues (default: all)")
    p.add_argument("--processes", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--name", help="worker name shown in logs and agent_runs")
    p.set_defaults(handler=cmd_worker)

    p = sub.add_parser("recover", help="run one crash-recovery sweep now")
    p.set_defaults(handler=cmd_recover)

    p = sub.add_parser("workflows", help="list registered workflows")
    p.set_defaults(handler=cmd_workflows)

    p = sub.add_parser("db-url", help="print the database URL (password hidden)")
    p.add_argument("--reveal", action="store_true", help="print the password too")
    p.set_defaults(handler=cmd_db_url)

    _add_plugin_commands(sub)
    return parser


def _add_plugin_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Sub-commands the installed plugins add (e.g. ``clients``, ``run-month``, ``demo``)."""
    for plugin in entry_point_plugins():
        if plugin.add_commands is not None:
            plugin.add_commands(sub)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    scrub = SecretScrubber.from_environment()
    try:
        overrides: dict[str, Any] = {}
        if args.log_level:
            overrides["log_level"] = args.log_level
        if args.log_format:
            overrides["log_format"] = args.log_format
        settings = load_settings(**overrides)
        configure_logging(settings.log_level, settings.log_format, scrub)
        result = args.handler(args, settings)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return int(result)
    except OrchestratorError as exc:
        print(f"orchestrator: {scrub(str(exc))}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, USAGE_ERRORS) else EXIT_FAILED
    except KeyboardInterrupt:
        return 130


async def _open(settings: Settings) -> Orchestrator:
    return await Orchestrator(settings).open()


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    # alembic and SQLAlchemy take half a second to import: only this command needs them.
    from orchestrator import _migrate as migrate_module
    from orchestrator._database import resolve_database_url

    if args.sql:
        from alembic import command

        command.upgrade(migrate_module.alembic_config(), "heads", sql=True)
        return 0
    url = resolve_database_url(settings)
    asyncio.run(_check(url, settings))
    migrate_module.upgrade(url)
    current = migrate_module.current_revisions(url)
    print(f"database at revision {', '.join(sorted(current))}")
    return 0


async def _check(url: str, settings: Settings) -> None:
    from orchestrator._database import check_connection

    await check_connection(url, settings.connect_timeout)


def _load_payload(text: str) -> Any:
    source = "--payload"
    if text.startswith("@"):
        source = text[1:]
        try:
            with open(source, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise InvalidPayload(f"cannot read payload file {source!r}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise InvalidPayload(
                f"payload file {source!r} is not UTF-8 text (byte {exc.start + 1}: {exc.reason})"
            ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidPayload(
            f"{source} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None


async def cmd_enqueue(args: argparse.Namespace, settings: Settings) -> int:
    payload = _load_payload(args.payload)
    orch = Orchestrator(settings)
    orch.registry.get(args.workflow)  # refuse unknown names before touching the database
    options: dict[str, Any] = {
        "priority": args.priority,
        "dedupe_key": args.dedupe_key,
        "attempts": args.attempts,
        "queue": args.queue,
    }
    if args.delay:
        try:
            options["delay"] = parse_duration(args.delay)
        except ValueError as exc:
            raise InvalidPayload(f"--delay: {exc}") from None
    if args.schedule_at:
        try:
            options["schedule_at"] = datetime.fromisoformat(args.schedule_at)
        except ValueError:
            raise InvalidPayload(
                f"--schedule-at {args.schedule_at!r} is not an ISO date-time "
                "(e.g. 2026-01-15T09:00:00-06:00)"
            ) from None
    from orchestrator._enqueue import JobRequest, build_job

    build_job(
        orch.registry,
        settings,
        JobRequest(
            args.workflow, payload, **{k: v for k, v in options.items() if k != "queue" or v}
        ),
    )
    await orch.open()
    try:
        job_id = await orch.enqueue_workflow(args.workflow, payload, **options)
    finally:
        await orch.close()
    print(job_id)
    return 0


async def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    orch = await _open(settings)
    try:
        status = await orch.queue_status()
    finally:
        await orch.close()
    if args.json:
        print(json.dumps(status.as_dict(), indent=2))
        return 0
    rows: list[tuple[str, ...]] = [("workflow", *STATES)]
    for name, counts in sorted(status.by_workflow.items()):
        rows.append((name, *(str(v) for v in counts.as_dict().values())))
    rows.append(("total", *(str(v) for v in status.total.as_dict().values())))
    print(_table(rows))
    return 0


async def cmd_runs(args: argparse.Namespace, settings: Settings) -> int:
    orch = await _open(settings)
    try:
        runs = await orch.list_runs(
            workflow=args.workflow, status=args.status, job_id=args.job_id, limit=args.limit
        )
    finally:
        await orch.close()
    if args.json:
        print(json.dumps(runs, indent=2, default=str))
        return 0
    rows = [("run", "job", "workflow", "attempt", "status", "started", "duration", "error")]
    for r in runs:
        rows.append(
            (
                str(r["run_id"]),
                str(r["job_id"]),
                r["workflow"],
                str(r["attempt"]),
                r["status"],
                r["started_at"].strftime("%Y-%m-%d %H:%M:%S"),
                f"{float(r['duration_s']):.3f}s",
                (f"{r['error_type']}: {r['error_message']}" if r["error_type"] else "")[:80],
            )
        )
    print(_table(rows))
    return 0


async def cmd_job(args: argparse.Namespace, settings: Settings) -> int:
    orch = await _open(settings)
    try:
        job = await orch.get_job(args.job_id)
        runs = await orch.list_runs(job_id=args.job_id, limit=1000)
        calls = await orch.external_calls(args.job_id)
    finally:
        await orch.close()
    if args.json:
        print(
            json.dumps({"job": job, "runs": runs, "external_calls": calls}, indent=2, default=str)
        )
        return 0
    print(f"job {job['job_id']} {job['workflow']} state={job['state']} attempts={job['attempts']}")
    for r in reversed(runs):
        error = f" {r['error_type']}: {r['error_message']}" if r["error_type"] else ""
        print(f"  attempt {r['attempt']}: {r['status']} {float(r['duration_s']):.3f}s{error}")
    if calls:
        doubtful = [c for c in calls if c["in_doubt"]]
        states = {s: sum(1 for c in calls if c["state"] == s) for s in ("done", "failed")}
        print(
            f"  external calls: {states['done']} done, {states['failed']} failed, "
            f"{len(doubtful)} in doubt"
        )
        for c in doubtful:
            print(
                f"  in doubt: call {c['id']} {c['kind']} {c['key']!r} "
                f"(attempt {c['attempt']}, {c['created_at']:%Y-%m-%d %H:%M:%S})"
            )
    return 0


async def cmd_retry(args: argparse.Namespace, settings: Settings) -> int:
    orch = await _open(settings)
    try:
        await orch.retry_job(args.job_id)
    finally:
        await orch.close()
    print(f"job {args.job_id} queued again")
    return 0


async def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    orch = await _open(settings)
    try:
        outcome = await orch.cancel_job(args.job_id)
    finally:
        await orch.close()
    print(f"job {args.job_id}: {outcome}")
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator._database import resolve_database_url

    if args.processes < 1:
        raise ConfigurationError("--processes must be at least 1")
    if args.concurrency is not None and args.concurrency < 1:
        raise ConfigurationError("--concurrency must be at least 1")
    url = resolve_database_url(settings)
    asyncio.run(_check(url, settings))
    if args.processes > 1:
        from orchestrator._worker import supervise

        child_args = ["worker", "--processes", "1"]
        for flag, value in (("--concurrency", args.concurrency), ("--queues", args.queues)):
            if value is not None:
                child_args += [flag, str(value)]
        env = dict(os.environ, ORCHESTRATOR_DATABASE_URL=url)
        return supervise(child_args, args.processes, env)
    return asyncio.run(_worker(args, settings, url))


async def _worker(args: argparse.Namespace, settings: Settings, url: str) -> int:
    from orchestrator._worker import run_worker

    queues = [q.strip() for q in (args.queues or "").split(",") if q.strip()] or None
    orch = Orchestrator(settings, database_url=url, worker=True)
    await orch.open()
    try:
        await run_worker(orch, concurrency=args.concurrency, queues=queues, name=args.name)
    finally:
        await orch.close()
    return 0


async def cmd_recover(args: argparse.Namespace, settings: Settings) -> int:
    orch = await _open(settings)
    try:
        report = await orch.recover()
    finally:
        await orch.close()
    print(json.dumps(report.as_dict()))
    return 0


def cmd_workflows(args: argparse.Namespace, settings: Settings) -> int:
    orch = Orchestrator(settings)
    rows = [("workflow", "aliases", "queue", "attempts", "description")]
    for wf in sorted(orch.registry, key=lambda w: w.name):
        policy = effective_policy(wf.retry, settings)
        rows.append((wf.name, ",".join(wf.aliases), wf.queue, str(policy.attempts), wf.description))
    print(_table(rows))
    return 0


def cmd_db_url(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator._database import resolve_database_url

    url = resolve_database_url(settings)
    print(url if args.reveal else redact_url(url))
    return 0


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)
