"""The cheap schema check knows the same heads as alembic (without importing it per command)."""

from __future__ import annotations

from alembic.script import ScriptDirectory

from orchestrator._migrate import alembic_config, head_revisions
from orchestrator._schema import NOT_MIGRATED, Revisions, shipped_revisions, verdict


def test_the_heads_read_from_the_files_are_alembics() -> None:
    shipped = shipped_revisions()
    assert shipped.heads == head_revisions()
    every = {
        script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()
    }
    assert shipped.known == every


def test_verdicts() -> None:
    shipped = Revisions(frozenset({"a", "b", "c"}), frozenset({"c"}))
    assert verdict(frozenset({"c"}), shipped) is None
    assert verdict(frozenset(), shipped) == NOT_MIGRATED
    assert verdict(frozenset({"b"}), shipped) == (
        f"{NOT_MIGRATED} (the schema is at b; this version needs c)"
    )
    # A revision this version does not know: a newer release migrated the database.
    assert verdict(frozenset({"z"}), shipped) is None


def test_the_cli_does_not_import_alembic_for_a_command() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from orchestrator._cli import build_parser\n"
        "import orchestrator._schema as s\n"
        "build_parser(); s.shipped_revisions()\n"
        "print('alembic' in sys.modules, 'sqlalchemy' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False False"
