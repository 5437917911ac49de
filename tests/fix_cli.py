"""The real command line in subprocesses: one-shot CLI calls and worker processes.

Every process is started here and stopped by its own pid (SIGTERM, then SIGKILL), never by
name. Output goes to files so a chatty worker can never block on a full pipe.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psycopg
from psycopg.rows import dict_row

from tests.fix_db import subprocess_env

ROOT = Path(__file__).resolve().parents[1]
ORCHESTRATOR = [sys.executable, "-m", "orchestrator"]


def cli(
    database_url: str,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``orchestrator ARGS`` to completion against the test database."""
    return subprocess.run(
        [*ORCHESTRATOR, *args],
        cwd=ROOT,
        env=env if env is not None else subprocess_env(database_url),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def cli_many(
    database_url: str,
    *calls: list[str],
    envs: list[dict[str, str] | None] | None = None,
    timeout: float = 60,
) -> list[subprocess.CompletedProcess[str]]:
    """Run independent ``orchestrator`` commands at the same time; results in call order."""
    environments = envs if envs is not None else [None] * len(calls)
    started = [
        subprocess.Popen(
            [*ORCHESTRATOR, *args],
            cwd=ROOT,
            env=env if env is not None else subprocess_env(database_url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args, env in zip(calls, environments, strict=True)
    ]
    results = []
    try:
        for args, process in zip(calls, started, strict=True):
            out, err = process.communicate(timeout=timeout)
            results.append(subprocess.CompletedProcess(args, process.returncode, out, err))
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.communicate()
    return results


class Process:
    """A long-running subprocess (a worker) with its output in ``log_path``."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def poll(self) -> int | None:
        assert self.popen is not None
        return self.popen.poll()

    def signal(self, signum: int) -> None:
        if self.popen is not None and self.popen.poll() is None:
            os.kill(self.popen.pid, signum)

    def wait(self, timeout: float) -> int:
        assert self.popen is not None
        return self.popen.wait(timeout=timeout)

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns the exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        return self.popen.returncode

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if exc is not None:
            print(f"--- output of {' '.join(self.argv[2:])} (pid {self.pid}) ---")
            print(self.output()[-6000:])


def worker(
    database_url: str, log_dir: Path, name: str = "worker", *args: str, **env: str
) -> Process:
    """``orchestrator worker`` against the test database (test workflows registered)."""
    return Process(
        [*ORCHESTRATOR, "worker", "--name", name, *args],
        subprocess_env(database_url, **env),
        log_dir / f"{name}.log",
    )


def wait_until(predicate: object, *, timeout: float, interval: float = 0.05) -> float:
    """Poll a sync predicate; return the seconds it took, fail after ``timeout``."""
    assert callable(predicate)
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
    return time.monotonic() - start


def rows(database_url: str, query: str, params: Any = None) -> list[dict[str, Any]]:
    """The rows of one query (a connection of its own, closed at once)."""
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []


def job_status(database_url: str, job_id: int) -> str | None:
    found = rows(
        database_url, "SELECT status::text FROM procrastinate_jobs WHERE id = %s", [job_id]
    )
    return str(found[0]["status"]) if found else None


def run_rows(database_url: str, job_id: int) -> list[dict[str, Any]]:
    """agent_runs of a job, oldest first."""
    return rows(
        database_url,
        "SELECT id, attempt, status::text AS status, error, started_at, finished_at, worker"
        " FROM agent_runs WHERE job_id = %s ORDER BY id",
        [job_id],
    )


def workflow_job_count(database_url: str) -> int:
    found = rows(
        database_url,
        "SELECT count(*) AS n FROM procrastinate_jobs WHERE task_name NOT LIKE 'orchestrator.%%'",
    )
    return int(found[0]["n"])


def run_cli(
    *args: str,
    env: dict[str, str],
    cwd: Path = ROOT,
    timeout: float = 60,
    console_script: bool = False,
) -> subprocess.CompletedProcess[str]:
    """``orchestrator ARGS`` with any environment and working directory (a ``.env`` there is
    read); ``console_script`` runs the installed script rather than ``python -m``."""
    script = Path(sys.executable).with_name("orchestrator")
    command = [str(script)] if console_script and script.exists() else ORCHESTRATOR
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The single stderr line of a command that ended with ``code`` (and no traceback)."""
    assert result.returncode == code, (result.args, result.returncode, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, (result.args, result.stderr)
    return lines[0]


def embedded_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for a CLI subprocess using the embedded server in ``data_dir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(
        {
            "ORCHESTRATOR_DATA_DIR": str(data_dir),
            "ORCHESTRATOR_WORKFLOW_MODULES": "tests.workflows_for_tests",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


@contextlib.contextmanager
def embedded_data_dir() -> Iterator[Path]:
    """A fresh data directory for an embedded server of its own, removed afterwards.

    Under the checkout's ``.orchestrator`` (not pytest's private temporary directory): as root
    the server runs as another user, who must be able to reach it; the path stays short enough
    for the server's Unix socket.
    """
    path = ROOT / ".orchestrator" / f"cli-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    path.chmod(0o755)
    try:
        yield path
    finally:
        for _ in range(50):  # the server stops when its last process exits
            if not (path / "pgdata" / "postmaster.pid").exists():
                break
            time.sleep(0.1)
        shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a server a test starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
