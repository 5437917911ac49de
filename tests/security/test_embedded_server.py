"""The embedded PostgreSQL server is private to the OS user that runs the orchestrator.

Another local user can neither reach its socket nor log in without the password; starting it
changes no directory outside its data dir; as root it runs as an unprivileged system user
without the root group. Tests that need a second OS user create a throwaway one (``useradd``)
and are skipped when not running as root. Every server started here is stopped here.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import psycopg
import pytest

from orchestrator import _embedded
from orchestrator._database import embedded_server_url, release_embedded_server
from orchestrator._errors import DatabaseUnavailable

ROOT = Path(__file__).resolve().parents[2]
IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(
    not IS_ROOT, reason="needs root: creates a throwaway OS user (useradd) and runs as it"
)
BIN = _embedded._bin_dir()
LONG_NAME = "long-" + "d" * 100


@dataclass(frozen=True)
class OsUser:
    name: str
    uid: int
    gid: int


@pytest.fixture
def make_user() -> Iterator[Callable[[], OsUser]]:
    """Creates throwaway OS users (no home, no login shell); deletes them afterwards."""
    created: list[str] = []

    def make() -> OsUser:
        name = f"orchsec{uuid.uuid4().hex[:8]}"
        subprocess.run(
            ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
            timeout=60,
        )
        created.append(name)
        entry = pwd.getpwnam(name)
        return OsUser(name, entry.pw_uid, entry.pw_gid)

    yield make
    for name in created:
        subprocess.run(["userdel", name], check=False, capture_output=True, timeout=60)


@pytest.fixture
def base_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory for data dirs; any server left running under it is stopped at the end.

    As root, pytest's ``tmp_path`` lies under a 0700 directory the server's user cannot
    enter; this test's own directory in the temporary directory is made searchable instead
    (nothing else is touched).
    """
    if IS_ROOT:
        path = Path(tempfile.mkdtemp(prefix="orch-sec-"))
        path.chmod(0o755)
    else:
        path = tmp_path
    try:
        yield path
    finally:
        for pid_file in path.rglob("postmaster.pid"):
            _kill_server(pid_file)
        if IS_ROOT:
            shutil.rmtree(path, ignore_errors=True)


