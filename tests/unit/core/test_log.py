"""Log output: one line per expected failure, JSON-only in JSON mode, quiet HTTP clients."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from orchestrator import _log
from orchestrator._log import RunnerAlreadyLogged, announce, configure_logging, notice
from orchestrator._retry import AttemptFailed
from orchestrator._runner import failure_summary


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level, fmt = root.handlers[:], root.level, _log._format
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    _log._format = fmt


def _record(exc: BaseException | None) -> logging.LogRecord:
    return logging.LogRecord(
        "procrastinate.worker",
        logging.ERROR,
        __file__,
        1,
        "Job ended with status: Error",
        None,
        None if exc is None else (type(exc), exc, None),
    )


def test_procrastinates_duplicate_of_a_logged_failure_is_dropped() -> None:
    keep = RunnerAlreadyLogged()
    assert not keep.filter(_record(AttemptFailed(RuntimeError("x"), retry_in=5)))
    assert keep.filter(_record(ConnectionError("the database went away")))
    assert keep.filter(_record(None))


@pytest.mark.parametrize(("level", "http_level"), [("INFO", "WARNING"), ("debug", "DEBUG")])
def test_http_requests_are_logged_at_debug_only(level: str, http_level: str) -> None:
    configure_logging(level, "text", str)
    assert logging.getLevelName(logging.getLogger("httpx").level) == http_level


def test_notices_follow_the_format(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "text", str)
    notice("already queued as job 3")
    notice("month 1999-01 is far", warning=True)
    announce("migrating", event="schema.migrating")
    assert capsys.readouterr().err.splitlines() == [
        "orchestrator: already queued as job 3",
        "orchestrator: warning: month 1999-01 is far",
        "orchestrator: migrating",
    ]
    configure_logging("INFO", "json", str)
    notice("month 1999-01 is far", warning=True)
    announce("migrating", event="schema.migrating")
    records = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(r["level"], r["event"], r["message"]) for r in records] == [
        ("warning", "cli.warning", "month 1999-01 is far"),
        ("info", "schema.migrating", "migrating"),
    ]


def test_a_failure_says_what_comes_next() -> None:
    assert failure_summary("retrying", 0.31, "RetryableError", "HTTP 503", 10.0).endswith(
        "; retry in 10 s"
    )
    assert "ran" not in failure_summary("failed", 0.31, "PermanentError", "bad", None)
