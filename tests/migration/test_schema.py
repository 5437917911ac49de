"""Our alembic history == procrastinate's reference schema, and migrating is safe to repeat.

The reference is the ``schema.sql`` of the installed (pinned) procrastinate, applied to an
empty database. Only procrastinate's objects (named ``procrastinate_*``) are compared; the
orchestrator's own objects (agent_runs, the orchestrator_* views, triggers named
``orchestrator_*`` on procrastinate_jobs, ...) are not in the reference.

Column *order* is not compared: the migration files add ``queueing_lock`` (0.8.1) and
``priority`` (2.0.3) with ``ALTER TABLE ... ADD COLUMN``, which appends them, while schema.sql
declares them in the middle of ``procrastinate_jobs``. Procrastinate reads columns by name.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.script import ScriptDirectory

from orchestrator._migrate import alembic_config, current_revisions, head_revisions
from orchestrator._procrastinate_schema import migration_files, read_sql, revision_id
from tests.fix_db import subprocess_env

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "procrastinate%"
#: Our own objects attached to procrastinate's tables (e.g. the job-count triggers) are
#: named like this and left out of the comparison.
OURS = "orchestrator%"

CATALOG: dict[str, str] = {
    "relations": """
        SELECT c.relname, c.relkind::text, c.relpersistence::text,
               COALESCE(c.reloptions::text, '')
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relname LIKE %(prefix)s""",
    "columns": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid)
          FROM pg_attribute a
          JOIN pg_class c ON c.oid = a.attrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
           AND c.relname LIKE %(prefix)s AND a.attnum > 0 AND NOT a.attisdropped""",
    "indexes": """
        SELECT indexname, indexdef FROM pg_indexes
         WHERE schemaname = 'public' AND tablename LIKE %(prefix)s
           AND indexname NOT LIKE %(ours)s""",
    "constraints": """
        SELECT c.relname, k.conname, k.contype::text, pg_get_constraintdef(k.oid)
          FROM pg_constraint k
          JOIN pg_class c ON c.oid = k.conrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relname LIKE %(prefix)s
           AND k.conname NOT LIKE %(ours)s""",
    "functions": """
        SELECT p.proname, pg_get_function_identity_arguments(p.oid), pg_get_functiondef(p.oid)
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = 'public' AND p.proname LIKE %(prefix)s""",
    "triggers": """
        SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid)
          FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
         WHERE NOT t.tgisinternal AND c.relname LIKE %(prefix)s
           AND t.tgname NOT LIKE %(ours)s""",
    "enums": """
        SELECT t.typname, array_agg(e.enumlabel::text ORDER BY e.enumsortorder)
          FROM pg_type t
          JOIN pg_enum e ON e.enumtypid = t.oid
          JOIN pg_namespace n ON n.oid = t.typnamespace
         WHERE n.nspname = 'public' AND t.typname LIKE %(prefix)s
         GROUP BY t.typname""",
    "sequences": """
        SELECT s.sequencename, s.data_type::text, s.start_value, s.min_value, s.max_value,
               s.increment_by, s.cycle,
               (SELECT d.refobjid::regclass::text || '.' || a.attname
                  FROM pg_depend d
                  JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                 WHERE d.objid = format('%%I.%%I', s.schemaname, s.sequencename)::regclass
                   AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i'))
          FROM pg_sequences s
         WHERE s.schemaname = 'public' AND s.sequencename LIKE %(prefix)s""",
}

Row = tuple[Any, ...]


def _normalize(value: Any) -> Any:
    if isinstance(value, str):
        return re.sub(r"\s+", " ", value).strip()
    if isinstance(value, list):
        return tuple(value)
    return value


def catalog_snapshot(url: str) -> dict[str, set[Row]]:
    """The procrastinate objects of one database, as comparable sets of rows."""
    snapshot: dict[str, set[Row]] = {}
    with psycopg.connect(url) as conn:
        for kind, query in CATALOG.items():
            rows = conn.execute(query, {"prefix": PREFIX, "ours": OURS}).fetchall()
            snapshot[kind] = {tuple(_normalize(v) for v in row) for row in rows}
    return snapshot


def describe_differences(reference: dict[str, set[Row]], migrated: dict[str, set[Row]]) -> str:
    lines = []
    for kind in CATALOG:
        for row in sorted(reference[kind] - migrated[kind], key=repr):
            lines.append(f"{kind}: only in schema.sql:      {row!r}")
        for row in sorted(migrated[kind] - reference[kind], key=repr):
            lines.append(f"{kind}: only in our migrations: {row!r}")
    return "\n".join(lines)


# -- (1) applied migrations == reference schema -------------------------------------------