def _kill_server(pid_file: Path) -> None:
    """Stop a server left behind by a failed test, by its pid (fast shutdown)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int(pid_file.read_text().splitlines()[0])
        os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 30
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)


def _data_dir(base: Path, kind: str) -> Path:
    data_dir = base / (LONG_NAME if kind == "long" else "short")
    if kind == "long":
        assert len(str(data_dir)) > 100
    return data_dir


def _socket_dir(url: str) -> Path:
    return Path(parse_qs(urlsplit(url).query)["host"][0])


def _without_password(url: str, password: str = "") -> str:
    parts = urlsplit(url)
    netloc = f"postgres:{password}@" if password else "postgres@"
    return urlunsplit(parts._replace(netloc=netloc))


def _server_uid() -> int:
    account = _embedded._server_account()
    return account.uid if account is not None else os.geteuid()


def _stopped(data_dir: Path) -> bool:
    return not (data_dir / "pgdata" / "postmaster.pid").exists()


@dataclass(frozen=True)
class Server:
    data_dir: Path
    url: str


@pytest.fixture(params=["short", "long"])
def server(request: pytest.FixtureRequest, base_dir: Path) -> Iterator[Server]:
    """An embedded server in a short data dir path, or one too long for a socket name."""
    data_dir = _data_dir(base_dir, str(request.param))
    url = embedded_server_url(data_dir)
    try:
        yield Server(data_dir, url)
    finally:
        release_embedded_server(data_dir)
    assert _stopped(data_dir)


def _psql_as(user: OsUser, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "psql"), *args],
        user=user.uid,
        group=user.gid,
        extra_groups=[],
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "PGCONNECT_TIMEOUT": "5"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _assert_cannot_connect(user: OsUser, url: str) -> None:
    assert _psql_as(user, "--version").returncode == 0, "the user must be able to run psql"
    socket_dir = _socket_dir(url)
    attempt = _psql_as(
        user, "-X", "-w", "-h", str(socket_dir), "-p", "5432", "-U", "postgres", "-d", "postgres"
    )
    assert attempt.returncode != 0, attempt.stdout
    assert "connection to server on socket" in attempt.stderr, attempt.stderr
    assert "Permission denied" in attempt.stderr, attempt.stderr


def _client(data_dir: Path, as_user: str | None = None) -> subprocess.Popen[str]:
    """A process using the server in ``data_dir`` (as root, optionally as ``as_user``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "XDG_"))}
    args = [sys.executable, "-m", "tests.security.embedded_client", str(data_dir)]
    return subprocess.Popen(
        [*args, *(["--as-user", as_user] if as_user else [])],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# -- another OS user ---------------------------------------------------------------------------


@needs_root
def test_another_user_cannot_connect(server: Server, make_user: Callable[[], OsUser]) -> None:
    _assert_cannot_connect(make_user(), server.url)


@needs_root
@pytest.mark.parametrize("kind", ["short", "long"])
def test_another_user_cannot_connect_to_a_normal_users_server(
    kind: str, base_dir: Path, make_user: Callable[[], OsUser]
) -> None:
    """The orchestrator run by a normal user: the server runs as that user, privately."""
    owner, other = make_user(), make_user()
    data_dir = _data_dir(base_dir / "owned", kind)
    data_dir.parent.mkdir()
    os.chown(data_dir.parent, owner.uid, owner.gid)
    with _client(data_dir, as_user=owner.name) as client:
        assert client.stdin is not None and client.stdout is not None
        try:
            line = client.stdout.readline()
            assert line, client.stderr.read() if client.stderr else ""
            url = json.loads(line)["url"]
            socket_dir = _socket_dir(url)
            info = socket_dir.stat()
            assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o700, owner.uid)
            password_file = data_dir / _embedded.PASSWORD_FILE
            info = password_file.stat()
            assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o600, owner.uid)
            if kind == "long":
                assert socket_dir != data_dir / "pgdata"
            _assert_cannot_connect(other, url)
        finally:
            client.stdin.close()
            assert client.wait(60) == 0
    assert _stopped(data_dir)


# -- the password ------------------------------------------------------------------------------


def test_every_connection_needs_the_password(server: Server) -> None:
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        psycopg.connect(_without_password(server.url), connect_timeout=5).close()
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(_without_password(server.url, "guess"), connect_timeout=5).close()
    with psycopg.connect(server.url) as conn:
        settings = {
            name: conn.execute(f"SHOW {name}").fetchone()
            for name in ("listen_addresses", "unix_socket_permissions", "password_encryption")
        }
        methods = conn.execute("SELECT DISTINCT auth_method FROM pg_hba_file_rules").fetchall()
    assert settings == {
        "listen_addresses": ("",),  # no TCP at all
        "unix_socket_permissions": ("0700",),
        "password_encryption": ("scram-sha-256",),
    }
    assert methods == [("scram-sha-256",)]


def test_password_file_socket_dir_and_pgdata_are_private(server: Server) -> None:
    password_file = server.data_dir / _embedded.PASSWORD_FILE
    info = password_file.lstat()
    assert stat.S_ISREG(info.st_mode)
    assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o600, os.geteuid())
    password = password_file.read_text().strip()
    assert len(password) >= 32 and password in server.url

    socket_dir = _socket_dir(server.url)
    info = socket_dir.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o700, _server_uid())
    assert (socket_dir / ".s.PGSQL.5432").is_socket()
    pgdata = server.data_dir / "pgdata"
    assert stat.S_IMODE(pgdata.stat().st_mode) == 0o700
    if len(str(pgdata / ".s.PGSQL.5432")) >= 108:
        assert socket_dir.name.startswith(_embedded.SOCKET_DIR_PREFIX)
    else:
        assert socket_dir == pgdata

    lock = server.data_dir / _embedded.LOCK_FILE
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600


def test_the_url_is_printed_redacted(server: Server) -> None:
    from orchestrator._redaction import redact_url

    password = (server.data_dir / _embedded.PASSWORD_FILE).read_text().strip()
    assert password not in redact_url(server.url)


