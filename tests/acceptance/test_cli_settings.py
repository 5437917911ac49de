"""Settings forgive nothing silently, and no message ever shows a password."""

from __future__ import annotations

from pathlib import Path

from tests.fix_cli import cli_many, one_line, run_cli
from tests.fix_db import subprocess_env


def test_a_misspelled_variable_is_a_warning_with_the_closest_name(
    database_url: str, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("ORCHESTRATOR_RETENTON_DAYS=7\n", encoding="utf-8")
    result = run_cli(
        "status",
        env=subprocess_env(database_url, ORCHESTRATOR_CONCURENCY="8"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "orchestrator: warning: unknown setting ORCHESTRATOR_CONCURENCY ignored; did you mean "
        "ORCHESTRATOR_CONCURRENCY?",
        "orchestrator: warning: unknown setting ORCHESTRATOR_RETENTON_DAYS (in .env) ignored; "
        "did you mean ORCHESTRATOR_RETENTION_DAYS?",
    ]


def test_lower_case_levels_and_durations_with_units_are_accepted(database_url: str) -> None:
    env = subprocess_env(
        database_url,
        ORCHESTRATOR_LOG_LEVEL="warning",
        ORCHESTRATOR_POLL_INTERVAL="1s",
        ORCHESTRATOR_STALLED_AFTER="2m",
        ORCHESTRATOR_RETENTION_DAYS="30d",
        ORCHESTRATOR_EMAILBISON_TIMEOUT="45s",
    )
    result = run_cli("--log-format", "TEXT", "--log-level", "Warning", "status", env=env)
    assert (result.returncode, result.stderr) == (0, "")


def test_every_invalid_setting_is_named_with_its_value_at_once(database_url: str) -> None:
    env = subprocess_env(
        database_url,
        ORCHESTRATOR_CONCURRENCY="1000",
        ORCHESTRATOR_LOG_LEVEL="loud",
        ORCHESTRATOR_POLL_INTERVAL="soon",
    )
    line = one_line(run_cli("status", env=env))
    assert line == (
        "orchestrator: invalid settings (3): "
        "ORCHESTRATOR_CONCURRENCY: got '1000', expected an integer from 1 to 256; "
        "ORCHESTRATOR_POLL_INTERVAL: got 'soon', expected a duration (30s, 2m, 1h30m or "
        "seconds) above 0 s and at most 60 s; "
        "ORCHESTRATOR_LOG_LEVEL: got 'loud', expected one of DEBUG, INFO, WARNING, ERROR "
        "(any case)"
    )


def test_database_urls_are_checked_without_echoing_the_password(database_url: str) -> None:
    cases = [
        (
            "postgresql://app:wr%ngpw@db.example/jobs",
            "a '%' that starts no percent-escape (write % in a password as %25)",
            "wr%ngpw",
        ),
        (
            "mysql://app:s3cret-pw-42@db.example/jobs",
            "a mysql:// URL; expected a URL like postgresql://host:5432/dbname",
            "s3cret-pw-42",
        ),
        (
            "host=db.example password=s3cret-pw-42",
            "not a URL; expected a URL like postgresql://host:5432/dbname",
            "s3cret-pw-42",
        ),
    ]
    results = cli_many(
        database_url,
        *([["status"]] * len(cases)),
        envs=[subprocess_env(url) for url, _, _ in cases],
    )
    for (_url, reason, secret), result in zip(cases, results, strict=True):
        line = one_line(result)
        assert line == f"orchestrator: invalid setting ORCHESTRATOR_DATABASE_URL: {reason}"
        assert secret not in result.stderr + result.stdout


def test_a_flag_beyond_its_setting_names_the_flag(database_url: str) -> None:
    concurrency, processes = cli_many(
        database_url,
        ["worker", "--concurrency", "1000"],
        ["worker", "--processes", "0"],
    )
    assert one_line(concurrency) == (
        "orchestrator: --concurrency 1000: expected an integer from 1 to 256"
    )
    assert one_line(processes) == "orchestrator: --processes 0: expected an integer from 1 to 64"
