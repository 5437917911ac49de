"""A worker SIGKILLed mid-job: its job is recovered by another worker and finished exactly once."""

from __future__ import annotations

import datetime
import signal
import subprocess
from pathlib import Path

import pytest

from tests.fix_cli import cli, job_status, rows, run_rows, wait_until, worker

#: ORCHESTRATOR_STALLED_AFTER, _RECOVERY_INTERVAL and _HEARTBEAT_INTERVAL of subprocess_env.
STALLED_AFTER, RECOVERY_INTERVAL, HEARTBEAT_INTERVAL = 2.0, 1.0, 0.5


def _job_id(result: subprocess.CompletedProcess[str]) -> int:
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_sigkilled_worker_job_is_recovered_and_finished_once(
    database_url: str, tmp_path: Path
) -> None:
    doomed = worker(database_url, tmp_path, "doomed").start()
    try:
        job_id = _job_id(
            cli(database_url, "enqueue", "write_row", "--payload", '{"key": "k", "sleep": 3}')
        )
        wait_until(
            lambda: [r["status"] for r in run_rows(database_url, job_id)] == ["running"],
            timeout=30,
        )
        doomed.signal(signal.SIGKILL)
        assert doomed.wait(timeout=10) == -signal.SIGKILL
        killed_at = datetime.datetime.now(datetime.UTC)
    finally:
        doomed.stop()
    assert job_status(database_url, job_id) == "doing"  # procrastinate alone leaves it there

    with worker(database_url, tmp_path, "rescuer"):
        wait_until(lambda: job_status(database_url, job_id) == "succeeded", timeout=60)

    runs = run_rows(database_url, job_id)
    assert [(r["attempt"], r["status"]) for r in runs] == [(1, "abandoned"), (2, "succeeded")]
    assert runs[0]["error"]["type"] == "WorkerLost"
    assert runs[0]["worker"] != runs[1]["worker"]
    effects = rows(database_url, "SELECT key, job_id, attempt FROM test_effects")
    assert effects == [{"key": "k", "job_id": job_id, "attempt": 2}]

    recovered_after = (runs[0]["finished_at"] - killed_at).total_seconds()
    finished_after = (runs[1]["finished_at"] - killed_at).total_seconds()
    print(
        f"\n[measure] SIGKILL -> job re-queued (run abandoned): {recovered_after:.2f} s; "
        f"-> job finished by the new worker: {finished_after:.2f} s (job sleeps 3 s)"
    )
    # The silence threshold, one sweep interval, one missed heartbeat and start-up slack.
    assert recovered_after <= STALLED_AFTER + RECOVERY_INTERVAL + HEARTBEAT_INTERVAL + 4
