"""An installed package migrates a database from any directory (no repository files needed).

The wheel is built from the checkout and unpacked; the CLI then runs from an empty temporary
directory with only that wheel and the locked dependencies on ``sys.path`` (``python -S``, so
the editable install of the checkout is not in play).
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import psycopg
import pytest

from tests.fix_db import subprocess_env

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

RUN_CLI = """
import sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import orchestrator
assert orchestrator.__file__.startswith(sys.argv[1]), orchestrator.__file__
from orchestrator._cli import main
sys.exit(main(["migrate"]))
"""


def test_a_built_wheel_migrates_an_empty_database_from_another_directory(
    database_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels), "."],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("orchestrator-*.whl")
    unpacked = tmp_path / "installed"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(unpacked)
    assert (unpacked / "orchestrator" / "_migrations" / "env.py").is_file()
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    env = subprocess_env(database_url)
    env.pop("PYTHONPATH")
    env.pop("ORCHESTRATOR_WORKFLOW_MODULES")
    result = subprocess.run(
        [sys.executable, "-S", "-c", RUN_CLI, str(unpacked), sysconfig.get_paths()["purelib"]],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "database at revision 0006_fencing_pipeline" in result.stdout
    with psycopg.connect(database_url) as conn:
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        }
    assert {"agent_runs", "external_calls", "procrastinate_jobs", "clients", "raw_leads"} <= tables
