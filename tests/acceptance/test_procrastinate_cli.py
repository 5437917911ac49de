"""Procrastinate's own CLI with the orchestrator's App runs the same workflow jobs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.fix_cli import ROOT, cli, job_status, rows, run_rows
from tests.fix_db import subprocess_env

APP = "--app=orchestrator.procrastinate_app.app"


def _job_id(result: subprocess.CompletedProcess[str]) -> int:
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip().splitlines()[-1])


def test_procrastinate_worker_runs_a_workflow_job(database_url: str, tmp_path: Path) -> None:
    job_id = _job_id(cli(database_url, "enqueue", "write", "--payload", '{"key": "pc"}'))
    log = tmp_path / "procrastinate.log"
    with open(log, "wb") as output:
        result = subprocess.run(
            # --one-shot: stop once the queue is empty instead of waiting for new jobs.
            [sys.executable, "-m", "procrastinate", APP, "worker", "--one-shot"],
            cwd=ROOT,
            env=subprocess_env(database_url),
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=60,
            check=False,
        )
    assert result.returncode == 0, log.read_text()
    assert job_status(database_url, job_id) == "succeeded", log.read_text()
    [run] = run_rows(database_url, job_id)
    assert run["status"] == "succeeded"
    assert rows(database_url, "SELECT key FROM test_effects") == [{"key": "pc"}]


def test_procrastinate_cli_sees_the_workflow_tasks(database_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "procrastinate", APP, "defer", "noop", "{}"],
        cwd=ROOT,
        env=subprocess_env(database_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    [job] = rows(database_url, "SELECT task_name, args FROM procrastinate_jobs")
    assert job["task_name"] == "noop"
