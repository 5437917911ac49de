"""procrastinate migration 00.07.01_01_fix_trigger_status_events_insert.sql

Applies the SQL file of that name shipped inside the installed procrastinate package.
"""

from orchestrator._procrastinate_schema import upgrade_from_file

revision = "pc_00_07_01_01"
down_revision = "pc_00_06_00_01"
branch_labels = None
depends_on = None

SQL_FILE = "00.07.01_01_fix_trigger_status_events_insert.sql"


def upgrade() -> None:
    upgrade_from_file(SQL_FILE)


def downgrade() -> None:
    raise NotImplementedError("procrastinate migrations are forward-only")
