"""Worker processes for a measurement: the commands, their environment, start/stop, CPU.

Ours is ``orchestrator worker`` (the product's own command); the baseline is
:mod:`bench.bare_worker`. Both run from this checkout with the bench workflows registered
(``ORCHESTRATOR_WORKFLOW_MODULES=bench.workflows``) and log to ``.orchestrator/bench/logs``.
CPU time is read from ``/proc`` (Linux), for the workers and, when the benchmarks use the
embedded server, for PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.harness import DATA_DIR, LOG_DIR, ROOT, Bench, fetch_value, wait_until

WORKFLOW_MODULE = "bench.workflows"


def worker_env(database_url: str, **extra: str) -> dict[str, str]:
    """Environment for a worker subprocess: this checkout, the bench workflows, one database.

    Other ``ORCHESTRATOR_*`` settings (concurrency, poll interval ...) pass through, so the
    workers and the bench process (which reports them) agree."""
    env = dict(os.environ)
    path = [str(ROOT), str(ROOT / "src"), env.get("PYTHONPATH", "")]
    env.update(
        {
            "ORCHESTRATOR_DATABASE_URL": database_url,
            "ORCHESTRATOR_WORKFLOW_MODULES": WORKFLOW_MODULE,
            "PYTHONPATH": os.pathsep.join(p for p in path if p),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def orchestrator_worker(*, processes: int = 1, concurrency: int | None = None) -> list[str]:
    """argv of ``orchestrator worker`` (the product's own command)."""
    argv = [sys.executable, "-m", "orchestrator", "worker", "--processes", str(processes)]
    if concurrency is not None:
        argv += ["--concurrency", str(concurrency)]
    return argv


def bare_worker(concurrency: int | None = None) -> list[str]:
    """argv of the bare procrastinate worker (:mod:`bench.bare_worker`)."""
    argv = [sys.executable, "-m", "bench.bare_worker"]
    if concurrency is not None:
        argv += ["--concurrency", str(concurrency)]
    return argv


def _cpu_seconds(pid: int) -> float:
    """CPU seconds of one process: its own (user + system) and that of its children that have
    exited and been waited for (``cutime`` + ``cstime``). 0 if the process is gone.

    A process may exit at any moment while the tree is read: it then counts 0 in this sample,
    and its time shows again in its parent's children time once the parent has reaped it
    (PostgreSQL's postmaster reaps its backends at once, ``orchestrator worker``'s supervisor
    its worker processes within 0.2 s). A sample taken in that short gap is low by that
    process's CPU; the totals of a measurement (taken when nothing is exiting) are exact."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
        fields = stat.rpartition(")")[2].split()
        ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
    except (OSError, ValueError, IndexError):
        return 0.0
    return ticks / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    """The live children of ``pid`` (of every thread), ``[]`` if it is gone.

    Every read is guarded: a process (a PostgreSQL backend, a restarting worker) may exit
    between the listing of its threads and the reading of each."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found += [int(c) for c in (task / "children").read_text(encoding="ascii").split()]
        except (OSError, ValueError):
            continue
    return found


def tree_cpu_seconds(pids: Sequence[int]) -> float:
    """CPU seconds used so far by ``pids`` and all their descendants, live or exited and
    reaped (Linux /proc). Never raises for a process that is gone: see :func:`_cpu_seconds`."""
    total, todo, seen = 0.0, list(pids), set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += _cpu_seconds(pid)
        todo += _children(pid)
    return total


def server_cpu_seconds(bench: Bench) -> float | None:
    """CPU seconds used so far by the embedded server's processes; None for another server
    or without /proc."""
    if not bench.embedded:
        return None
    try:
        postmaster = int((DATA_DIR / "pgdata" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if not Path(f"/proc/{postmaster}").exists():
        return None
    return tree_cpu_seconds([postmaster])


class CpuClock:
    """CPU seconds spent since it was made by a measurement's worker processes, the embedded
    PostgreSQL (``None`` for another server) and this process, which serves the stand-ins."""

    def __init__(self, procs: Processes, bench: Bench) -> None:
        self._procs, self._bench = procs, bench
        self._start = self._now()

    def _now(self) -> tuple[float, float | None, float]:
        return self._procs.cpu_seconds(), server_cpu_seconds(self._bench), time.process_time()

    def spent(self) -> CpuSpent:
        (workers, server, here), (workers_now, server_now, here_now) = self._start, self._now()
        return CpuSpent(
            workers=workers_now - workers,
            server=None if server is None or server_now is None else server_now - server,
            this_process=here_now - here,
        )


@dataclass(frozen=True)
class CpuSpent:
    """CPU seconds of :class:`CpuClock`'s three parts."""

    workers: float
    server: float | None
    this_process: float


class Processes:
    """Subprocesses started by one measurement, stopped together (SIGTERM, then SIGKILL)."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: Sequence[str], env: dict[str, str], log_name: str) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        with open(LOG_DIR / f"{log_name}.log", "wb") as log:
            self._procs.append(
                subprocess.Popen(
                    list(argv), env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
                )
            )

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by these processes and their children."""
        return tree_cpu_seconds([proc.pid for proc in self._procs])

    def check_alive(self) -> None:
        for proc in self._procs:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"bench: worker {proc.args!r} exited with {proc.returncode}; "
                    f"see the logs in {LOG_DIR}"
                )

    def stop(self, timeout: float = 30.0) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self._procs:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()

    async def __aenter__(self) -> Processes:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)


async def wait_for_workers(url: str, count: int, procs: Processes, timeout: float = 90.0) -> None:
    """Wait until ``count`` procrastinate workers have registered (they are then fetching)."""

    async def registered() -> bool:
        procs.check_alive()
        n = await fetch_value(url, "SELECT count(*) FROM procrastinate_workers")
        return int(n) >= count

    await wait_until(registered, timeout=timeout, what=f"{count} worker(s) registering")


async def wait_for_jobs(
    url: str, task_name: str, procs: Processes, *, timeout: float, interval: float = 0.2
) -> None:
    """Wait until no job of ``task_name`` is waiting or running."""

    async def done() -> bool:
        procs.check_alive()
        n = await fetch_value(
            url,
            "SELECT count(*) FROM procrastinate_jobs "
            "WHERE task_name = %s AND status IN ('todo', 'doing')",
            [task_name],
        )
        return int(n) == 0

    await wait_until(done, timeout=timeout, interval=interval, what=f"{task_name} jobs finishing")
