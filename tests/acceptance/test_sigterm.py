"""SIGTERM: stop fetching, give running jobs the shutdown timeout, then abort them to retry."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.fix_cli import cli, job_status, rows, run_rows, wait_until, worker

SHUTDOWN_TIMEOUT = 1.0


def _job_id(result: subprocess.CompletedProcess[str]) -> int:
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_sigterm_aborts_a_long_job_which_then_retries(database_url: str, tmp_path: Path) -> None:
    terminated = worker(
        database_url, tmp_path, "terminated", ORCHESTRATOR_SHUTDOWN_TIMEOUT=str(SHUTDOWN_TIMEOUT)
    ).start()
    try:
        job_id = _job_id(
            cli(database_url, "enqueue", "write_row", "--payload", '{"key": "k", "sleep": 30}')
        )
        wait_until(
            lambda: [r["status"] for r in run_rows(database_url, job_id)] == ["running"],
            timeout=30,
        )
        sent = time.monotonic()
        terminated.signal(signal.SIGTERM)
        code = terminated.wait(timeout=15)
        exited_after = time.monotonic() - sent
    finally:
        terminated.stop()
    print(f"\n[measure] SIGTERM -> worker exited: {exited_after:.2f} s")
    assert code == 0, terminated.output()[-3000:]
    assert exited_after < SHUTDOWN_TIMEOUT + 3

    [run] = run_rows(database_url, job_id)
    assert run["status"] == "retrying"
    assert run["error"]["type"] == "ShutdownAbort"
    assert run["error"]["retry_in_s"] == 0
    assert job_status(database_url, job_id) == "todo"  # back in the queue, due now
    assert rows(database_url, "SELECT * FROM test_effects") == []

    # Only to keep the test short: the second run need not sleep 30 s again.
    rows(
        database_url,
        "UPDATE procrastinate_jobs SET args = jsonb_set(args, '{payload,sleep}', '0')"
        " WHERE id = %s",
        [job_id],
    )
    with worker(database_url, tmp_path, "successor"):
        wait_until(lambda: job_status(database_url, job_id) == "succeeded", timeout=30)
    assert [r["status"] for r in run_rows(database_url, job_id)] == ["retrying", "succeeded"]
    assert [r["key"] for r in rows(database_url, "SELECT key FROM test_effects")] == ["k"]
