"""The benchmarks' CPU sampling survives processes exiting while it reads them."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench import processes

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _gone_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_process_that_is_gone_counts_zero() -> None:
    pid = _gone_pid()
    assert processes.tree_cpu_seconds([pid]) == 0.0
    assert processes._children(pid) == []


def test_an_exited_child_keeps_counting_in_its_parent() -> None:
    before = processes.tree_cpu_seconds([os.getpid()])
    busy = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    subprocess.run([sys.executable, "-c", busy], check=True)  # reaped: in our children time
    assert processes.tree_cpu_seconds([os.getpid()]) - before >= 0.25


def test_sampling_while_children_come_and_go_never_raises() -> None:
    """Children start and exit during the sampling (as PostgreSQL backends do)."""
    spawner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, time\n"
            "end = time.monotonic() + 1.5\n"
            "while time.monotonic() < end: subprocess.Popen(['true']).wait()",
        ]
    )
    try:
        samples = []
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            samples.append(processes.tree_cpu_seconds([spawner.pid]))
        assert len(samples) > 10
    finally:
        spawner.wait()
    assert processes.tree_cpu_seconds([spawner.pid]) == 0.0  # reaped by us: gone
