"""``run-month``, ``run-week`` and ``enqueue`` refuse what would surely fail in the worker,
warn about what might be a mistake, and say so when the job is already queued or running."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.fix_cli import one_line, rows, run_cli, workflow_job_count
from tests.fix_db import subprocess_env
from workflows.cole import client_dir_name
from workflows.windows import add_months, format_month

CLIENT = "Acme Insurance"
KEY_ENV = "EMAILBISON_KEY_ACME"
MONDAY = "2026-12-07"


def _this_month_plus(months: int) -> str:
    from workflows.preflight import today

    now = today()
    return format_month(*add_months(now.year, now.month, months))


MONTH = _this_month_plus(2)


def _env(database_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return subprocess_env(database_url, ORCHESTRATOR_COLE_INBOX=str(tmp_path / "inbox"), **extra)


def _exports(tmp_path: Path, month: str, client: str = CLIENT) -> None:
    folder = tmp_path / "inbox" / client_dir_name(client) / month
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "export.csv").write_text("First_Name\n", encoding="utf-8")


def _add_client(env: dict[str, str], name: str = CLIENT, *extra: str) -> None:
    added = run_cli(
        "clients",
        "add",
        "--name",
        name,
        "--tier",
        "100",
        "--emailbison-url",
        "https://mail.acme.example",
        "--emailbison-key-env",
        KEY_ENV,
        *extra,
        env=env,
    )
    assert added.returncode == 0, added.stderr


def _started(result: subprocess.CompletedProcess[str]) -> int:
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("started"), lines
    return int(lines[-1])


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    environment = _env(database_url, tmp_path, **{KEY_ENV: "eb-key-123456"})
    _add_client(environment)
    _exports(tmp_path, MONTH)
    return environment


@pytest.mark.slow
def test_run_month_refuses_what_the_worker_would_fail_on(
    database_url: str, tmp_path: Path, env: dict[str, str]
) -> None:
    _add_client(env, "Idle Agency", "--inactive")
    no_key = dict(env)
    del no_key[KEY_ENV]
    cases = [
        (env, ["Nope Co", MONTH], "orchestrator: no client named 'Nope Co' "),
        (env, ["acme insurance", MONTH], "did you mean 'Acme Insurance'?"),
        (env, ["Acme Insurence", MONTH], "did you mean 'Acme Insurance'?"),
        (env, ["Idle Agency", MONTH], "orchestrator: client 'Idle Agency' is inactive"),
        (
            no_key,
            [CLIENT, MONTH],
            f"orchestrator: EmailBison key for client 'Acme Insurance' not found: looked in "
            f"environment variable {KEY_ENV}, .env file ",
        ),
        (env, [CLIENT, "2027-13"], "expected a month as YYYY-MM"),
    ]
    for environment, args, expected in cases:
        line = one_line(run_cli("run-month", *args, env=environment))
        assert expected in line, (args, line)
        assert "eb-key-123456" not in line
    assert "(see 'orchestrator clients list')" in one_line(
        run_cli("run-month", "Nope Co", MONTH, env=env)
    )
    week = one_line(run_cli("run-week", "acme insurance", MONDAY, env=env))
    assert week == "orchestrator: no client named 'acme insurance'; did you mean 'Acme Insurance'?"
    assert workflow_job_count(database_url) == 0


def test_a_month_far_from_today_is_queued_with_a_warning(
    tmp_path: Path, env: dict[str, str]
) -> None:
    _exports(tmp_path, "1999-01")
    result = run_cli("run-month", CLIENT, "1999-01", env=env)
    _started(result)
    line = one_line(result, 0)
    assert line.startswith("orchestrator: warning: month 1999-01 is ")
    assert line.endswith(
        " months ago; runs usually cover "
        f"{_this_month_plus(-1)} to "
        f"{_this_month_plus(6)} (queued anyway)"
    )


def test_missing_cole_exports_are_a_warning(tmp_path: Path, env: dict[str, str]) -> None:
    month = _this_month_plus(3)
    result = run_cli("run-month", CLIENT, month, env=env)
    _started(result)
    folder = (tmp_path / "inbox" / client_dir_name(CLIENT) / month).resolve()
    assert one_line(result, 0) == (
        f"orchestrator: warning: no Cole exports (*.csv) in {folder} yet: PT1 fails unless "
        "they are there when it runs"
    )


def test_a_second_run_month_says_already_queued_or_running(
    database_url: str, env: dict[str, str]
) -> None:
    job_id = _started(run_cli("run-month", CLIENT, MONTH, env=env))
    again = run_cli("run-month", CLIENT, MONTH, env=env)
    assert (again.returncode, again.stderr) == (0, "")
    assert again.stdout.splitlines() == [
        f"PT1 → PT2 → PT3 → PT4 for 'Acme Insurance' {MONTH} already queued as job {job_id};"
        " nothing added",
        str(job_id),
    ]
    rows(database_url, "UPDATE procrastinate_jobs SET status = 'doing' WHERE id = %s", [job_id])
    running = run_cli("run-month", CLIENT, MONTH, env=env)
    assert running.stdout.splitlines()[0].endswith(
        f"already running as job {job_id}; nothing added"
    )
    assert workflow_job_count(database_url) == 1


def test_enqueue_refuses_unknown_fields_and_runs_the_checks(
    database_url: str, env: dict[str, str]
) -> None:
    typo = f'{{"client": "{CLIENT}", "month": "{MONTH}", "push_to_cly": true}}'
    line = one_line(run_cli("enqueue", "pt2", "--payload", typo, env=env))
    assert line == (
        "orchestrator: invalid payload for workflow 'pt2': push_to_cly: unknown field "
        "(did you mean 'push_to_clay'?)"
    )
    unknown = one_line(
        run_cli("enqueue", "pt4", "--payload", f'{{"client": "Nope", "month": "{MONTH}"}}', env=env)
    )
    assert unknown == "orchestrator: no client named 'Nope' (see 'orchestrator clients list')"
    tuesday = one_line(
        run_cli(
            "enqueue",
            "pt5",
            "--payload",
            f'{{"client": "{CLIENT}", "upload_date": "2026-12-08"}}',
            env=env,
        )
    )
    assert tuesday == (
        "orchestrator: invalid payload for workflow 'pt5': upload_date: 2026-12-08 is a "
        "Tuesday; the upload date is a Monday"
    )
    assert workflow_job_count(database_url) == 0

    args = ["enqueue", "write_row", "--payload", '{"key": "a"}', "--dedupe-key", "k-1"]
    first = run_cli(*args, env=env)
    assert first.returncode == 0 and first.stderr == "", first.stderr
    second = run_cli(*args, env=env)
    assert one_line(second, 0) == (
        f"orchestrator: already queued as job {first.stdout.strip()} (dedupe key 'k-1'); "
        "nothing added"
    )
    assert second.stdout == first.stdout


def test_the_key_is_found_in_dotenv_and_in_the_secrets_dir(
    database_url: str, tmp_path: Path
) -> None:
    env = _env(database_url, tmp_path)
    _add_client(env)
    _exports(tmp_path, MONTH)
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / ".env").write_text(f"{KEY_ENV}=eb-from-dotenv-1234\n", encoding="utf-8")
    from_dotenv = run_cli("run-month", CLIENT, MONTH, env=env, cwd=workdir)
    _started(from_dotenv)
    assert from_dotenv.stderr == ""

    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / KEY_ENV).write_text("eb-from-file-1234\n", encoding="utf-8")
    from_file = run_cli(
        "run-week", CLIENT, MONDAY, env=dict(env, ORCHESTRATOR_SECRETS_DIR=str(secrets))
    )
    _started(from_file)