# -- root ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["short", "long"])
def test_no_directory_outside_the_data_dir_changes(kind: str, base_dir: Path) -> None:
    data_dir = _data_dir(base_dir, kind)
    data_dir.mkdir()
    watched = [*data_dir.parents, data_dir, *BIN.parents, BIN, BIN.parent / "lib"]
    watched += [Path(tempfile.gettempdir())]

    def modes() -> dict[Path, tuple[int, int, int]]:
        return {p: (p.stat().st_mode, p.stat().st_uid, p.stat().st_gid) for p in watched}

    before = modes()
    url = embedded_server_url(data_dir)
    try:
        with psycopg.connect(url) as conn:
            conn.execute("SELECT 1")
        assert modes() == before
    finally:
        release_embedded_server(data_dir)
    assert modes() == before


@needs_root
def test_as_root_the_server_runs_as_an_unprivileged_user(server: Server) -> None:
    account = _embedded._server_account()
    assert account is not None and account.uid != 0 and account.gid != 0
    pid = int((server.data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    assert set(status["Uid"].split()) == {str(account.uid)}
    assert set(status["Gid"].split()) == {str(account.gid)}  # never the root group
    assert set(status["Groups"].split()) <= {str(account.gid)}
    shell = pwd.getpwnam(account.name).pw_shell
    assert shell.endswith(("nologin", "false"))


@needs_root
def test_as_root_an_unreachable_data_dir_is_one_clear_line(tmp_path: Path) -> None:
    # pytest's tmp_path is under /tmp/pytest-of-root, which only root may enter.
    data_dir = tmp_path / "data"
    blockers = [p for p in reversed(data_dir.parents) if not p.stat().st_mode & stat.S_IXOTH]
    if not blockers:
        pytest.skip(f"every parent of {data_dir} is searchable by other users here")
    before = {p: p.stat().st_mode for p in data_dir.parents}
    with pytest.raises(DatabaseUnavailable) as caught:
        embedded_server_url(data_dir)
    message = str(caught.value)
    assert "\n" not in message
    assert f"cannot reach the data dir in {data_dir} ({blockers[0]} is not searchable" in message
    assert {p: p.stat().st_mode for p in data_dir.parents} == before
    assert not (data_dir / "pgdata" / "PG_VERSION").exists()


# -- data dirs of earlier versions ---------------------------------------------------------------


def _trust_cluster(data_dir: Path, *, running: bool) -> None:
    """A data dir as earlier versions left it: trust for everyone, socket in pgdata.

    As root it runs like the wheel ran it: the server's uid, but root's group.
    """
    account = _embedded._server_account()
    pgdata = data_dir / "pgdata"
    pgdata.mkdir(parents=True)
    user: int | None = None
    if account is not None:
        os.chown(pgdata, account.uid, account.gid)
        user = account.uid

    def run(*args: str) -> None:
        subprocess.run(
            [*args],
            user=user,
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
            check=True,
        )

    run(str(BIN / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust")
    run(
        *[str(BIN / "pg_ctl"), "-w", "-D", str(pgdata), "-l", str(pgdata / "log")],
        *["-o", f"-h '' -k {pgdata}", "start"],
    )
    with psycopg.connect(f"postgresql://postgres@/postgres?host={pgdata}") as conn:
        conn.execute("CREATE TABLE kept (v text)")
        conn.execute("INSERT INTO kept VALUES ('still here')")
    if not running:
        run(str(BIN / "pg_ctl"), "-w", "-D", str(pgdata), "stop")
    (pgdata / ".handle_pids.json").write_text("[]")


@pytest.mark.parametrize("running", [False, True], ids=["stopped", "running"])
def test_a_trust_data_dir_is_upgraded_in_place(running: bool, base_dir: Path) -> None:
    data_dir = base_dir / "earlier"
    _trust_cluster(data_dir, running=running)
    assert not (data_dir / _embedded.PASSWORD_FILE).exists()
    url = embedded_server_url(data_dir)
    try:
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT v FROM kept").fetchall() == [("still here",)]
            socket_mode = conn.execute("SHOW unix_socket_permissions").fetchone()
        assert socket_mode == ("0700",)
        assert (data_dir / "pgdata" / "pg_hba.conf").read_text() == _embedded.PG_HBA
        mode = stat.S_IMODE((data_dir / _embedded.PASSWORD_FILE).stat().st_mode)
        assert mode == 0o600
        with pytest.raises(psycopg.OperationalError, match="no password supplied"):
            psycopg.connect(_without_password(url), connect_timeout=5).close()
        if IS_ROOT:
            pid = int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
            gids = Path(f"/proc/{pid}/status").read_text().split("Gid:")[1].split()[:4]
            assert "0" not in gids
    finally:
        release_embedded_server(data_dir)
    assert _stopped(data_dir)


# -- sharing, and the lock --------------------------------------------------------------------


def test_processes_share_one_server_and_the_last_one_stops_it(base_dir: Path) -> None:
    data_dir = base_dir / "shared"
    with _client(data_dir) as first, _client(data_dir) as second:
        assert first.stdin and first.stdout and first.stderr
        assert second.stdin and second.stdout and second.stderr
        try:
            one = json.loads(first.stdout.readline())
            two = json.loads(second.stdout.readline())
            assert one["url"] == two["url"]
            pids = json.loads((data_dir / "pgdata" / ".handle_pids.json").read_text())
            assert sorted(pids) == sorted([one["pid"], two["pid"]])
            first.kill()  # SIGKILL: never deregisters
            first.wait(30)
            assert not _stopped(data_dir)
        finally:
            second.stdin.close()
            assert second.wait(60) == 0
        announced = first.stderr.read() + second.stderr.read()
    assert announced.count("embedded PostgreSQL created") == 1, announced
    assert _stopped(data_dir)  # the dead first one was pruned; the second was the last


def test_a_held_lock_is_one_clear_line(base_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = base_dir / "locked"
    data_dir.mkdir()
    monkeypatch.setattr(_embedded, "LOCK_TIMEOUT", 0.3)
    with open(data_dir / _embedded.LOCK_FILE, "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(DatabaseUnavailable) as caught:
            embedded_server_url(data_dir)
    message = str(caught.value)
    assert "\n" not in message
    assert f"held the embedded server's lock {data_dir / _embedded.LOCK_FILE}" in message


def test_an_unusable_lock_is_one_clear_line_from_the_cli(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    (data_dir / _embedded.LOCK_FILE).mkdir(parents=True)  # cannot be opened as a file
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "db-url"],
        cwd=tmp_path,
        env={**env, "ORCHESTRATOR_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("orchestrator: cannot open the embedded server's lock file")


# -- recovery ----------------------------------------------------------------------------------


def test_a_lost_password_file_gets_a_new_password_and_keeps_the_data(base_dir: Path) -> None:
    data_dir = base_dir / "lost"
    url = embedded_server_url(data_dir)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (v text)")
        conn.execute("INSERT INTO kept VALUES ('still here')")
    release_embedded_server(data_dir)
    (data_dir / _embedded.PASSWORD_FILE).unlink()

    new_url = embedded_server_url(data_dir)
    try:
        assert new_url != url
        with psycopg.connect(new_url) as conn:
            assert conn.execute("SELECT v FROM kept").fetchall() == [("still here",)]
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(url, connect_timeout=5).close()
    finally:
        release_embedded_server(data_dir)


def test_a_stale_pid_file_with_a_recycled_pid_does_not_block_the_start(base_dir: Path) -> None:
    """After a crash or a reboot, ``postmaster.pid`` may name a live, unrelated process."""
    data_dir = base_dir / "rebooted"
    embedded_server_url(data_dir)
    pid_file = data_dir / "pgdata" / "postmaster.pid"
    lines = pid_file.read_text().splitlines()
    release_embedded_server(data_dir)
    assert not pid_file.exists()
    pid_file.write_text("\n".join([str(os.getpid()), *lines[1:]]) + "\n")  # alive, not postgres

    url = embedded_server_url(data_dir)
    try:
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert int(pid_file.read_text().split()[0]) != os.getpid()
    finally:
        release_embedded_server(data_dir)
    assert _stopped(data_dir)