def test_migrations_match_procrastinate_reference_schema(
    database_url: str, empty_database_url: str
) -> None:
    schema = resources.files("procrastinate.sql").joinpath("schema.sql").read_text("utf-8")
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute(schema.encode())
    reference = catalog_snapshot(empty_database_url)
    migrated = catalog_snapshot(database_url)

    assert all(reference[kind] for kind in ("columns", "indexes", "functions", "triggers"))
    differences = describe_differences(reference, migrated)
    assert not differences, "procrastinate schema differs from schema.sql:\n" + differences


def test_snapshot_sees_a_difference(database_url: str) -> None:
    """The comparison is not vacuous: a changed default or function body shows up."""
    before = catalog_snapshot(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE procrastinate_jobs ALTER COLUMN attempts SET DEFAULT 1")
        conn.execute("DROP INDEX procrastinate_jobs_queueing_lock_idx_v1")
    after = catalog_snapshot(database_url)
    differences = describe_differences(before, after)
    assert "columns: only in schema.sql" in differences
    assert "procrastinate_jobs_queueing_lock_idx_v1" in differences


def test_our_objects_are_not_compared(database_url: str) -> None:
    snapshot = catalog_snapshot(database_url)
    names = {row[0] for rows in snapshot.values() for row in rows}
    assert "procrastinate_jobs" in names
    assert all("procrastinate" in name for name in names)
    assert not {n for n in names if "agent_run" in n or n.startswith(("orchestrator", "test_"))}


# -- (2) one revision per procrastinate SQL file ------------------------------------------


def test_every_procrastinate_migration_file_has_exactly_one_revision() -> None:
    files = migration_files()
    shipped = sorted(
        entry.name
        for entry in resources.files("procrastinate.sql.migrations").iterdir()
        if entry.name.endswith(".sql")
    )
    assert files == shipped, "a shipped migration file is not recognised"

    script = ScriptDirectory.from_config(alembic_config())
    revisions = {rev.revision: rev for rev in script.walk_revisions()}
    ours = {r: rev for r, rev in revisions.items() if r.startswith("pc_")}
    assert sorted(ours) == sorted(revision_id(f) for f in files)

    previous = None
    for filename in files:
        rev = revisions[revision_id(filename)]
        assert filename == rev.module.SQL_FILE
        assert rev.down_revision == previous, f"{filename} is out of order"
        previous = rev.revision
    assert revisions["0001_agent_runs"].down_revision == previous


def test_the_history_has_one_head() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1
    assert head_revisions() == set(script.get_heads())


def test_revision_ids() -> None:
    assert revision_id("00.00.00_01_initial.sql") == "pc_00_00_00_01"
    assert revision_id("03.04.00_50_post_add_retry_failed_job_procedure.sql") == "pc_03_04_00_50"
    with pytest.raises(ValueError, match="not a procrastinate migration file"):
        revision_id("schema.sql")


def test_migration_sql_is_read_from_the_installed_package() -> None:
    first = migration_files()[0]
    assert "CREATE TABLE procrastinate_jobs" in read_sql(first)


# -- (3) orchestrator migrate: repeatable and concurrent ----------------------------------


def _migrate(url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "migrate"],
        cwd=ROOT,
        env=subprocess_env(url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, out, err


def test_migrate_twice(empty_database_url: str) -> None:
    for _ in range(2):
        code, out, err = _finish(_migrate(empty_database_url))
        assert code == 0, err
        assert out.strip().endswith(", ".join(sorted(head_revisions())))
    assert current_revisions(empty_database_url) == head_revisions()


def test_migrate_from_two_processes_at_once(empty_database_url: str) -> None:
    processes = [_migrate(empty_database_url), _migrate(empty_database_url)]
    results = [_finish(p) for p in processes]
    for code, _out, err in results:
        assert code == 0, err
    assert current_revisions(empty_database_url) == head_revisions()
    with psycopg.connect(empty_database_url) as conn:
        row = conn.execute("SELECT count(*) FROM alembic_version").fetchone()
    assert row == (1,)


# -- (4) plain alembic from the repository root -------------------------------------------


def test_alembic_upgrade_head_from_the_repo_root(empty_database_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT,
        env=subprocess_env(empty_database_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert current_revisions(empty_database_url) == head_revisions()
    with psycopg.connect(empty_database_url) as conn:
        conn.execute("SELECT count(*) FROM agent_runs")
        conn.execute("SELECT * FROM orchestrator_queue_status")
        conn.execute("SELECT count(*) FROM procrastinate_jobs")


def test_alembic_offline_sql(database_url: str, empty_database_url: str) -> None:
    """``--sql`` prints a script that builds the same schema when run with any client."""
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head", "--sql"],
        cwd=ROOT,
        env=subprocess_env("postgresql://nobody@127.0.0.1:1/unreachable"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    script = result.stdout
    assert "CREATE TABLE agent_runs" in script
    assert "CREATE TABLE procrastinate_jobs" in script
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute(script.encode())
    assert current_revisions(empty_database_url) == head_revisions()
    differences = describe_differences(
        catalog_snapshot(database_url), catalog_snapshot(empty_database_url)
    )
    assert not differences, differences
