"""``orchestrator health`` and ``orchestrator dashboard``'s bind rule, through the real CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.fix_cli import ROOT, cli, embedded_data_dir, embedded_env, free_port
from tests.fix_db import subprocess_env

SCRIPT = Path(sys.executable).with_name("orchestrator")


def test_health_is_one_line_and_an_exit_code(database_url: str) -> None:
    healthy = cli(database_url, "health")
    assert healthy.returncode == 0, healthy.stderr
    assert healthy.stdout.startswith("ok: database reachable, schema at ")
    assert len(healthy.stdout.strip().splitlines()) == 1

    env = subprocess_env("postgresql://nobody:pw@127.0.0.1:1/nothing")
    down = cli(database_url, "health", env=env)
    assert down.returncode == 1
    assert down.stdout.startswith("unhealthy: database unreachable")
    assert "pw" not in down.stdout + down.stderr


def test_dashboard_refuses_a_public_bind_without_a_token(database_url: str) -> None:
    refused = cli(database_url, "dashboard", "--host", "0.0.0.0", "--port", "0", timeout=30)
    assert refused.returncode == 2
    assert "ORCHESTRATOR_DASHBOARD_TOKEN" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_sigterm_stops_the_dashboard_and_the_embedded_server_it_started() -> None:
    port = free_port()
    with embedded_data_dir() as data_dir:
        process = subprocess.Popen(
            [str(SCRIPT), "dashboard", "--port", str(port)],
            cwd=ROOT,
            env=embedded_env(data_dir),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 90
            while True:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                        break
                except OSError:
                    assert time.monotonic() < deadline, "the dashboard never answered"
                    time.sleep(0.2)
            pids_file = data_dir / "pgdata" / ".handle_pids.json"
            assert process.pid in json.loads(pids_file.read_text())

            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.stderr is not None:
                process.stderr.close()
        assert process.returncode == 128 + signal.SIGTERM
        # the last user left: the server was stopped and nobody is registered
        assert not (data_dir / "pgdata" / "postmaster.pid").exists()
