"""The default retry policy, end to end: 3 attempts, waiting 5 s then 10 s."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import pytest

from tests.fix_cli import cli, job_status, run_rows, wait_until, worker

#: A retry due at time T starts by T + this many seconds.
LATENESS = 1.5


def _job_id(result: subprocess.CompletedProcess[str]) -> int:
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_default_policy_waits_5_then_10_seconds(database_url: str, tmp_path: Path) -> None:
    with worker(database_url, tmp_path):
        job_id = _job_id(
            cli(database_url, "enqueue", "flaky", "--payload", '{"key": "t", "fail_times": 2}')
        )
        wait_until(lambda: job_status(database_url, job_id) == "succeeded", timeout=45)

    runs = run_rows(database_url, job_id)
    assert [(r["attempt"], r["status"]) for r in runs] == [
        (1, "retrying"),
        (2, "retrying"),
        (3, "succeeded"),
    ]
    assert [r["error"]["retry_in_s"] for r in runs[:2]] == [5.0, 10.0]
    assert [r["error"]["type"] for r in runs[:2]] == ["RetryableError", "RetryableError"]
    starts = [r["started_at"] for r in runs]
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(starts)]
    print(f"\n[measure] gaps between attempt starts: {gaps[0]:.3f} s, {gaps[1]:.3f} s")
    for gap, wait in zip(gaps, (5.0, 10.0), strict=True):
        assert wait <= gap <= wait + LATENESS, gaps
