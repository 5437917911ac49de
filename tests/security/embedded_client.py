"""A process using the embedded server, for tests: ``python -m tests.security.embedded_client``.

Arguments: the data dir, then optionally ``--as-user NAME``: everything is imported first,
then the process drops root for that OS user (so the orchestrator runs as a normal user
although the interpreter lives where only root can read). Prints one JSON line
(``{"url": ..., "pid": ...}``; the URL carries the password, for the test only), then keeps
using the server until its stdin closes, and exits normally (deregistering).
"""

from __future__ import annotations

import encodings.idna  # noqa: F401  (imported before dropping privileges)
import json
import os
import pwd
import sys
from pathlib import Path

import psycopg

from orchestrator._database import embedded_server_url


def main(argv: list[str]) -> int:
    data_dir = Path(argv[0])
    if len(argv) == 3 and argv[1] == "--as-user":
        entry = pwd.getpwnam(argv[2])
        os.setgroups([])
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
        os.environ["HOME"] = str(data_dir.parent)
    url = embedded_server_url(data_dir)
    with psycopg.connect(url) as conn:
        conn.execute("SELECT 1")
    print(json.dumps({"url": url, "pid": os.getpid()}), flush=True)
    sys.stdin.read()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
