"""``orchestrator demo`` as a subprocess, on the test server in a database of its own."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.fix_db import subprocess_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_runs_a_month_end_to_end(server_url: str, tmp_path: Path) -> None:
    name = f"orch_demo_{uuid.uuid4().hex[:12]}"
    env = subprocess_env(
        server_url, ORCHESTRATOR_DATA_DIR=str(tmp_path), ORCHESTRATOR_DEMO_DATABASE=name
    )
    try:
        result = subprocess.run(
            [sys.executable, "-m", "orchestrator", "demo", "--rows", "500"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=150,
            check=False,
        )
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    out = result.stdout
    assert f"demo database: {name} (recreated)" in out
    assert "Evergreen, Last Upload" in out
    assert "demo finished in" in out
    for workflow in ("pt1", "pt2", "pt3", "pt4", "pt5"):
        assert f"{workflow}: 1 run(s), 1 succeeded" in out
    assert (tmp_path / "demo" / "cole_inbox").is_dir()
